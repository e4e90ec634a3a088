"""Field normalisation with the libraries made for it.

Each function takes what a customer typed and returns a clean value or None. None means
"nothing usable was given" so that merging never overwrites a value with an empty one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from typing import Any

import orjson
import pycountry

# Names people type that are not in ISO 3166; pycountry knows the rest.
_COUNTRY_ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "great britain": "GB",
    "usa": "US",
    "u.s.": "US",
    "u.s.a.": "US",
    "united states of america": "US",
    "america": "US",
    "south korea": "KR",
    "korea": "KR",
    "russia": "RU",
    "vietnam": "VN",
    "iran": "IR",
    "taiwan": "TW",
    "uae": "AE",
    "czech republic": "CZ",
    "turkey": "TR",
    "holland": "NL",
}
_WHITESPACE = re.compile(r"\s+")
# The plain ASCII shape nearly every business address has (RFC 5322 dot-atom, LDH domain
# labels). Anything this accepts, email-validator accepts too; anything else — non-ASCII,
# quoted local parts, odd domains — goes to email-validator for the full check.
_PLAIN_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_CAMPAIGNS_NOISE = re.compile(r"^campaigns:\s*(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
# C0/C1 control characters other than tab and line breaks: never part of what a person
# typed, and NUL is refused by PostgreSQL text columns.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# Bounds on what is read from outside. Marketplace fields are short (a name, an address,
# a LeadSource string); these are far above any real value and far below what could hurt:
# a value over them is hostile or broken, and is dropped with a flag.
MAX_FIELD_CHARS = 1024  # names, company, title, phone, email, LeadSource, ActionCode
MAX_NOTES_CHARS = 32_768  # Description: about the longest text a CRM field takes
# The store's offer key column is 300 characters: "title:" plus the title key, measured
# after casefold (which can lengthen a title), or the `publisher.offer` id.
MAX_OFFER_CHARS = 256
# AppSource attribution and CustomerInfo are flat objects and a whole marketplace record is
# a few levels deep; deeper JSON is not a lead, and parsing or re-serialising it unbounded
# is what overflows the stack (json: RecursionError; orjson refuses depth > 255).
MAX_JSON_DEPTH = 32


class Unreadable(ValueError):
    """A value from outside that can't be read safely: too long, too deeply nested, not
    valid Unicode, or not text at all. The caller drops it with a flag or rejects the record."""


def text(value: object) -> str | None:
    """Trim and NFC-normalise; empty or whitespace-only becomes None. Case is kept as typed.

    Control characters (other than tab and line breaks) are removed: no one types them,
    and some stores refuse them.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if value.isascii() and value.isprintable():  # nearly every value: nothing to remove
        cleaned = value.strip()  # and NFC leaves ASCII as it is
    else:
        cleaned = unicodedata.normalize("NFC", _CONTROL.sub("", value)).strip()
    return cleaned or None


def readable(value: object, max_chars: int = MAX_FIELD_CHARS) -> str | None:
    """`text` for a value straight from a payload, which may be anything.

    Raises Unreadable, instead of letting it fail later (a serializer refusing a lone
    surrogate, a stack overflow on nesting, a varchar overflow in the store), when the
    value is a container, longer than `max_chars`, or not valid Unicode.
    """
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        try:
            value = str(value)
        except ValueError as exc:  # an int past Python's 4,300-digit conversion limit
            raise Unreadable("a number too long to read") from exc
    elif not isinstance(value, str):
        raise Unreadable(f"expected text, got {type(value).__name__}")
    if len(value) > max_chars:
        raise Unreadable(f"{len(value)} characters, more than {max_chars}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Unreadable("not valid Unicode (a lone surrogate)") from exc
    return text(value)


def nesting_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep containers nest in `value`, counted without recursion and given up on past
    `limit` (the result is then `limit + 1`): safe on a structure of any depth.

    Walked one level at a time: every record is checked on landing and again on parsing,
    and a marketplace record is two or three levels of a few dozen scalars, so most levels
    hold no container at all and end the walk after one pass over their values.
    """
    depth = 0
    level: list[Any] = [value]
    while True:
        below: list[Any] = []
        found = False
        for node in level:
            if isinstance(node, dict):
                below.extend(node.values())
            elif isinstance(node, list | tuple):
                below.extend(node)
            else:
                continue
            found = True
        if not found:
            return depth
        depth += 1
        if depth > limit:
            return limit + 1
        level = below


def bounded_json(value: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text whose size the caller has bounded, refusing nesting past `max_depth`.

    orjson parses without recursing on the Python stack and stops by itself at depth
    1,024; the depth check after it keeps what is returned shallow enough for everything
    downstream (repr, json.dumps, the store's serializer). Raises ValueError (a
    JSONDecodeError or Unreadable) for anything that is not such JSON.
    """
    parsed = orjson.loads(value)
    if nesting_depth(parsed, max_depth) > max_depth:
        raise Unreadable(f"JSON nested more than {max_depth} levels deep")
    return parsed


def email(value: object) -> tuple[str | None, str | None]:
    """Return (normalised email, problem). Lower-cased whole, NFC, trimmed.

    The syntax is checked with email-validator (no DNS: leads arrive offline too). An
    address that fails the check is returned as None with the reason, so it never becomes
    an identity or reaches a CRM that would reject it.
    """
    cleaned = text(value)
    if cleaned is None:
        return None, None
    return _email(cleaned)


@lru_cache(maxsize=8192)
def _email(cleaned: str) -> tuple[str | None, str | None]:
    """Cached: returning customers repeat. Plain addresses skip the full (slow) check.

    The canonical form is email-validator's `normalized`: the domain in IDNA-normalised
    Unicode (`alice@xn--bcher-kva.de`, `alice@BÜCHER.de` and fullwidth letters in the
    domain all become `alice@bücher.de`), the local part as typed (lower-cased, NFC). Not
    `ascii_email`: that is None when the local part is not ASCII, so it can't be the one
    form every valid address has, and the Unicode form is what the customer typed and
    what lead keys of such addresses were already derived from (core/identity.py
    `lead_key`). Plain ASCII addresses are unchanged by it, so their keys stay the same.
    """
    lowered = cleaned.lower()
    if (
        len(lowered) <= 254
        and lowered.find("@") <= 64
        and _PLAIN_EMAIL.match(lowered)
        and "xn--" not in lowered  # a punycode domain is the Unicode one spelled in ASCII
    ):
        return lowered, None
    # Imported here, on the rare address the plain pattern doesn't settle: the library
    # compiles its RFC patterns on import, ~20 ms of every command's start-up.
    from email_validator import EmailNotValidError, validate_email

    try:
        validated = validate_email(lowered, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        return None, str(exc)
    return validated.normalized, None


# Scripts that mix within one name legitimately (UTS #39 "highly restrictive": Latin with
# Han and Japanese kana, or Han with Hangul or Bopomofo), by the first word of the Unicode
# character name.
_EAST_ASIAN = frozenset(
    {"CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "HALFWIDTH", "HANGUL", "BOPOMOFO"}
)
# Compatibility forms that look like plain letters: fullwidth (ａ), mathematical (𝐚, ℎ).
_LOOKALIKE_FORMS = ("<wide>", "<font>")


def lookalike_email(typed: str | None, normalized: str | None) -> bool:
    """An address made to look like another: fullwidth or mathematical letters anywhere in
    what was typed, or letters of two scripts in the local part or in one domain label
    (`аpple.com` with a Cyrillic а). Flagged for a person to look at, never merged away:
    it may be a different person on purpose."""
    if (
        typed
        and not typed.isascii()
        and any(unicodedata.decomposition(c).startswith(_LOOKALIKE_FORMS) for c in typed)
    ):
        return True
    if not normalized or normalized.isascii():
        return False
    local, _, domain = normalized.rpartition("@")
    return any(_mixed_scripts(part) for part in (local, *domain.split(".")))


def _mixed_scripts(part: str) -> bool:
    scripts = {_script(c) for c in part if c.isalpha()}
    if len(scripts) <= 1:
        return False
    return not scripts <= {"LATIN", "EAST_ASIAN"}


def _script(char: str) -> str:
    """The script of a letter, from its Unicode name (`CYRILLIC SMALL LETTER A`)."""
    word = unicodedata.name(char, "UNKNOWN").split(" ", 1)[0]
    return "EAST_ASIAN" if word in _EAST_ASIAN else word


def country(value: object) -> str | None:
    cleaned = text(value)
    return None if cleaned is None else _country(cleaned)


@lru_cache(maxsize=4096)
def _country(cleaned: str) -> str:
    """ISO 3166-1 alpha-2 from an alpha-2, alpha-3, numeric code or an English name.

    A value pycountry cannot place is kept as typed (trimmed): losing what the customer
    wrote is worse than an unnormalised country.
    """
    key = _WHITESPACE.sub(" ", cleaned).lower()
    if key in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key]
    try:
        return pycountry.countries.lookup(cleaned).alpha_2
    except LookupError:
        return cleaned


@lru_cache(maxsize=1024)
def is_iso_country(value: str | None) -> bool:
    return (
        value is not None and len(value) == 2 and pycountry.countries.get(alpha_2=value) is not None
    )


def phone(value: object, region: str | None) -> str | None:
    """E.164 via phonenumbers, reading national numbers in the lead's country.

    Marketplace phones are free text ("1234567890", "+1 (123) 456-7890"); when the number
    can't be parsed or isn't a possible number the raw value is kept, trimmed.
    """
    cleaned = text(value)
    return None if cleaned is None else _phone(cleaned, region)


@lru_cache(maxsize=8192)
def _phone(cleaned: str, region: str | None) -> str:
    import phonenumbers  # here, on a cache miss: its metadata costs start-up ~17 ms

    parse_region = region if is_iso_country(region) else None
    try:
        parsed = phonenumbers.parse(cleaned, parse_region)
    except phonenumbers.NumberParseException:
        return cleaned
    if not phonenumbers.is_possible_number(parsed):
        return cleaned
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_e164(value: str | None) -> bool:
    return value is not None and value.startswith("+") and value[1:].isdigit()


def description(value: object) -> tuple[str | None, dict[str, str]]:
    """Split the marketplace Description into (notes, attribution).

    A JSON object is AppSource URL parameters (mktcmpid, partnerid, ...) and becomes
    attribution; "Campaigns: " with nothing after it is noise Microsoft sends and becomes
    None; "Campaigns: x" keeps x as the campaigns attribution; anything else is the
    customer's own notes.

    Raises Unreadable for a value over MAX_NOTES_CHARS, not valid Unicode, or JSON nested
    deeper than MAX_JSON_DEPTH: the caller drops it with a flag.
    """
    cleaned = readable(value, MAX_NOTES_CHARS)
    if cleaned is None:
        return None, {}
    if cleaned.startswith("{"):
        try:
            parsed = bounded_json(cleaned)
        except Unreadable:
            raise
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return None, {str(k): _attribution_value(v) for k, v in parsed.items() if v is not None}
    noise = _CAMPAIGNS_NOISE.match(cleaned)
    if noise:
        rest = text(noise.group("rest"))
        return None, ({"campaigns": rest} if rest else {})
    return cleaned, {}


def _attribution_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def offer_title_key(title: str) -> str:
    """The offer key for a lead that carries only a display title: case- and space-insensitive."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", title).strip()).casefold()


def name_quality(value: str | None) -> int:
    """How well-formed a name or company looks: typed with capitals beats all-lower/all-upper."""
    if not value:
        return 0
    letters = [c for c in value if c.isalpha()]
    if not letters or not any(c.isupper() or c.islower() for c in letters):
        return 2  # scripts without case (CJK) are as good as it gets
    if value == value.lower() or value == value.upper():
        return 1
    return 2
