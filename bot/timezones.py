"""Understand what people type for ``/timezone``: IANA names, cities, abbreviations, offsets.

Every answer says what it understood ("berlin" → Europe/Berlin), so a wrong guess is visible at
once. Whole-hour UTC offsets become the fixed ``Etc/GMT±N`` zones (whose sign is inverted by
POSIX convention: UTC+2 is ``Etc/GMT-2``); other offsets have no fixed zone, so the answer
names zones that are at that offset today instead.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

_REGIONS = frozenset(
    {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe",
     "Indian", "Pacific"}
)  # fmt: skip
_NOT_FOR_PEOPLE = frozenset({"localtime", "Factory", "posixrules"})

ABBREVIATIONS: dict[str, tuple[str, str]] = {
    "est": ("America/New_York", "US Eastern time"),
    "edt": ("America/New_York", "US Eastern time"),
    "et": ("America/New_York", "US Eastern time"),
    "cst": ("America/Chicago", "US Central time (for China Standard Time say Asia/Shanghai)"),
    "cdt": ("America/Chicago", "US Central time"),
    "ct": ("America/Chicago", "US Central time"),
    "mst": ("America/Denver", "US Mountain time (Arizona: America/Phoenix)"),
    "mdt": ("America/Denver", "US Mountain time"),
    "mt": ("America/Denver", "US Mountain time"),
    "pst": ("America/Los_Angeles", "US Pacific time"),
    "pdt": ("America/Los_Angeles", "US Pacific time"),
    "pt": ("America/Los_Angeles", "US Pacific time"),
    "akst": ("America/Anchorage", "Alaska time"),
    "hst": ("Pacific/Honolulu", "Hawaii time"),
    "bst": ("Europe/London", "UK time"),
    "wet": ("Europe/Lisbon", "Western European time"),
    "west": ("Europe/Lisbon", "Western European time"),
    "cet": ("Europe/Berlin", "Central European time"),
    "cest": ("Europe/Berlin", "Central European time"),
    "eet": ("Europe/Athens", "Eastern European time"),
    "eest": ("Europe/Athens", "Eastern European time"),
    "msk": ("Europe/Moscow", "Moscow time"),
    "ist": ("Asia/Kolkata", "India time (Israel: Asia/Jerusalem, Ireland: Europe/Dublin)"),
    "sgt": ("Asia/Singapore", "Singapore time"),
    "hkt": ("Asia/Hong_Kong", "Hong Kong time"),
    "jst": ("Asia/Tokyo", "Japan time"),
    "kst": ("Asia/Seoul", "Korea time"),
    "aest": ("Australia/Sydney", "Australian Eastern time"),
    "aedt": ("Australia/Sydney", "Australian Eastern time"),
    "nzst": ("Pacific/Auckland", "New Zealand time"),
    "nzdt": ("Pacific/Auckland", "New Zealand time"),
}
"""Common abbreviations, mapped to a zone that follows daylight saving like people expect."""

CITY_ALIASES: dict[str, str] = {
    "san francisco": "America/Los_Angeles",
    "palo alto": "America/Los_Angeles",
    "mountain view": "America/Los_Angeles",
    "stanford": "America/Los_Angeles",
    "berkeley": "America/Los_Angeles",
    "seattle": "America/Los_Angeles",
    "san diego": "America/Los_Angeles",
    "boston": "America/New_York",
    "washington": "America/New_York",
    "pittsburgh": "America/New_York",
    "philadelphia": "America/New_York",
    "princeton": "America/New_York",
    "atlanta": "America/New_York",
    "miami": "America/New_York",
    "austin": "America/Chicago",
    "dallas": "America/Chicago",
    "houston": "America/Chicago",
    "montreal": "America/Toronto",
    "ottawa": "America/Toronto",
    "munich": "Europe/Berlin",
    "hamburg": "Europe/Berlin",
    "frankfurt": "Europe/Berlin",
    "tubingen": "Europe/Berlin",
    "cologne": "Europe/Berlin",
    "geneva": "Europe/Zurich",
    "lausanne": "Europe/Zurich",
    "milan": "Europe/Rome",
    "barcelona": "Europe/Madrid",
    "edinburgh": "Europe/London",
    "manchester": "Europe/London",
    "oxford": "Europe/London",
    "lyon": "Europe/Paris",
    "krakow": "Europe/Warsaw",
    "beijing": "Asia/Shanghai",
    "shenzhen": "Asia/Shanghai",
    "hangzhou": "Asia/Shanghai",
    "mumbai": "Asia/Kolkata",
    "delhi": "Asia/Kolkata",
    "new delhi": "Asia/Kolkata",
    "bangalore": "Asia/Kolkata",
    "bengaluru": "Asia/Kolkata",
    "hyderabad": "Asia/Kolkata",
    "osaka": "Asia/Tokyo",
    "kyoto": "Asia/Tokyo",
    "tel aviv": "Asia/Jerusalem",
    "abu dhabi": "Asia/Dubai",
    "canberra": "Australia/Sydney",
    "rio de janeiro": "America/Sao_Paulo",
}
"""Big research cities that are not themselves names in the time-zone database."""

_OFFSET = re.compile(
    r"^(?:utc|gmt|z)?\s*(?P<sign>[+\-−])\s*(?P<hours>\d{1,2})(?:(?::|h)?(?P<minutes>\d{2}))?$"
)
_UTC_NAMES = frozenset({"utc", "gmt", "z", "zulu", "universal", "utc0", "gmt0", "+0", "-0"})


@dataclass(frozen=True)
class ZoneGuess:
    """What ``resolve`` understood: a zone (or None) and one sentence saying how."""

    zone: str | None
    explanation: str
    fixed_offset: bool = False
    """True for an ``Etc/GMT±N`` zone, which never changes for daylight saving."""


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return re.sub(r"[\s_]+", " ", plain).strip()


@cache
def _canonical_zones() -> frozenset[str]:
    """Zones listed in tzdata's ``zone.tab`` (canonical names, not backward links)."""
    try:
        table = importlib.resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return frozenset()
    return frozenset(
        fields[2]
        for line in table.splitlines()
        if line and not line.startswith("#") and len(fields := line.split("\t")) >= 3
    )


def _preference(zone: str) -> tuple[bool, int]:
    return (zone in _canonical_zones(), zone.count("/"))


@cache
def _indexes() -> tuple[dict[str, str], dict[str, str]]:
    """(folded IANA name → name, folded city → preferred zone), built once per process."""
    names: dict[str, str] = {}
    cities: dict[str, str] = {}
    for zone in sorted(zoneinfo.available_timezones()):
        if zone in _NOT_FOR_PEOPLE:
            continue
        names[_fold(zone)] = zone
        if zone.split("/", 1)[0] not in _REGIONS:
            continue
        city = _fold(zone.rsplit("/", 1)[-1])
        known = cities.get(city)
        # Prefer canonical names (Europe/Istanbul, America/Argentina/Buenos_Aires) over links.
        if known is None or _preference(zone) > _preference(known):
            cities[city] = zone
    for alias, zone in CITY_ALIASES.items():
        cities.setdefault(alias, zone)
    return names, cities


def is_valid(zone: str) -> bool:
    """True when ``zone`` is a time zone name this system knows."""
    if zone in _NOT_FOR_PEOPLE:
        return False
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def utc_offset_label(zone: str, now: datetime) -> str:
    """The zone's current offset, e.g. ``UTC+01:00``."""
    offset = now.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def local_time(zone: str, now: datetime) -> str:
    """The wall-clock time in ``zone`` at ``now`` as ``HH:MM``."""
    return now.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%H:%M")


def zones_at_offset(minutes: int, now: datetime, limit: int = 3) -> list[str]:
    """Regional zones whose offset is ``minutes`` from UTC right now (for suggestions)."""
    _, cities = _indexes()
    canonical = _canonical_zones()
    found = []
    for zone in sorted(set(cities.values())):
        if canonical and zone not in canonical:
            continue
        offset = now.astimezone(zoneinfo.ZoneInfo(zone)).utcoffset()
        if offset is not None and int(offset.total_seconds() // 60) == minutes:
            found.append(zone)
    return found[:limit]


def resolve(text: str, now: datetime | None = None) -> ZoneGuess:
    """Turn user input into an IANA zone name, saying what was understood (or why not)."""
    now = now or datetime.now(UTC)
    raw = " ".join(text.split())[:100]
    folded = _fold(raw)
    if not folded:
        return ZoneGuess(None, "No time zone given.")
    names, cities = _indexes()
    if folded in _UTC_NAMES:
        return ZoneGuess("UTC", "UTC (no daylight saving).")
    offset = _OFFSET.match(folded.replace(" ", ""))
    if offset:
        return _from_offset(offset, now)
    if folded in ABBREVIATIONS:
        zone, meaning = ABBREVIATIONS[folded]
        return ZoneGuess(zone, f"{raw} → {zone} ({meaning}, follows daylight saving).")
    if folded in names:
        zone = names[folded]
        return ZoneGuess(zone, f"{zone}.", fixed_offset=zone.startswith("Etc/"))
    for candidate in (folded, folded.split(",", 1)[0].strip()):
        if candidate in cities:
            zone = cities[candidate]
            return ZoneGuess(zone, f"{raw} → {zone}.")
    close = difflib.get_close_matches(folded, list(cities), n=1, cutoff=0.8)
    if close:
        zone = cities[close[0]]
        return ZoneGuess(
            None, f"I don't know “{raw}”. Did you mean {zone}? Send /timezone {zone} to use it."
        )
    return ZoneGuess(
        None,
        f"I don't know the time zone “{raw}”. Try a city (Berlin), "
        "a zone name (America/New_York) or an offset (UTC+2).",
    )


def _from_offset(match: re.Match[str], now: datetime) -> ZoneGuess:
    sign = -1 if match.group("sign") in "-−" else 1
    hours = int(match.group("hours"))
    minutes = int(match.group("minutes") or 0)
    label = f"UTC{'+' if sign > 0 else '−'}{hours:02d}:{minutes:02d}"
    if minutes >= 60 or not (-12 * 60 <= sign * (hours * 60 + minutes) <= 14 * 60):
        return ZoneGuess(None, f"{label} is not a real UTC offset (they run from −12 to +14).")
    if minutes:
        nearby = zones_at_offset(sign * (hours * 60 + minutes), now)
        hint = f" Zones at {label} today: {', '.join(nearby)}." if nearby else ""
        return ZoneGuess(
            None,
            f"There is no fixed-offset zone for {label}; please tell me a city instead.{hint}",
        )
    if hours == 0:
        return ZoneGuess("UTC", "UTC (no daylight saving).")
    # POSIX-style Etc zones invert the sign: UTC+2 is Etc/GMT-2.
    zone = f"Etc/GMT{'-' if sign > 0 else '+'}{hours}"
    return ZoneGuess(
        zone,
        f"{label} → {zone}, a fixed offset that ignores daylight saving (a city name follows it).",
        fixed_offset=True,
    )
