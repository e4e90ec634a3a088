"""The CLI through typer's runner: exit codes, formats, and what operators read."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from leadbridge.core.app import views
from leadbridge.core.store import repo
from leadbridge.core.store.repo import Store
from tests.clihelp import EXIT_ATTENTION, EXIT_USAGE, run_cli
from tests.core.app.listing import check_listed_in_full, save_many_leads

Args = list[str | Path]


@pytest.fixture
def config(tmp_path: Path, samples: list[dict[str, Any]]) -> Path:
    leads = tmp_path / "leads.jsonl"
    lines = [json.dumps(s["https_payload"]) for s in samples] + ["{broken"]
    leads.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "lb.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\n"
        f"sources:\n  - name: capture\n    kind: leads_file\n    path: {leads}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def lb(config: Path) -> Args:
    """The start of every command line here: the test's config."""
    return ["--config", config]


def test_ingest_then_list_show_and_status(lb: Args) -> None:
    result = run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)  # finished, a record quarantined
    assert "1 quarantined" in result.output

    listed = json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)
    assert len(listed) == 10
    assert {row["stage"] for row in listed} == {"lead", "mql"}
    assert set(listed[0]) >= {"lead_key", "email", "offer_key", "stage", "score", "actions"}

    mqls = json.loads(run_cli([*lb, "leads", "list", "--stage", "mql", "--format", "json"]).stdout)
    assert all(row["stage"] == "mql" for row in mqls) and mqls

    csv_out = run_cli([*lb, "leads", "list", "--format", "csv"]).stdout
    assert csv_out.splitlines()[0].startswith("lead_key,email")

    story = json.loads(
        run_cli([*lb, "leads", "show", "JSmith@contoso.com", "--format", "json"]).stdout
    )
    kinds = [event["kind"] for event in story["history"]]
    assert kinds.count("action") == 2 and "stage" in kinds
    assert story["lead"]["score_rules"]

    table = run_cli([*lb, "leads", "show", story["lead"]["lead_key"]])
    assert "history" in table.output

    status = json.loads(run_cli([*lb, "status", "--format", "json"]).stdout)
    assert status["raw_leads"] == {"processed": 11, "quarantined": 2}
    assert status["quarantine"] == {"malformed": 1, "test": 1}
    assert status["last_test_lead_at"]
    assert status["sources"]["capture"]["raw_leads"] == 13


def test_quarantine_is_explained(lb: Args) -> None:
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)
    rows = json.loads(
        run_cli([*lb, "leads", "quarantine", "--reason", "malformed", "--format", "json"]).stdout
    )
    assert len(rows) == 1 and rows[0]["field"] == "body"
    raw = f"raw:{rows[0]['raw_lead_id']}"
    story = json.loads(run_cli([*lb, "leads", "show", raw, "--format", "json"]).stdout)
    assert story["quarantine"]["fix"]
    run_cli([*lb, "leads", "show", "raw:x"], expect=EXIT_USAGE)
    run_cli([*lb, "leads", "show", "nobody@nowhere.io"], expect=EXIT_ATTENTION)


# What a customer (or a CRM) can type: OSC title change, clear screen, BEL, an 8-bit CSI,
# a bidi override, and spreadsheet formulas.
HOSTILE = {
    "first_name": "\x1b]0;pwned\x07Eve\x1b[2J",
    "last_name": "\u202eevE\x9b31m\x7f",
    "company": '=HYPERLINK("http://evil.example","click")',
    "title": "@SUM(1+1)",
    "offer_title": "-2+3",
    "notes": "+cmd|' /C calc'!A0",
}
RAW = ("\x1b]0;", "\x1b[2J", "\x07", "\x9b", "\x7f", "\u202e")


def test_hostile_lead_fields_reach_neither_the_terminal_nor_a_spreadsheet(
    config: Path, lb: Args
) -> None:
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)
    store = Store(f"sqlite:///{config.parent / 'lb.db'}")
    with store.begin() as conn:
        lead = repo.leads_by_email(conn, ["jsmith@contoso.com"])["jsmith@contoso.com"][0]
        key = lead.lead_key
        repo.save_leads(conn, [dataclasses.replace(lead, **HOSTILE)], repo.utcnow())
        repo.add_dead_letters(
            conn,
            [
                {
                    "lead_key": key,
                    "target": "sales",
                    "error_class": "permanent",
                    "error": "=1+2\x1b[2J",
                    "body": None,
                    "created_at": repo.utcnow(),
                }
            ],
        )

    for args in (["leads", "list"], ["leads", "show", key], ["dlq", "list"]):
        result = run_cli([*lb, *args])
        assert not [c for c in RAW if c in result.output], args
    shown = run_cli([*lb, "leads", "show", key]).output
    assert "\\x1b]0;pwned\\x07Eve\\x1b[2J" in shown  # visible, not acted on
    assert "\\u202eevE\\x9b31m\\x7f" in shown

    listed = run_cli([*lb, "leads", "list", "--format", "json"])
    assert not [c for c in RAW if c in listed.stdout]
    [row] = [r for r in json.loads(listed.stdout) if r["lead_key"] == key]
    assert {k: row[k] for k in ("first_name", "last_name", "company")} == {
        k: HOSTILE[k] for k in ("first_name", "last_name", "company")
    }  # JSON escapes them and gives them back exactly

    exported = run_cli([*lb, "leads", "list", "--format", "csv"])
    assert not [c for c in RAW if c in exported.stdout]
    [cells] = [r for r in csv.DictReader(io.StringIO(exported.stdout)) if r["lead_key"] == key]
    assert cells["company"] == "'" + HOSTILE["company"]
    assert cells["title"] == "'@SUM(1+1)" and cells["offer_title"] == "'-2+3"
    assert cells["first_name"] == "\\x1b]0;pwned\\x07Eve\\x1b[2J"
    assert cells["score"] == str(lead.score)  # leadbridge's own numbers stay numbers

    letters = run_cli([*lb, "dlq", "list", "--format", "csv"])
    [letter] = list(csv.DictReader(io.StringIO(letters.stdout)))
    assert letter["error"] == "'=1+2\\x1b[2J"


def test_config_check_lists_problems_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "engine: swarm\nsources:\n  - name: t\n    kind: marketplace_table\n", encoding="utf-8"
    )
    result = run_cli(["--config", bad, "config", "check"], expect=EXIT_USAGE)
    assert "engine" in result.output and "sources[t].connection_string" in result.output
    assert "fix:" in result.output


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "store: postgresql://lb:pa55word@db/lb\nsources:\n  - name: t\n"
        "    kind: marketplace_table\n    connection_string: AccountKey=topsecret\n",
        encoding="utf-8",
    )
    run_cli(["--config", path, "config", "check"])
    shown = run_cli(["--config", path, "config", "show"]).stdout
    assert "topsecret" not in shown and "pa55word" not in shown
    assert json.loads(shown)["sources"][0]["table"] == "MarketplaceLeads"


def test_csv_and_json_list_every_lead_as_it_is_read(
    config: Path, lb: Args, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(f"sqlite:///{config.parent / 'lb.db'}")
    try:
        keys = save_many_leads(store)
    finally:
        store.dispose()
    check_listed_in_full(lb, keys, monkeypatch)


def test_db_upgrade_and_usage_errors(lb: Args) -> None:
    assert "revision" in run_cli([*lb, "db", "upgrade"]).output
    run_cli([*lb, "ingest", "--source", "nope"], expect=EXIT_USAGE)
    run_cli([*lb, "leads", "list", "--format", "xml"], expect=EXIT_USAGE)
    run_cli([*lb, "--log-format", "yaml", "status"], expect=EXIT_USAGE)


# --- one rule for values: unknown is exit 2 naming the choices, not found is exit 1 -------


def test_unknown_filter_values_are_usage_errors_that_name_the_choices(lb: Args) -> None:
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)
    stage = run_cli([*lb, "leads", "list", "--stage", "bogus"], expect=EXIT_USAGE).output
    assert "bogus" in stage and all(s in stage for s in ("subscriber", "mql", "disqualified"))
    assert json.loads(run_cli([*lb, "leads", "list", "--stage", "MQL", "--format", "json"]).stdout)
    reason = run_cli([*lb, "leads", "quarantine", "--reason", "bogus"], expect=EXIT_USAGE).output
    assert all(r in reason for r in ("malformed", "test", "invalid_email", "unprocessable"))
    offer = run_cli([*lb, "leads", "list", "--offer", "nope.nothing"], expect=EXIT_USAGE).output
    assert "contoso.contoso-crm-addin" in offer  # the offers that have leads
    for format in ("csv", "json"):  # said before a line of the list is written
        unknown = [*lb, "leads", "list", "--offer", "nope.nothing", "--format", format]
        assert run_cli(unknown, expect=EXIT_USAGE).stdout.startswith("no lead has the offer")
    assert run_cli([*lb, "leads", "list", "--format", "xml"], expect=EXIT_USAGE)
    assert "--limit" in run_cli([*lb, "leads", "list", "--limit", "0"], expect=EXIT_USAGE).output


def test_a_dead_letter_that_is_not_there_is_exit_1_for_every_verb(lb: Args) -> None:
    for verb in ("show", "replay", "discard"):
        assert "no " in run_cli([*lb, "dlq", verb, "999"], expect=EXIT_ATTENTION).output, verb
    assert "nobody" in run_cli([*lb, "dlq", "list", "--target", "nobody"], expect=EXIT_USAGE).output
    replay = run_cli([*lb, "dlq", "replay", "--target", "nobody"], expect=EXIT_USAGE)
    assert "nobody" in replay.output


def test_sync_stages_refuses_a_target_that_cannot_read_stages(tmp_path: Path) -> None:
    path = tmp_path / "hook.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path / 'lb.db'}\nlog_format: text\ntargets:\n"
        "  - name: hook\n    kind: webhook\n    url: https://example.com/leads\n"
        "    secret: s3cr3t-key\n",
        encoding="utf-8",
    )
    result = run_cli(["--config", path, "sync-stages", "--target", "hook"], expect=EXIT_USAGE)
    assert "'hook' does not read stages back (stage_sync: push)" in result.output
    assert "targets that do: none" in result.output
    nope = run_cli(["--config", path, "sync-stages", "--target", "nope"], expect=EXIT_USAGE)
    assert "'nope'" in nope.output


# --- output a person reads ---------------------------------------------------------------


def test_every_raw_lead_lands_in_exactly_one_bucket(lb: Args) -> None:
    """13 raw leads: the 13th, a second action of a known person, is counted too."""
    line = run_cli([*lb, "ingest"], expect=EXIT_ATTENTION).output
    assert (
        "13 raw leads = 10 new leads + 1 merged into a lead (another action of the same person "
        "and offer) + 1 Microsoft test lead + 1 quarantined" in line
    )
    counts = re.search(
        r"^(\d+) raw leads = (\d+) .* \+ (\d+) merged .* \+ (\d+) .* \+ (\d+) quarantined",
        line,
        re.MULTILINE,
    )
    assert counts and int(counts[1]) == sum(int(n) for n in counts.groups()[1:])


def test_status_reads_as_sentences_not_python_dicts(lb: Args) -> None:
    empty = run_cli([*lb, "status"]).output
    assert "raw leads: 0\n" in empty and "leads: 0\n" in empty
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)
    shown = run_cli([*lb, "status"]).output
    assert "{" not in shown and "'" not in shown
    assert (
        "raw leads: 13 (11 processed, 2 quarantined); quarantined for: 1 malformed, 1 test" in shown
    )
    assert re.search(r"leads: 10 \(\d+ lead, \d+ mql\)", shown)


def test_tables_mask_emails_and_never_cut_a_value_while_json_and_csv_keep_them(
    lb: Args,
) -> None:
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)
    rows = json.loads(run_cli([*lb, "leads", "list", "--format", "json"]).stdout)
    table = run_cli([*lb, "leads", "list"]).output
    assert "…" not in table
    for row in rows:  # whole keys and whole masked addresses, on one line each
        assert row["lead_key"] in table and row["email"] not in table
        assert re.search(
            re.escape(row["email"][0]) + r"\*\*\*@" + re.escape(row["email"].split("@")[1]), table
        )
    exported = list(
        csv.DictReader(io.StringIO(run_cli([*lb, "leads", "list", "--format", "csv"]).stdout))
    )
    assert {r["email"] for r in exported} == {r["email"] for r in rows}  # in full
    assert {r["do_not_contact"] for r in exported} == {"true", "false"}  # as in JSON

    shown = run_cli([*lb, "leads", "show", "JSmith@contoso.com"]).output
    assert "jsmith@contoso.com" not in shown.lower() and "j***@contoso.com" in shown
    story = json.loads(
        run_cli([*lb, "leads", "show", "jsmith@contoso.com", "--format", "json"]).stdout
    )
    assert story["lead"]["email"] == "jsmith@contoso.com"


def test_score_rules_read_as_words_not_regexes(lb: Args) -> None:
    run_cli([*lb, "ingest"], expect=EXIT_ATTENTION)
    show = [*lb, "leads", "show", "priya.raman@northwindtraders.com"]
    story = json.loads(run_cli([*show, "--format", "json"]).stdout)
    assert any("(?i)" in rule for rule in story["lead"]["score_rules"])  # JSON: as recorded
    shown = run_cli(show).output
    assert "(?i)" not in shown and "\\b" not in shown
    assert "score: title has a word starting with manager, lead, architect, principal" in shown


@pytest.mark.parametrize(
    ("rule", "read"),
    [
        (
            r"title matches '(?i)\\b(manager|lead|部長)' (+10)",
            "title has a word starting with manager, lead or 部長 (+10)",
        ),
        (  # the default senior-title rule: spelling variants once, c[etiofm]o spelled out
            "title matches "
            + repr(r"(?i)\b(c[etiofm]o|vice[- ]president|gesch(ä|ae)ftsf(ü|ue)hrer\w*)\b")
            + " (+15)",
            "title has one of the words ceo, cto, cio, coo, cfo, cmo, vice-president or "
            "geschäftsführer… (+15)",
        ),
        (r"title matches '\\bCTO\\b' (-2)", "title has the word CTO (case-sensitive) (-2)"),
        (r"title matches '(?i)^dev.*' (+3)", r"title matches '(?i)^dev.*' (+3)"),  # as it is
        ("action PLT (+50)", "action PLT (+50)"),
    ],
)
def test_a_title_rule_is_spelled_out_as_the_words_it_matches(rule: str, read: str) -> None:
    assert views.readable_rule(rule) == read
