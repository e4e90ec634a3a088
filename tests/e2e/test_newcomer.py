"""The first hour, scripted: a newcomer types every command README.md's "Running it" block
and docs/cli-json.md document — in the order a person would — each as a fresh `leadbridge`
process against CRM sandboxes on loopback, and makes the usual mistakes on the way.

For every command: no Python traceback on stdout or stderr, the exit code docs/cli-json.md
gives for that situation, and no raw email address or sandbox secret in a log line.

Not run: `leadbridge run` and `leadbridge sandbox` run until stopped (tests/e2e/test_daemon.py
and tests/connectors/test_sandbox_faults.py run them as processes and stop them), and
`auth sign-in` with a real Referrals source signs in against Microsoft Entra ID, beyond
loopback. Their `--help`, and their mistakes that exit before they start, are run here.

Commands that read the store and nothing else run a few at a time (each process spends most
of its second importing leadbridge); commands that change what later ones see run in order.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from leadbridge.connectors.salesforce import sandbox as salesforce_sandbox
from leadbridge.core.app.cli import EXIT_ATTENTION, EXIT_USAGE, app
from leadbridge.core.connector import sandboxes
from tests.conftest import KNOWN_SECRETS, RAW_EMAIL, ROOT

from .helpers import LEADBRIDGE

pytestmark = pytest.mark.slow

EXIT_OK = 0
TRACEBACK = "Traceback (most recent call last)"
SAMPLE_LEADS = ROOT / "config" / "sample-leads.jsonl"  # its line 13 is cut short: malformed
# One more lead, in a file of its own: every sandbox CRM refuses a value with this marker (a
# validation rule of the org, the portal, the environment), so it becomes a dead letter.
REFUSED = {
    "UserDetails": {
        "FirstName": "Rita",
        "LastName": "Refused",
        "Email": "rita@refused.example",
        "Company": "SANDBOX_REJECT Ltd",
        "Country": "DE",
    },
    "LeadSource": "AppSource (SPZA)-INS|contoso.contoso-crm-addin",
    "ActionCode": "INS",
    "OfferTitle": "Contoso CRM Add-in",
}
WORKERS = 4
Command = Sequence[str | Path]
Done = subprocess.CompletedProcess[str]


# --- running leadbridge as a newcomer does --------------------------------------------------


def _environment() -> dict[str, str]:
    """The newcomer's shell: no LEADBRIDGE_* variable of whoever runs the tests (so "no
    config given" is real, and nothing overrides the config written here)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADBRIDGE_")}


def _start(command: Command, home: Path) -> Done:
    return subprocess.run(
        [*LEADBRIDGE, *map(os.fspath, command)],
        capture_output=True,
        text=True,
        env=_environment(),
        cwd=home,  # anything written relative to the working folder stays in the test's
        timeout=120,
    )


def _problems(command: Command, expect: int, done: Done) -> list[str]:
    """What a newcomer should never meet: an exit code other than the documented one, a
    traceback, a raw email address or a secret in a log line."""
    found = []
    if done.returncode != expect:
        found.append(f"exited {done.returncode}, docs/cli-json.md says {expect}")
    for stream, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        if TRACEBACK in text:
            found.append(f"a traceback on {stream}")
    for line in done.stderr.splitlines():
        if line.startswith("{") and (
            RAW_EMAIL.search(line) or any(secret in line for secret in KNOWN_SECRETS)
        ):
            found.append(f"a raw email or a secret in a log line: {line}")
    if not found:
        return []
    shown = shlex.join(["leadbridge", *map(os.fspath, command)])
    return [
        f"{shown}: {'; '.join(found)}\n"
        f"--- stdout ---\n{done.stdout[-3000:].rstrip()}\n"
        f"--- stderr ---\n{done.stderr[-3000:].rstrip()}"
    ]


class Newcomer:
    """Types commands in `home` and fails the test on the first surprise (`run`), or on all
    of a batch's surprises at once (`run_all`: commands that can run side by side)."""

    def __init__(self, home: Path, config: Path | None = None) -> None:
        self.home = home
        self.config = config

    def _argv(self, command: Command) -> list[str | Path]:
        return [*(["--config", self.config] if self.config else []), *command]

    def run(self, *command: str | Path, expect: int = EXIT_OK) -> Done:
        argv = self._argv(command)
        done = _start(argv, self.home)
        problems = _problems(argv, expect, done)
        assert not problems, problems[0]
        return done

    def run_all(self, steps: Sequence[tuple[Command, int]]) -> list[Done]:
        argvs = [self._argv(command) for command, _ in steps]
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda argv: _start(argv, self.home), argvs))
        problems = [
            problem
            for argv, (_, expect), done in zip(argvs, steps, results, strict=True)
            for problem in _problems(argv, expect, done)
        ]
        assert not problems, f"{len(problems)} of {len(steps)} commands:\n\n" + "\n\n".join(
            problems
        )
        return results


# --- fixtures: sandbox CRMs on loopback and a config pointing at them ----------------------


@pytest.fixture
def crms() -> Iterator[dict[str, Any]]:
    """Every sandbox CRM, in this process, without added latency."""
    running = sandboxes.start(latency_ms=0)
    yield running
    sandboxes.stop(running)


@pytest.fixture
def config(tmp_path: Path, crms: dict[str, Any]) -> Path:
    refused = tmp_path / "capture.jsonl"
    refused.write_text(json.dumps(REFUSED) + "\n", encoding="utf-8")
    path = tmp_path / "leadbridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "store": f"sqlite:///{tmp_path / 'leadbridge.db'}",
                "sources": [
                    {"name": "samples", "kind": "leads_file", "path": str(SAMPLE_LEADS)},
                    {"name": "capture", "kind": "leads_file", "path": str(refused)},
                ],
                "targets": [sandboxes.target_entry(kind, crm) for kind, crm in crms.items()],
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    return path


def _target_names(config: Path) -> list[str]:
    """The target names the config gives, sorted."""
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    return sorted(target["name"] for target in written["targets"])


def _flat(text: str) -> str:
    """Output with rich's wrapping undone: one space for any run of whitespace."""
    return " ".join(text.split())


# --- the first hour -------------------------------------------------------------------------


def test_the_first_hour_in_the_order_a_newcomer_types_it(
    tmp_path: Path, config: Path, crms: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    me = Newcomer(tmp_path, config)

    # Before anything else: what is this, and is my config right? (Nothing here changes a
    # thing: side by side.)
    version, check, online, shown = me.run_all(
        [
            (["--version"], EXIT_OK),
            (["config", "check"], EXIT_OK),
            (["config", "check", "--online", "--create-missing"], EXIT_OK),
            (["config", "show"], EXIT_OK),
        ]
    )
    targets = _target_names(config)  # every installed CRM's sandbox: a new one is walked too
    crm_targets = sorted(set(targets) - {"hook"})
    assert re.fullmatch(r"leadbridge \d+\.\d+\.\d+\S*\n", version.stdout)
    assert f"configuration OK: 2 source(s), {len(targets)} target(s)" in check.stdout
    for target in crm_targets:
        assert f"{target}: no schema problem(s)" in online.stdout
    assert "hook: no schema to check (webhook)" in online.stdout  # an endpoint has none
    masked = json.loads(shown.stdout)
    assert sorted(t["name"] for t in masked["targets"]) == targets
    assert crms["salesforce"].client_secret not in shown.stdout  # secrets masked

    # Then the store, the leads, the CRMs: each step changes what the next one sees.
    assert "store at revision" in me.run("db", "upgrade").stdout
    ingested = me.run("ingest", expect=EXIT_ATTENTION)  # line 13 is quarantined: malformed
    assert "1 Microsoft test lead + 1 quarantined" in _flat(ingested.stdout)  # the test lead
    delivered = me.run("deliver", expect=EXIT_ATTENTION)  # every CRM refuses Rita: dead letters
    assert _flat(delivered.stdout).count("10 pushed") == len(targets)
    synced = me.run("sync-stages")  # read back from every CRM that has stages
    assert all(f"{crm}: read 10 records" in synced.stdout for crm in crm_targets)

    # Looking around: what is there, and why (reads only: side by side).
    leads, quarantined, letters = me.run_all(
        [
            (["leads", "list", "--format", "json"], EXIT_OK),
            (["leads", "quarantine", "--format", "json"], EXIT_OK),
            (["dlq", "list", "--format", "json"], EXIT_OK),
        ]
    )
    john = next(lead for lead in json.loads(leads.stdout) if lead["first_name"] == "John")
    [malformed] = [q for q in json.loads(quarantined.stdout) if q["reason"] == "malformed"]
    letter = {row["target"]: row["id"] for row in json.loads(letters.stdout)}
    assert sorted(letter) == targets
    spend = tmp_path / "spend.csv"
    spend.write_text(f"date,amount\n{datetime.now(UTC).date()},500\n", encoding="utf-8")
    page = tmp_path / "funnel.html"
    raw = f"raw:{malformed['raw_lead_id']}"
    looks: dict[str, Command] = {
        "table": ["leads", "list", "--offer", john["offer_key"], "--limit", "1"],
        "csv": ["leads", "list", "--stage", "mql", "--format", "csv"],
        "by email": ["leads", "show", john["email"]],
        "by key": ["leads", "show", john["lead_key"], "--format", "json"],
        "raw": ["leads", "show", raw],
        "status": ["status"],
        "status json": ["status", "--format", "json"],
        "funnel": ["report", "funnel", "--period", "quarter", "--spend", spend],
        "funnel csv": ["report", "funnel", "--format", "csv"],
        "funnel json": ["report", "funnel", "--format", "json", "--by", "offer"],
        "funnel html": ["report", "funnel", "--format", "html", "--output", page],
        "dry run": ["backfill", "--dry-run", "--since", "2020-01-01"],
        "letter": ["dlq", "show", str(letter["sales"])],
    }
    seen = dict(zip(looks, me.run_all([(c, EXIT_OK) for c in looks.values()]), strict=True))
    assert john["lead_key"] in seen["table"].stdout and "1 leads" in seen["table"].stdout
    assert seen["csv"].stdout.startswith("lead_key,email,")
    assert {row["stage"] for row in csv.DictReader(io.StringIO(seen["csv"].stdout))} == {"mql"}
    assert json.loads(seen["by key"].stdout)["lead"]["email"] == john["email"]
    assert "quarantined (malformed)" in seen["raw"].stdout
    status = json.loads(seen["status json"].stdout)
    assert {name: t["dead_letters"] for name, t in status["targets"].items()} == dict.fromkeys(
        letter, 1
    )
    assert json.loads(seen["funnel json"].stdout)["groups"]  # per offer
    assert "<svg" in page.read_text(encoding="utf-8")
    assert all(json.loads(line)["target"] for line in seen["dry run"].stdout.splitlines())
    assert "lead pushes would be sent" in seen["dry run"].stderr
    assert json.loads(seen["letter"].stdout)["target"] == "sales"

    # Dead letters: a CRM still refusing, one discarded, the rule relaxed in Salesforce.
    me.run("dlq", "replay", str(letter["hook"]), expect=EXIT_ATTENTION)  # dead-lettered again
    me.run("dlq", "discard", str(letter["marketing"]))
    monkeypatch.setattr(salesforce_sandbox, "REJECT_MARKER", "the admin relaxed the rule")
    replayed = me.run("dlq", "replay", "--target", "sales")
    assert "replaying 1 dead letter(s)" in replayed.stdout
    assert "sales: 1 pushed" in _flat(replayed.stdout)
    me.run("dlq", "replay", "--all", expect=EXIT_ATTENTION)  # the others still refuse
    backfilled = me.run("backfill", "--since", "2020-01-01", expect=EXIT_ATTENTION)  # as deliver
    assert "queued" in backfilled.stdout and "dead-lettered" in backfilled.stdout


# --- help for every command -----------------------------------------------------------------


def _commands() -> list[list[str]]:
    """Every command a person can run, read from the CLI itself: one added later is here too."""
    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            found.append(path)
        for name, sub in sorted(subcommands.items() if subcommands else []):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_explains_itself_without_a_config(tmp_path: Path) -> None:
    commands = _commands()
    assert {"run", "sandbox", "demo"} <= {" ".join(c) for c in commands}
    assert ["auth", "sign-in"] in commands and ["report", "funnel"] in commands
    helped = Newcomer(tmp_path).run_all([([*c, "--help"], EXIT_OK) for c in [[], *commands]])
    for command, done in zip([[], *commands], helped, strict=True):
        assert " ".join(["Usage: leadbridge", *command]) in _flat(done.stdout), command


# --- the usual mistakes ---------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_usual_mistakes_exit_as_documented_and_never_with_a_traceback(
    tmp_path: Path,
) -> None:
    """No config, a config that doesn't load, a store that can't be opened, a source file
    not there yet, a value that isn't one of the choices, a lead that isn't there."""
    store = f"sqlite:///{tmp_path / 'leadbridge.db'}"
    config = _write(
        tmp_path / "leadbridge.yaml",
        yaml.safe_dump(
            {
                "store": store,
                "sources": [{"name": "samples", "kind": "leads_file", "path": str(SAMPLE_LEADS)}],
                # never called: every mistake below is refused before anything is sent
                "targets": [
                    {
                        "name": "hook",
                        "kind": "webhook",
                        "url": "http://127.0.0.1:9/leads",
                        "secret": "sandbox-webhook-secret",
                    }
                ],
            }
        ),
    )
    broken = _write(tmp_path / "broken.yaml", "engine: swarm\n")
    blocked = tmp_path / "a-file"
    blocked.write_text("", encoding="utf-8")
    no_store = _write(tmp_path / "no-store.yaml", f"store: sqlite:///{blocked}/leadbridge.db\n")
    drop = _write(
        tmp_path / "drop.yaml",
        f"store: {store}\nsources:\n  - name: drop\n    kind: leads_file\n"
        f"    path: {tmp_path / 'not-there-yet.jsonl'}\n",
    )
    empty = _write(tmp_path / "empty.yaml", f"store: {store}\n")
    someone_elses = _write(tmp_path / "theirs" / "leadbridge.db", "someone's real leads")
    me = Newcomer(tmp_path)
    me.run("--config", config, "db", "upgrade")  # first, alone: the others share this store

    with_config: list[tuple[Command, int]] = [
        (["leads", "list", "--format", "xml"], EXIT_USAGE),  # not one of the formats
        (["leads", "list", "--stage", "hot"], EXIT_USAGE),  # not one of the stages
        (["leads", "show", "nobody@nowhere.example"], EXIT_ATTENTION),  # no such lead
        (["leads", "show", "raw:x"], EXIT_USAGE),
        (["sync-stages", "--target", "hook"], EXIT_USAGE),  # a webhook reads no stages back
        (["dlq", "replay"], EXIT_USAGE),  # none of ID, --all, --target
        (["auth", "sign-in", "--source", "samples"], EXIT_USAGE),  # needs no sign-in
        (["--log-format", "yaml", "status"], EXIT_USAGE),
    ]
    steps: list[tuple[Command, int]] = [
        *((["--config", config, *command], expect) for command, expect in with_config),
        (["status"], EXIT_USAGE),  # no config given
        (["nonsense"], EXIT_USAGE),  # no such command
        (["--config", broken, "config", "check"], EXIT_USAGE),  # a config that doesn't load
        (["--config", no_store, "status"], EXIT_USAGE),  # a store that can't be opened
        (["--config", drop, "config", "check"], EXIT_OK),  # a drop folder's file: a warning
        (["--config", drop, "ingest"], EXIT_USAGE),  # … but a source that can't be read
        (["--config", empty, "run"], EXIT_USAGE),  # nothing to run
        (["sandbox", "--crm", "carrier-pigeon"], EXIT_USAGE),
        (["demo", "--workdir", someone_elses.parent], EXIT_USAGE),  # a store it didn't make
        (["demo", "--workdir", tmp_path / "demo"], EXIT_OK),
    ]
    done = dict(
        zip([shlex.join(map(os.fspath, c)) for c, _ in steps], me.run_all(steps), strict=True)
    )

    def said(*command: str | Path) -> str:
        result = done[shlex.join(map(os.fspath, command))]
        return _flat(result.stdout + result.stderr)

    stages = said("--config", config, "leads", "list", "--stage", "hot")
    assert "mql" in stages and "disqualified" in stages  # the choices are named
    assert "no configuration given" in said("status") and "fix:" in said("status")
    assert "engine" in said("--config", broken, "config", "check")
    assert "can't be opened" in said("--config", no_store, "status")
    assert "not-there-yet.jsonl" in said("--config", drop, "config", "check")  # the warning
    assert "not-there-yet.jsonl" in said("--config", drop, "ingest")
    assert "did not make" in said("demo", "--workdir", someone_elses.parent)
    assert someone_elses.read_text(encoding="utf-8") == "someone's real leads"


# --- found by the newcomer (fixed; kept so they stay fixed) -----------------------------------


def test_a_config_that_does_not_load_is_said_on_stderr_not_into_the_output(
    tmp_path: Path,
) -> None:
    broken = _write(tmp_path / "broken.yaml", "engine: swarm\n")
    done = Newcomer(tmp_path).run("--config", broken, "leads", "list", "--format", "json", expect=2)
    assert "engine" in done.stderr and "fix:" in done.stderr
    assert done.stdout == ""  # what a program reads from stdout holds no error text


def test_the_demo_never_overwrites_a_config_it_did_not_make(tmp_path: Path) -> None:
    """Refusing (exit 2, as for a store) or writing its config under another name (exit 0)
    would both do: what must not happen is the person's file replaced."""
    mine = _write(tmp_path / "project" / "leadbridge.yaml", "store: postgresql://db/leads\n")
    command = ["demo", "--workdir", mine.parent]
    done = _start(command, tmp_path)
    assert done.returncode in (EXIT_OK, EXIT_USAGE)
    assert not _problems(command, done.returncode, done)  # no traceback, no leak
    assert mine.read_text(encoding="utf-8") == "store: postgresql://db/leads\n"
