"""The fake Telegram and Slack servers work with the real client libraries."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from telegram import (
    Bot,
    BotCommand,
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputTextMessageContent,
    Update,
)
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)
from telegram.helpers import escape_markdown

from tests.fakes import RecordedCall
from tests.fakes.slack_api import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeSlack
from tests.fakes.telegram_api import (
    EntityParseError,
    FakeTelegram,
    parse_html,
    parse_markdown_v2,
)


class ManualClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns when RetryAfter.retry_after is read as an int; opt in to timedelta."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(telegram: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(telegram.token, base_url=telegram.base_url) as client:
        yield client


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def slack_client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)


def _is_send(call: RecordedCall) -> bool:
    return call.method == "sendMessage"


# --------------------------------------------------------------------------- HTML checker


@pytest.mark.parametrize(
    ("markup", "plain", "entities"),
    [
        ("plain words", "plain words", []),
        ("<b>bold</b> and <i>it</i>", "bold and it", [("bold", 0, 4), ("italic", 9, 2)]),
        ("<strong><em>both</em></strong>", "both", [("bold", 0, 4), ("italic", 0, 4)]),
        ("a &lt;b&gt; &amp; &quot;c&quot; &#38; &#x41;", 'a <b> & "c" & A', []),
        ("😀 <u>x</u>", "😀 x", [("underline", 3, 1)]),
        (
            '<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>',
            "st",
            [
                ("spoiler", 0, 1),
                ("spoiler", 1, 1),
            ],
        ),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
        ("<blockquote expandable>long</blockquote>", "long", [("expandable_blockquote", 0, 4)]),
        (
            "<s>a</s><strike>b</strike><del>c</del><ins>d</ins>",
            "abcd",
            [
                ("strikethrough", 0, 1),
                ("strikethrough", 1, 1),
                ("strikethrough", 2, 1),
                ("underline", 3, 1),
            ],
        ),
        ("1 > 0", "1 > 0", []),
    ],
)
def test_parse_html_accepts_telegram_subset(
    markup: str, plain: str, entities: list[tuple[str, int, int]]
) -> None:
    parsed = parse_html(markup)
    assert parsed.plain == plain
    assert [(e["type"], e["offset"], e["length"]) for e in parsed.entities] == entities


def test_parse_html_keeps_link_url_and_code_language() -> None:
    parsed = parse_html(
        '<a href="https://arxiv.org/abs/2501.00001?a=1&amp;b=2">paper</a> '
        '<pre><code class="language-rust">fn</code></pre>'
    )
    assert parsed.entities[0] == {
        "type": "text_link",
        "url": "https://arxiv.org/abs/2501.00001?a=1&b=2",
        "offset": 0,
        "length": 5,
    }
    assert parsed.entities[1]["language"] == "rust"


@pytest.mark.parametrize(
    "markup",
    [
        "line<br>break",
        "a < b",
        "fish & chips",
        "&nbsp;",
        "<b>unclosed",
        "<b><i>crossed</b></i>",
        "closing only</b>",
        "<span>no class</span>",
        "<a>no href</a>",
        '<a href="javascript:alert(1)">x</a>',
        '<a href="https://x.org/?a=1&b=2">bare amp in href</a>',
        "<code><b>nested</b></code>",
        "<blockquote><blockquote>q</blockquote></blockquote>",
        "<b/>",
        "<p>paragraph</p>",
    ],
)
def test_parse_html_rejects_what_telegram_rejects(markup: str) -> None:
    with pytest.raises(EntityParseError):
        parse_html(markup)


@given(st.text())
def test_escaped_text_always_parses_back_to_itself(text: str) -> None:
    assert parse_html(html.escape(text)).plain == text


def test_markdown_v2_wants_reserved_characters_escaped() -> None:
    raw = "Release v1.2 (beta)!"
    with pytest.raises(EntityParseError, match=r"'\.' is reserved"):
        parse_markdown_v2(raw)
    assert parse_markdown_v2(escape_markdown(raw, version=2)).plain == raw
    assert parse_markdown_v2("*bold* _it_ [link](https://arxiv.org) `a.b`").plain == (
        "bold it link a.b"
    )


# --------------------------------------------------------------------------- Telegram with PTB


async def test_get_me_describes_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert me.username == "trending_papers_bot"
    assert me.is_bot
    assert me.can_join_groups
    assert me.supports_inline_queries


async def test_ptb_posts_form_fields_with_nested_objects_as_json(
    telegram: FakeTelegram, bot: Bot
) -> None:
    chat = telegram.private_chat(telegram.new_user("Ada"))
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more:1")]])
    await bot.send_message(chat.id, "<b>New</b> papers", parse_mode="HTML", reply_markup=keyboard)

    call = telegram.calls_to("sendMessage")[-1]
    assert (call.http_method, call.content_type) == ("POST", "form")
    assert call.params["chat_id"] == chat.id
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "More", "callback_data": "more:1"}]]
    }


async def test_send_valid_html_stores_the_message(telegram: FakeTelegram, bot: Bot) -> None:
    user = telegram.new_user("Ada")
    chat = telegram.private_chat(user)
    sent = await bot.send_message(
        chat.id, '📄 <a href="https://arxiv.org/abs/2501.00001">A title</a>', parse_mode="HTML"
    )
    assert sent.text == "📄 A title"
    assert sent.entities[0].url == "https://arxiv.org/abs/2501.00001"
    assert sent.entities[0].offset == 3
    stored = telegram.last_message(chat.id)
    assert stored is not None
    assert stored.message_id == sent.message_id == 1
    assert stored.plain_text == "📄 A title"
    assert telegram.sent_messages() == [stored]


@pytest.mark.parametrize("text", ["a <br> b", "R&D", "<b>open"])
async def test_send_invalid_html_is_a_bad_request(
    telegram: FakeTelegram, bot: Bot, text: str
) -> None:
    chat = telegram.private_chat(telegram.new_user())
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.send_message(chat.id, text, parse_mode="HTML")
    assert telegram.sent_messages(chat.id) == []


async def test_text_length_is_counted_after_parsing(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user())
    await bot.send_message(chat.id, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await bot.send_message(chat.id, "x" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await bot.send_message(chat.id, "<b> </b>", parse_mode="HTML")


async def test_oversized_callback_data_is_rejected(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user())
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="é" * 32)]])
    await bot.send_message(chat.id, "fits in 64 bytes", reply_markup=ok)
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("no", callback_data="é" * 33)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(chat.id, "66 bytes", reply_markup=too_long)


async def test_unknown_chat_is_not_found(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(424242, "hello")


async def test_injected_429_raises_retry_after(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user())
    telegram.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(chat.id, "first")
    assert caught.value.retry_after == timedelta(seconds=7)
    assert telegram.calls_to("sendMessage")[-1].response["parameters"] == {"retry_after": 7}
    await bot.send_message(chat.id, "second try goes through")
    assert telegram.stats.too_many_requests == 1


async def test_injected_server_errors_are_network_errors(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user())
    telegram.fail_next("sendMessage", 500)
    telegram.fail_next("sendMessage", 502)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(chat.id, "one")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(chat.id, "two")
    assert "<html>" in telegram.calls_to("sendMessage")[-1].response


async def test_blocked_and_kicked_chats_are_forbidden(telegram: FakeTelegram, bot: Bot) -> None:
    private = telegram.private_chat(telegram.new_user())
    group = telegram.new_group("Journal club", supergroup=False)
    telegram.block(private)
    telegram.kick(group)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(private.id, "hi")
    with pytest.raises(Forbidden, match="bot was kicked from the group chat"):
        await bot.send_message(group.id, "hi")
    telegram.unblock(private)
    await bot.send_message(private.id, "welcome back")


async def test_unknown_method_and_wrong_token(telegram: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("getPaperOfTheDay", api_kwargs={"chat_id": 1})
    # PTB reads a 404 on a method it knows as a bad token.
    with pytest.raises(InvalidToken, match="method not found"):
        await bot.set_chat_menu_button()
    assert telegram.calls[-1].response == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found: method not found",
    }
    stranger = Bot("987654321:not-the-right-token", base_url=telegram.base_url)
    with pytest.raises(InvalidToken):
        await stranger.initialize()
    await stranger.shutdown()


async def test_edits_and_not_modified(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user())
    sent = await bot.send_message(chat.id, "<b>draft</b>", parse_mode="HTML")
    edited = await bot.edit_message_text(
        "<b>final</b>", chat.id, sent.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, type(sent))
    assert edited.text == "final"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("<b>final</b>", chat.id, sent.message_id, parse_mode="HTML")
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Save", callback_data="save:1")]])
    await bot.edit_message_reply_markup(chat.id, sent.message_id, reply_markup=keyboard)
    stored = telegram.message(chat.id, sent.message_id)
    assert stored.history == ["<b>draft</b>"]
    assert stored.callback_data() == ["save:1"]
    assert await bot.delete_message(chat.id, sent.message_id)
    assert telegram.last_message(chat.id) is None
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("again", chat.id, sent.message_id)


async def test_duplicate_texts_are_counted(telegram: FakeTelegram, bot: Bot) -> None:
    chat = telegram.private_chat(telegram.new_user())
    other = telegram.private_chat(telegram.new_user("Grace"))
    for target in (chat, chat, other):
        await bot.send_message(target.id, "same digest")
    assert telegram.stats.duplicate_texts == 1
    assert telegram.stats.messages_sent == 3


async def test_commands_roundtrip_and_validation(bot: Bot) -> None:
    commands = [BotCommand("start", "Subscribe"), BotCommand("topics", "Pick your topics")]
    assert await bot.set_my_commands(commands)
    assert await bot.get_my_commands() == tuple(commands)
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "nope")])


async def test_chat_info_and_administrators(telegram: FakeTelegram, bot: Bot) -> None:
    owner, admin, member = telegram.new_user("Olga"), telegram.new_user("Ada"), telegram.new_user()
    group = telegram.new_group("Reading group")
    telegram.set_admins(group, [admin], creator=owner, bot_is_admin=True)

    info = await bot.get_chat(group.id)
    assert isinstance(info, ChatFullInfo)
    assert info.title == "Reading group"
    admins = await bot.get_chat_administrators(group.id)
    assert [type(a) for a in admins] == [
        ChatMemberOwner,
        ChatMemberAdministrator,
        ChatMemberAdministrator,
    ]
    assert (await bot.get_chat_member(group.id, admin.id)).status == "administrator"
    assert (await bot.get_chat_member(group.id, member.id)).status == "member"
    private = telegram.private_chat(member)
    with pytest.raises(BadRequest, match=r"(?i)no administrators in the private chat"):
        await bot.get_chat_administrators(private.id)


async def test_long_poll_wakes_up_for_a_new_update(telegram: FakeTelegram, bot: Bot) -> None:
    telegram.max_long_poll = 30.0
    chat = telegram.private_chat(telegram.new_user())
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await telegram.wait_until_polling()
    update_id = telegram.user_sends(chat, telegram.new_user(), "hello")
    updates = await asyncio.wait_for(poll, timeout=5)
    assert [u.update_id for u in updates] == [update_id]
    assert (await bot.get_updates(offset=update_id + 1, timeout=0)) == ()
    assert telegram.pending_updates == []


async def test_webhook_blocks_polling(telegram: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)https url"):
        await bot.set_webhook("http://127.0.0.1/hook")
    assert await bot.set_webhook("https://bot.example.org/hook", secret_token="s3cret_token")
    assert (await bot.get_webhook_info()).url == "https://bot.example.org/hook"
    with pytest.raises(Conflict):
        await bot.get_updates()
    assert await bot.delete_webhook()
    assert (await bot.get_updates()) == ()


async def test_inline_query_answer_is_validated(telegram: FakeTelegram, bot: Bot) -> None:
    user = telegram.new_user()
    update_id = telegram.inline_query(user, "diffusion")
    query_id = telegram.update_payload(update_id)["inline_query"]["id"]
    bad = InlineQueryResultArticle("1", "T", InputTextMessageContent("<b>x", parse_mode="HTML"))
    with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
        await bot.answer_inline_query(query_id, [bad])
    good = InlineQueryResultArticle(
        "1", "T", InputTextMessageContent("<b>x</b>", parse_mode="HTML")
    )
    assert await bot.answer_inline_query(query_id, [good])
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_inline_query(query_id, [good])


# --------------------------------------------------------------------------- a real Application


def _application(fake: FakeTelegram) -> Application:
    return (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )


async def test_application_answers_commands_and_button_presses(telegram: FakeTelegram) -> None:
    user = telegram.new_user("Ada", language_code="de")
    private = telegram.private_chat(user)
    group = telegram.new_group("Reading group")

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        assert update.effective_user is not None
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Topics", callback_data="topics")]])
        await update.effective_message.reply_text(
            f"Hello <b>{html.escape(update.effective_user.first_name)}</b>",
            parse_mode="HTML",
            reply_markup=keyboard,
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Saved")
        await query.edit_message_text(f"You chose {query.data}")

    app = _application(telegram)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0)

        telegram.user_sends(private, user, "/start")
        reply = await telegram.wait_for_message(private.id)
        assert reply.plain_text == "Hello Ada"

        mark = len(telegram.calls)
        telegram.user_sends(group, user, "/start@trending_papers_bot please")
        in_group = await telegram.wait_for_message(group.id, since=mark)
        assert in_group.params["reply_parameters"]["message_id"] == in_group.message_id - 1

        telegram.user_sends(group, user, "/start@some_other_bot")
        telegram.user_presses(private, user, reply.message_id, "topics")
        await telegram.wait_for(lambda call: call.method == "editMessageText" and call.ok)

        await app.updater.stop()
        await app.stop()

    assert telegram.calls_to("answerCallbackQuery")[-1].params["text"] == "Saved"
    assert telegram.message(private.id, reply.message_id).plain_text == "You chose topics"
    assert len(telegram.sent_messages(group.id)) == 1
    assert telegram.pending_updates == []


# --------------------------------------------------------------------------- flood limits


async def test_flood_limits_refuse_a_burst_to_one_private_chat() -> None:
    clock = ManualClock()
    async with FakeTelegram(enforce_limits=True, clock=clock) as fake:
        chat = fake.private_chat(fake.new_user())
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            outcomes = []
            for number in range(5):
                try:
                    await bot.send_message(chat.id, f"message {number}")
                    outcomes.append("sent")
                except RetryAfter as error:
                    outcomes.append(f"retry {error.retry_after}")
            assert outcomes == ["sent"] * 3 + ["retry 0:00:01"] * 2
            assert fake.stats.too_many_requests == 2
            clock.advance(1.0)
            await bot.send_message(chat.id, "after waiting")


async def test_time_scale_speeds_the_flood_clock_up() -> None:
    clock = ManualClock()
    async with FakeTelegram(enforce_limits=True, time_scale=10.0, clock=clock) as fake:
        chat = fake.private_chat(fake.new_user())
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            for number in range(3):
                await bot.send_message(chat.id, f"burst {number}")
            with pytest.raises(RetryAfter):
                await bot.send_message(chat.id, "too soon")
            clock.advance(0.1)
            await bot.send_message(chat.id, "a tenth of a real second is a scaled second")


async def test_flood_limits_per_group_and_overall() -> None:
    clock = ManualClock()
    async with FakeTelegram(enforce_limits=True, clock=clock) as fake:
        group = fake.new_group()
        chats = [fake.private_chat(fake.new_user()) for _ in range(31)]
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            for chat in chats[:30]:
                await bot.send_message(chat.id, "digest")
            with pytest.raises(RetryAfter):
                await bot.send_message(chats[30].id, "digest")
            for number in range(20):
                clock.advance(1.0)
                await bot.send_message(group.id, f"group post {number}")
            clock.advance(1.0)
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(group.id, "one too many this minute")
            assert caught.value.retry_after == timedelta(seconds=40)


# --------------------------------------------------------------------------- Slack with slack_sdk


async def test_slack_client_posts_json_with_bearer_token(
    slack: FakeSlack, slack_client: AsyncWebClient
) -> None:
    slack.add_channel("C0PAPERS01", "papers")
    auth = await slack_client.auth_test()
    assert (auth["team_id"], auth["user_id"], auth["bot_id"]) == (
        "T0FAKE0001",
        "U0FAKEBOT1",
        "B0FAKEBOT1",
    )
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*New* papers"}}]
    posted = await slack_client.chat_postMessage(
        channel="C0PAPERS01", text="New papers", blocks=blocks
    )
    assert posted["channel"] == "C0PAPERS01"
    assert posted["ts"] == slack.last_message("C0PAPERS01").ts  # type: ignore[union-attr]

    encodings = {call.method: (call.http_method, call.content_type) for call in slack.calls}
    assert encodings == {"auth.test": ("POST", "none"), "chat.postMessage": ("POST", "json")}


async def test_slack_posting_to_a_user_lands_in_the_dm(
    slack: FakeSlack, slack_client: AsyncWebClient
) -> None:
    slack.add_user("U0READER01", "ada", tz="America/New_York", is_admin=True)
    posted = await slack_client.chat_postMessage(channel="U0READER01", text="Your digest")
    assert posted["channel"] == slack.dm_channel("U0READER01")
    info = await slack_client.users_info(user="U0READER01")
    assert info["user"]["tz"] == "America/New_York"
    assert info["user"]["tz_offset"] in (-5 * 3600, -4 * 3600)
    assert info["user"]["is_admin"] is True
    assert slack.calls_to("users.info")[-1].http_method == "GET"


async def test_slack_injected_rate_limit_has_retry_after(
    slack: FakeSlack, slack_client: AsyncWebClient
) -> None:
    slack.add_channel("C0PAPERS01", "papers")
    slack.fail_next("chat.postMessage", "ratelimited", retry_after=30)
    with pytest.raises(SlackApiError) as caught:
        await slack_client.chat_postMessage(channel="C0PAPERS01", text="hi")
    assert caught.value.response.status_code == 429
    assert caught.value.response["error"] == "ratelimited"
    assert caught.value.response.headers["Retry-After"] == "30"
    await slack_client.chat_postMessage(channel="C0PAPERS01", text="hi again")


@pytest.mark.parametrize(
    "error", ["channel_not_found", "not_in_channel", "account_inactive", "is_archived"]
)
async def test_slack_injected_errors_are_normal_bodies(
    slack: FakeSlack, slack_client: AsyncWebClient, error: str
) -> None:
    slack.add_channel("C0PAPERS01", "papers")
    slack.fail_next("chat.postMessage", error)
    with pytest.raises(SlackApiError) as caught:
        await slack_client.chat_postMessage(channel="C0PAPERS01", text="hi")
    assert caught.value.response.status_code == 200
    assert caught.value.response["error"] == error


async def test_slack_channel_state_decides_errors(
    slack: FakeSlack, slack_client: AsyncWebClient
) -> None:
    slack.add_channel("C0OUTSIDE1", "elsewhere", is_member=False)
    slack.add_channel("C0OLDPAPER", "old-papers", is_archived=True)
    for channel, error in [
        ("C0OUTSIDE1", "not_in_channel"),
        ("C0OLDPAPER", "is_archived"),
        ("C0MISSING1", "channel_not_found"),
    ]:
        with pytest.raises(SlackApiError) as caught:
            await slack_client.chat_postMessage(channel=channel, text="hi")
        assert caught.value.response["error"] == error
    info = await slack_client.conversations_info(channel="C0OUTSIDE1")
    assert info["channel"]["is_member"] is False


async def test_slack_tokens_are_checked(slack: FakeSlack) -> None:
    stranger = AsyncWebClient(token="xoxb-not-registered", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as caught:
        await stranger.auth_test()
    assert caught.value.response["error"] == "invalid_auth"
    slack.revoke_token(slack.bot_token)
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    with pytest.raises(SlackApiError) as caught:
        await client.auth_test()
    assert caught.value.response["error"] == "token_revoked"


async def test_slack_block_limits(slack: FakeSlack, slack_client: AsyncWebClient) -> None:
    slack.add_channel("C0PAPERS01", "papers")
    divider = {"type": "divider"}
    await slack_client.chat_postMessage(channel="C0PAPERS01", text="ok", blocks=[divider] * 50)
    with pytest.raises(SlackApiError) as caught:
        await slack_client.chat_postMessage(channel="C0PAPERS01", text="x", blocks=[divider] * 51)
    assert caught.value.response["error"] == "invalid_blocks"
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}
    with pytest.raises(SlackApiError) as caught:
        await slack_client.chat_postMessage(channel="C0PAPERS01", text="x", blocks=[long_section])
    assert "3001 characters" in caught.value.response["errors"][0]


async def test_slack_update_ephemeral_and_home(
    slack: FakeSlack, slack_client: AsyncWebClient
) -> None:
    slack.add_channel("C0PAPERS01", "papers")
    slack.add_user("U0READER01", "ada")
    posted = await slack_client.chat_postMessage(channel="C0PAPERS01", text="draft")
    await slack_client.chat_update(channel="C0PAPERS01", ts=posted["ts"], text="final")
    message = slack.last_message("C0PAPERS01")
    assert message is not None
    assert (message.text, message.history) == ("final", ["draft"])

    await slack_client.chat_postEphemeral(channel="C0PAPERS01", user="U0READER01", text="psst")
    assert slack.ephemeral_messages()[0].ephemeral_user == "U0READER01"

    view = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}],
    }
    published = await slack_client.views_publish(user_id="U0READER01", view=view)
    assert published["view"]["id"].startswith("V")
    assert slack.home_view("U0READER01") is not None


# slack_sdk 3.47 builds aiohttp.BasicAuth for oauth.v2.access, which aiohttp 3.14 deprecates.
@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
async def test_slack_oauth_exchange_issues_a_working_token(slack: FakeSlack) -> None:
    code = slack.issue_oauth_code(
        team_id="T0SECOND01", team_name="Second Lab", user_id="U0ADMIN001"
    )
    installer = AsyncWebClient(base_url=slack.base_url)
    with pytest.raises(SlackApiError) as caught:
        await installer.oauth_v2_access(
            client_id=DEFAULT_CLIENT_ID, client_secret="wrong", code=code
        )
    assert caught.value.response["error"] == "bad_client_secret"

    granted = await installer.oauth_v2_access(
        client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, code=code
    )
    assert granted["access_token"].startswith("xoxb-")
    assert granted["team"] == {"id": "T0SECOND01", "name": "Second Lab"}
    assert granted["authed_user"]["id"] == "U0ADMIN001"
    assert granted["app_id"] == "A0FAKEAPP1"
    assert "chat:write" in granted["scope"]

    installed = AsyncWebClient(token=granted["access_token"], base_url=slack.base_url)
    identity = await installed.auth_test()
    assert (identity["team_id"], identity["user_id"]) == ("T0SECOND01", granted["bot_user_id"])
    with pytest.raises(SlackApiError) as caught:
        await installer.oauth_v2_access(
            client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, code=code
        )
    assert caught.value.response["error"] == "invalid_code"


async def test_slack_response_url_records_posts(slack: FakeSlack) -> None:
    webhook = AsyncWebhookClient(slack.response_url("cmd-1"))
    for number in range(5):
        answer = await webhook.send(text=f"update {number}", response_type="ephemeral")
        assert answer.status_code == 200
    assert (await webhook.send(text="sixth")).status_code == 404
    assert [post["text"] for post in slack.responses("cmd-1")] == [f"update {n}" for n in range(5)]
    recorded = await slack.wait_for(lambda call: call.method == "response_url")
    assert recorded.params["response_url_key"] == "cmd-1"


async def test_slack_unknown_method(slack_client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as caught:
        await slack_client.api_call("papers.recommend")
    assert caught.value.response["error"] == "unknown_method"


async def test_wait_for_gives_up_with_a_useful_message(telegram: FakeTelegram, bot: Bot) -> None:
    await bot.get_me()
    with pytest.raises(TimeoutError, match="getMe"):
        await telegram.wait_for(_is_send, timeout=0.05)
