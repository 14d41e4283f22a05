"""deploy/: what can be checked without a container engine or systemd running.

``env.example`` must list every setting (and nothing that is not one); the compose file and
the systemd unit may reference only variables it defines; the Dockerfile's HEALTHCHECK is run
against a loopback server; and the slow test runs the Dockerfile's own builder commands in a
fresh virtual environment, then its ENTRYPOINT, exactly as written.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.doctor import setting_variables
from storage.db import Database
from storage.migrate import is_up_to_date

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# --- env.example ----------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class EnvLine:
    """One variable of env.example: its value, whether it is commented out, its comments."""

    value: str
    commented: bool
    comment: str


def env_example() -> dict[str, EnvLine]:
    """The variables env.example defines, with the comment block above each."""
    variables: dict[str, EnvLine] = {}
    comment: list[str] = []
    for line in (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            marker, name, value = match.groups()
            assert name not in variables, f"{name} is defined twice in env.example"
            variables[name] = EnvLine(value, bool(marker), " ".join(comment))
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# ").strip())
        else:
            comment = []
    return variables


def _is_secret(name: str) -> bool:
    annotation = Settings.model_fields[name].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    listed = {name for name in env_example() if name.startswith("TP_")}
    settings = set(setting_variables())

    assert not settings - listed, f"add to deploy/env.example: {sorted(settings - listed)}"
    assert not listed - settings, f"not settings: {sorted(listed - settings)}"


def test_env_example_describes_each_setting_above_it() -> None:
    variables = env_example()
    for name, field_name in setting_variables().items():
        description = Settings.model_fields[field_name].description or ""
        assert description, f"{field_name} has no description in bot/config.py"
        assert description.rstrip(".") in variables[name].comment, name


def test_env_example_shows_the_real_defaults_and_no_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = env_example()
    for name, field_name in setting_variables().items():
        line = variables[name]
        # Every setting is commented out: a copy of the file changes nothing until edited, and
        # the image's and unit's own TP_DATABASE_URL and TP_HTTP_HOST are not overridden.
        assert line.commented, f"{name} should be commented out in env.example"
        if _is_secret(field_name):
            assert line.value == "", f"{name} is a secret: leave it empty in env.example"
        if line.value:
            monkeypatch.setenv(name, line.value)
        else:
            field = Settings.model_fields[field_name]
            assert field.default is None or field.default_factory is not None, name

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    for name, field_name in setting_variables().items():
        if variables[name].value:
            default = Settings.model_fields[field_name].get_default(call_default_factory=True)
            assert getattr(settings, field_name) == default, f"{name}: env.example is stale"


def test_env_example_non_settings_are_used_by_compose() -> None:
    others = {name for name in env_example() if not name.startswith("TP_")}
    assert others <= compose_variables(), "env.example defines variables nothing reads"


# --- compose.yaml ---------------------------------------------------------------------------

# ${NAME}, ${NAME:-default}, ${NAME:?message}, $NAME; "$$" is an escaped dollar.
_REFERENCE = re.compile(r"(?<!\$)(?:\$\$)*\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_]\w*))")


def references(text: str) -> set[str]:
    """Variable names a compose file or unit interpolates, ignoring comments and ``$$``."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return {a or b for a, b in _REFERENCE.findall("\n".join(lines))}


def compose_variables() -> set[str]:
    return references((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_references_only_variables_env_example_defines() -> None:
    used = compose_variables()
    assert "POSTGRES_PASSWORD" in used
    assert not used - set(env_example()), f"define in env.example: {used - set(env_example())}"


def test_reference_finder_honours_escapes() -> None:
    found = references('a: ${ONE:?x} $TWO $${NOT_ME} "$$THREE" ${FOUR:-4}\n# ${COMMENT}')
    assert found == {"ONE", "TWO", "FOUR"}


@pytest.fixture
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML parses compose.yaml")
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_the_bot_on_postgres_16_after_migrating(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres, migrate, bot = services["postgres"], services["migrate"], services["bot"]

    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "PostgreSQL's data must live in a named volume"
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["command"] == ["run"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for service in (postgres, bot):
        assert service["restart"] in ("unless-stopped", "always", "on-failure")
    for service in (migrate, bot):
        assert service["env_file"] == ".env"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()


def test_compose_points_the_bot_at_its_postgres(compose: dict[str, Any]) -> None:
    services = compose["services"]
    database = services["postgres"]["environment"]
    for name in ("migrate", "bot"):
        environment = services[name]["environment"]
        assert set(environment) <= set(setting_variables()), f"{name}: unknown TP_ variable"
        url = make_url(environment["TP_DATABASE_URL"])
        assert url.get_backend_name() == "postgresql"
        assert url.host == "postgres" and url.port == 5432
        assert url.username == database["POSTGRES_USER"]
        assert url.database == database["POSTGRES_DB"]
        assert environment["TP_HTTP_HOST"] == "0.0.0.0"
    port = str(Settings.model_fields["http_port"].default)
    assert services["bot"]["ports"] == [
        f"127.0.0.1:${{TP_HTTP_PORT:-{port}}}:${{TP_HTTP_PORT:-{port}}}"
    ]


# --- the systemd unit -----------------------------------------------------------------------

UNIT = DEPLOY / "trending-papers.service"


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) pairs in order; keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, separator, value = line.partition("=")
        assert separator and current is not None, f"not a unit file line: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(section: str, key: str) -> list[str]:
    return [v for k, v in parse_unit(UNIT.read_text(encoding="utf-8"))[section] if k == key]


def test_unit_is_hardened() -> None:
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "StateDirectory": "trending-papers",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "EnvironmentFile": "/etc/trending-papers/env",
        "KillSignal": "SIGTERM",
    }
    for key, value in expected.items():
        assert unit_values("Service", key) == [value], key
    assert int(unit_values("Service", "TimeoutStopSec")[0]) >= 10
    assert unit_values("Install", "WantedBy") == ["multi-user.target"]


def test_unit_migrates_then_runs_the_same_program() -> None:
    (pre,) = unit_values("Service", "ExecStartPre")
    (start,) = unit_values("Service", "ExecStart")
    assert shlex.split(pre)[1:] == ["db", "upgrade"]
    assert shlex.split(start)[1:] == ["run"]
    assert shlex.split(pre)[0] == shlex.split(start)[0]


def test_unit_environment_names_real_settings_and_its_state_directory() -> None:
    assigned = dict(item.split("=", 1) for item in unit_values("Service", "Environment"))
    unknown = {name for name in assigned if name.startswith("TP_")} - set(setting_variables())
    assert not unknown, f"the unit sets variables that are not settings: {unknown}"
    state = unit_values("Service", "StateDirectory")[0]
    database = make_url(assigned["TP_DATABASE_URL"]).database or ""
    assert database.startswith(f"%S/{state}/"), "the SQLite default must be in StateDirectory"


def test_unit_references_only_variables_env_example_defines() -> None:
    used = references(UNIT.read_text(encoding="utf-8"))
    assert not used - set(env_example())


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    program = shlex.split(unit_values("Service", "ExecStart")[0])[0]
    # verify insists that the program exists; a stand-in takes the venv's place.
    stand_in = tmp_path / "trending-papers"
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(program, str(stand_in)))

    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "--offline" in security.stderr:
        pytest.skip(f"this systemd-analyze cannot judge a unit offline: {security.stderr}")
    # systemd scores exposure 0-10 and the threshold in tenths: 20 means "2.0 OK" or better.
    assert security.returncode == 0, security.stdout[-2000:]


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass
class Stage:
    """One stage of a Dockerfile: its base, name and instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for instruction, args in self.instructions if instruction == keyword]

    def one(self, keyword: str) -> str:
        (args,) = self.all(keyword)
        return args

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                values[name] = value
        return values


@dataclass
class Dockerfile:
    """A parsed Dockerfile: global ARG defaults and the stages."""

    args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped (enough for ours)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args, stages)


def exec_form(args: str) -> list[str]:
    """The argv of an exec-form (JSON array) instruction."""
    import json

    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def run_command(args: str) -> str:
    """A RUN instruction's shell command, without BuildKit's --mount/--network options."""
    while args.startswith("--"):
        args = args.split(None, 1)[1]
    return args


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DEPLOY / "Dockerfile")


def _venv_path(dockerfile: Dockerfile) -> str:
    """The directory the final stage copies from the builder: the virtual environment."""
    for args in dockerfile.final.all("COPY"):
        if args.startswith("--from=builder"):
            source, target = args.split()[1:]
            assert source == target, "the venv must keep its path (scripts hard-code it)"
            return source
    raise AssertionError("the final stage copies nothing from the builder")


def test_dockerfile_builds_on_the_locked_python(dockerfile: Dockerfile) -> None:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    locked = re.search(r"autogenerated by pip-compile with Python (\d+\.\d+)", lock)
    assert locked is not None
    for stage in dockerfile.stages:
        assert stage.base.startswith(f"python:{locked.group(1)}-slim"), stage.base
    assert [stage.name for stage in dockerfile.stages] == ["builder", None]


def test_dockerfile_installs_from_the_hashed_lock_like_the_makefile(
    dockerfile: Dockerfile,
) -> None:
    commands = [run_command(args) for args in dockerfile.stage("builder").all("RUN")]
    lock_install = next(command for command in commands if "requirements.lock" in command)
    assert {"--require-hashes", "--no-deps"} <= set(shlex.split(lock_install))
    project = next(command for command in commands if command.rstrip().endswith(" ."))
    assert {"--no-deps", "--no-build-isolation"} <= set(shlex.split(project))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes --no-deps -r requirements.lock" in makefile


def test_dockerfile_runtime_stage(dockerfile: Dockerfile) -> None:
    final = dockerfile.final
    env = final.env()

    assert final.one("USER") not in ("", "root", "0")
    assert final.one("VOLUME") in ("/data", '["/data"]')
    assert env["TP_DATABASE_URL"] == "sqlite:////data/trending-papers.db"
    assert env["TP_HTTP_HOST"] == "0.0.0.0"
    assert env["PATH"].startswith(f"{_venv_path(dockerfile)}/bin:")
    assert {name for name in env if name.startswith("TP_")} <= set(setting_variables())
    assert exec_form(final.one("ENTRYPOINT")) == ["trending-papers"]
    assert exec_form(final.one("CMD")) == ["run"]
    assert "/healthz" in final.one("HEALTHCHECK")


def test_dockerfile_copies_what_exists_and_the_ignore_file_lets_it_through(
    dockerfile: Dockerfile,
) -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    let_through = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for args in dockerfile.stage("builder").all("COPY"):
        *sources, _target = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source in let_through, f"{source} is excluded by Dockerfile.dockerignore"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck(dockerfile: Dockerfile, port: int) -> int:
    args = dockerfile.final.one("HEALTHCHECK")
    argv = exec_form(args[args.index("CMD") + len("CMD") :].strip())
    assert argv[0] == "python"
    environment = {**os.environ, "TP_HTTP_PORT": str(port)}
    return subprocess.run(
        [sys.executable, *argv[1:]], env=environment, capture_output=True, timeout=30, check=False
    ).returncode


def test_healthcheck_passes_on_200_and_fails_on_503_or_silence(
    dockerfile: Dockerfile, health_server: http.server.HTTPServer
) -> None:
    port = health_server.server_address[1]
    _Health.status = 200
    assert _healthcheck(dockerfile, port) == 0
    _Health.status = 503
    try:
        assert _healthcheck(dockerfile, port) != 0
    finally:
        _Health.status = 200
    health_server.shutdown()
    health_server.server_close()
    assert _healthcheck(dockerfile, port) != 0


# --- the image's build commands, for real ----------------------------------------------------

_NO_INDEX = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "No route to host",
    "ConnectTimeoutError",
    "ProxyError",
)


def _build_context(dockerfile: Dockerfile, destination: Path) -> None:
    """What the builder stage COPYs, as the build context holds it."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for args in dockerfile.stage("builder").all("COPY"):
        *sources, _target = args.split()
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, destination / source, ignore=junk)
            else:
                shutil.copy2(origin, destination / source)


def _run(
    argv: list[str] | str, *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        shell=isinstance(argv, str),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _outside_environment() -> dict[str, str]:
    """This process's environment without what a container would not have: our settings and
    a PYTHONPATH that could import the source tree instead of the installed package."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TP_") and k != "PYTHONPATH"}


@dataclass(frozen=True)
class BuiltImage:
    """The builder's venv made here, and how the image's entry point is run against it."""

    venv: Path
    entrypoint: list[str]
    environment: dict[str, str]
    """The final stage's environment, less TP_ settings, with the venv in its place."""

    def run(self, *args: str, database: Path) -> subprocess.CompletedProcess[str]:
        environment = {**self.environment, "TP_DATABASE_URL": f"sqlite:///{database}"}
        return _run([*self.entrypoint, *args], cwd=database.parent, env=environment, timeout=300)


@pytest.fixture(scope="module")
def built_image(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """Run every RUN line of the builder stage, as written, with the venv moved to a temp dir."""
    root = tmp_path_factory.mktemp("image")
    venv, context = root / "venv", root / "context"
    context.mkdir()
    _build_context(dockerfile, context)
    image_venv = _venv_path(dockerfile)
    builder = dockerfile.stage("builder")
    environment = _outside_environment()
    environment.update({k: v.replace(image_venv, str(venv)) for k, v in builder.env().items()})
    # `python` is the base image's interpreter; here it is the one running the tests.
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"

    for args in builder.all("RUN"):
        command = run_command(args).replace(image_venv, str(venv))
        done = _run(command, cwd=context, env=environment, timeout=1800)
        output = done.stdout + done.stderr
        if done.returncode and any(sign in output for sign in _NO_INDEX):
            pytest.skip(f"the package index is unreachable: {command}")
        assert done.returncode == 0, f"{command}\n{output[-4000:]}"

    final = {k: v.replace(image_venv, str(venv)) for k, v in dockerfile.final.env().items()}
    runtime = _outside_environment()
    runtime.update({k: v for k, v in final.items() if not k.startswith("TP_")})
    runtime["PATH"] = final["PATH"].replace("$PATH", os.environ["PATH"])
    return BuiltImage(venv, exec_form(dockerfile.final.one("ENTRYPOINT")), runtime)


@pytest.mark.slow
def test_the_image_entry_point_runs_and_migrates(built_image: BuiltImage, tmp_path: Path) -> None:
    program = shutil.which(built_image.entrypoint[0], path=built_image.environment["PATH"])
    assert program == str(built_image.venv / "bin" / built_image.entrypoint[0])
    database = tmp_path / "trending-papers.db"

    helped = built_image.run("--help", database=database)
    assert helped.returncode == 0 and "Usage" in helped.stdout, helped.stderr
    migrated = built_image.run("db", "upgrade", database=database)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "migrated from empty to" in migrated.stdout
    again = built_image.run("db", "upgrade", database=database)
    assert "nothing to do" in again.stdout, again.stdout + again.stderr
    # The migrations travel inside the installed package, not only in the source tree.
    db = Database(f"sqlite:///{database}")
    try:
        assert is_up_to_date(db)
    finally:
        db.dispose()


@pytest.mark.slow
def test_the_image_default_command_exists(
    built_image: BuiltImage, dockerfile: Dockerfile, tmp_path: Path
) -> None:
    command = exec_form(dockerfile.final.one("CMD"))

    helped = built_image.run(*command, "--help", database=tmp_path / "unused.db")

    if helped.returncode == 2 and "No such command" in helped.stdout + helped.stderr:
        pytest.skip(f"`trending-papers {command[0]}` is not a command of this version yet")
    assert helped.returncode == 0, helped.stdout + helped.stderr


def test_secret_detection_matches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """env.example's secret check names exactly the settings the bot treats as secrets."""
    plain_text = (str, str | None, SecretStr, SecretStr | None)
    textual = [
        name
        for name, field_name in setting_variables().items()
        if Settings.model_fields[field_name].annotation in plain_text
    ]
    for name in textual:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")

    secrets = set(Settings(_env_file=None).secret_values())  # type: ignore[call-arg]

    expected = {
        f"value-of-{name.lower()}"
        for name, field_name in setting_variables().items()
        if _is_secret(field_name)
    }
    assert secrets == expected
