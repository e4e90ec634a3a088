"""`leadbridge demo`: the sample marketplace leads through the pipeline, no credentials.

Runs with config/demo.yaml against a throwaway SQLite store (or `--workdir`), so it
exercises exactly the code and configuration path a real deployment does.
"""

from __future__ import annotations

import os
import tempfile
from importlib.resources import as_file, files
from pathlib import Path

from leadbridge.connectors.base import build
from leadbridge.core import logs, render, views
from leadbridge.core.pipeline import ingest
from leadbridge.core.settings import load_settings
from leadbridge.core.store.repo import Store


def run_demo(workdir: Path | None = None) -> int:
    out = render.console
    with (
        tempfile.TemporaryDirectory(prefix="leadbridge-demo-") as tmp,
        as_file(files("leadbridge.config")) as data_dir,
    ):
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ["LEADBRIDGE_DEMO_DIR"] = str(work.resolve())
        os.environ["LEADBRIDGE_DEMO_DATA"] = str(Path(data_dir).resolve())
        settings = load_settings(Path(data_dir) / "demo.yaml")
        logs.setup(settings.log_format, "WARNING")  # the demo's output is the tables below
        store = Store(settings.store)
        out.rule("leadbridge demo: marketplace leads → deduplicated, qualified leads")
        for config in settings.source_configs():
            report = ingest(build(config), store, settings)
            out.print(
                f"{config.name}: {report.fetched} raw leads → "
                f"{report.leads_created} new leads, {report.leads_updated} merged into "
                f"existing ones, {report.new_mqls} new MQLs, {report.test_leads} Microsoft "
                f"test lead(s), {report.quarantined} quarantined"
            )
        with store.connect() as conn:
            rows = views.list_leads(conn)
            quarantined = views.list_quarantine(conn)
            status = views.status(conn, [s.name for s in settings.sources], [])
        render.emit_table(
            [views.masked_row(r) for r in rows],
            (
                "email",
                "first_name",
                "last_name",
                "company",
                "offer_key",
                "stage",
                "score",
                "actions",
            ),
            title=f"{len(rows)} unique leads",
        )
        render.emit_table(
            quarantined,
            ("raw_lead_id", "source", "reason", "message"),
            title="kept in landing, not delivered",
        )
        raw_total = sum(status["raw_leads"].values())
        out.print(
            f"{raw_total} raw leads became {status['leads']['total']} leads "
            f"({status['leads']['by_stage']}); last Microsoft test lead "
            f"{status['last_test_lead_at']}."
        )
        out.print(
            f"Look closer: leadbridge --config <your config> leads show <email>. "
            f"Store: {settings.store}"
        )
        store.dispose()
    return 0
