"""Synthetic marketplace leads for benchmarks, load and crash tests.

Deterministic for a seed. A share of the raw leads are returning customers: the same person
and offer again through another step, with the case, spacing and phone format varied the
way real re-submissions vary, so deduplication is exercised, not just insertion.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_FIRST = [
    "John",
    "Ana",
    "Priya",
    "Lars",
    "Marcus",
    "Chen",
    "Fatima",
    "Sam",
    "Zoë",
    "太郎",
    "María José",
    "Elif",
    "Olu",
    "Nguyen",
    "Ingrid",
]
_LAST = [
    "Smith",
    "Pereira",
    "Raman",
    "Jensen",
    "Okafor",
    "Wei",
    "Al-Sayed",
    "Taylor",
    "Ødegård-Müller",
    "田中",
    "García",
    "Yılmaz",
    "Adeyemi",
    "Tran",
    "Larsen",
]
_COUNTRIES = [
    ("US", "+1 425 555 {:04d}"),
    ("USA", "(312) 555-{:04d}"),
    ("DE", "+49 30 555{:04d}"),
    ("United Kingdom", "020 7946 {:04d}"),
    ("JP", "+81 3-5555-{:04d}"),
    ("PT", "+351 912 34{:04d}"),
    ("DNK", "+45 20 55 {:04d}"),
]
_TITLES = ["CTO", "Head of IT", "Operations Manager", "Developer", "CIO", "Procurement Lead", ""]
_SOURCES = [
    ("AzureMarketplace", "INS"),
    ("AzurePortal", "Create"),
    ("AppSource (SPZA)", "PLT"),
    ("AppSource (SPZA)", "INS"),
    ("SPZA", "StartTestDrive"),
    ("AppSource (SPZA)", "DNC"),
]
_OFFERS = [f"contoso.offer-{i}" for i in range(8)]


def raw_payloads(count: int, returning: float = 0.3, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` HTTPS payloads; about `returning` of them repeat an earlier (person, offer)."""
    rng = random.Random(seed)
    people: list[tuple[int, str]] = []
    for index in range(count):
        if people and rng.random() < returning:
            person, offer = rng.choice(people)
            yield _payload(rng, person, offer, index, vary=True)
        else:
            person, offer = index, rng.choice(_OFFERS)
            people.append((person, offer))
            yield _payload(rng, person, offer, index, vary=False)


def _payload(rng: random.Random, person: int, offer: str, index: int, vary: bool) -> dict[str, Any]:
    first, last = _FIRST[person % len(_FIRST)], _LAST[person % len(_LAST)]
    country, phone_format = _COUNTRIES[person % len(_COUNTRIES)]
    email = f"{first.split()[0].lower()}.{person}@customer{person % 97}.example.com"
    if vary:
        email = f"  {email.upper()} " if rng.random() < 0.5 else email.capitalize()
        first = first.lower()
    source, action = rng.choice(_SOURCES)
    return {
        "UserDetails": {
            "FirstName": first,
            "LastName": last,
            "Email": email,
            "Phone": phone_format.format(person % 10000),
            "Country": country,
            "Company": f"Customer {person % 97} Ltd",
            "Title": rng.choice(_TITLES),
        },
        "LeadSource": f"{source}-{action}|{offer}",
        "ActionCode": action,
        "OfferTitle": offer.replace(".", " ").title(),
        "Description": json.dumps({"mktcmpid": f"c{index % 5}"}) if index % 7 == 0 else "",
        "n": index,  # makes every raw payload distinct, as every customer action is
    }


def write_jsonl(path: Path, count: int, returning: float = 0.3, seed: int = 7) -> int:
    """Write `count` payloads as JSON lines; returns the number of unique (person, offer)."""
    unique: set[tuple[str, str]] = set()
    with path.open("w", encoding="utf-8") as handle:
        for payload in raw_payloads(count, returning, seed):
            handle.write(json.dumps(payload, ensure_ascii=False) + "\n")
            email = payload["UserDetails"]["Email"].strip().lower()
            unique.add((email, payload["LeadSource"].rsplit("|", 1)[1]))
    return len(unique)
