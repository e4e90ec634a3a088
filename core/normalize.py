"""Field normalisation with the libraries made for it.

Each function takes what a customer typed and returns a clean value or None. None means
"nothing usable was given" so that merging never overwrites a value with an empty one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

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


def text(value: object) -> str | None:
    """Trim and NFC-normalise; empty or whitespace-only becomes None. Case is kept as typed."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    cleaned = unicodedata.normalize("NFC", value).strip()
    return cleaned or None


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
    """Cached: returning customers repeat. Plain addresses skip the full (slow) check."""
    lowered = cleaned.lower()
    if len(lowered) <= 254 and lowered.find("@") <= 64 and _PLAIN_EMAIL.match(lowered):
        return lowered, None
    try:
        validate_email(lowered, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        return None, str(exc)
    return lowered, None


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
    return bool(value) and len(value) == 2 and pycountry.countries.get(alpha_2=value) is not None


def phone(value: object, region: str | None) -> str | None:
    """E.164 via phonenumbers, reading national numbers in the lead's country.

    Marketplace phones are free text ("1234567890", "+1 (123) 456-7890"); when the number
    can't be parsed or isn't a possible number the raw value is kept, trimmed.
    """
    cleaned = text(value)
    return None if cleaned is None else _phone(cleaned, region)


@lru_cache(maxsize=8192)
def _phone(cleaned: str, region: str | None) -> str:
    parse_region = region if is_iso_country(region) else None
    try:
        parsed = phonenumbers.parse(cleaned, parse_region)
    except phonenumbers.NumberParseException:
        return cleaned
    if not phonenumbers.is_possible_number(parsed):
        return cleaned
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_e164(value: str | None) -> bool:
    return bool(value) and value.startswith("+") and value[1:].isdigit()


def description(value: object) -> tuple[str | None, dict[str, str]]:
    """Split the marketplace Description into (notes, attribution).

    A JSON object is AppSource URL parameters (mktcmpid, partnerid, ...) and becomes
    attribution; "Campaigns: " with nothing after it is noise Microsoft sends and becomes
    None; "Campaigns: x" keeps x as the campaigns attribution; anything else is the
    customer's own notes.
    """
    cleaned = text(value)
    if cleaned is None:
        return None, {}
    if cleaned.startswith("{"):
        try:
            parsed = json.loads(cleaned)
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
