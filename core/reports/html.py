"""The funnel report as one self-contained HTML page: the charts are inline SVG, the styles
inline, no script and nothing fetched, so it opens anywhere, mailed or archived."""

from __future__ import annotations

from html import escape
from typing import Any

from leadbridge.core.reports.funnel import follow_up_rows, minute

WIDTH = 720
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:32px;color:#1f2933}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.muted{color:#616e7c}table{border-collapse:collapse;margin:8px 0}
td,th{border-bottom:1px solid #e4e7eb;padding:4px 12px 4px 0;text-align:left}
th{font-weight:600}.num{text-align:right}.kpis{display:flex;gap:24px;flex-wrap:wrap}
.kpi{border:1px solid #e4e7eb;border-radius:6px;padding:10px 14px;min-width:130px}
.kpi b{display:block;font-size:20px}svg text{font:12px system-ui,sans-serif;fill:#323f4b}
"""


def render(report: dict[str, Any]) -> str:
    total = report["total"]
    period = report["period"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>leadbridge funnel {escape(period['label'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Marketplace lead funnel — {escape(period['label'])}</h1>",
        f"<p class='muted'>{escape(period['start'])} to {escape(period['end'])} (UTC, end "
        "exclusive). From leadbridge's own history of every lead.</p>",
        _kpis(total),
        "<h2>Funnel</h2>",
        _funnel_chart(total),
        "<h2>MQLs and SQLs per week</h2>",
        _weekly_chart(total["weekly"]),
        "<h2>MQL → SQL velocity (days)</h2>",
        _velocity_chart(total["velocity_days"]),
        "<h2>Contact-me follow-up</h2>",
        _sla(total["sla"]),
    ]
    if total.get("cost"):
        parts += ["<h2>Cost per SQL</h2>", _cost(total["cost"])]
    if report["groups"]:
        parts += [f"<h2>By {escape(report['by'])}</h2>", _groups(report["groups"])]
    parts.append("</body></html>")
    return "\n".join(parts)


def _rate(value: float | None) -> str:
    return "not available" if value is None else f"{value:.0%}"


def _days(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} d"


def _kpis(total: dict[str, Any]) -> str:
    velocity = total["velocity_days"]
    items = [
        ("Acceptance (SQL / MQL)", _rate(total["acceptance"]["rate"])),
        ("MQLs", str(total["stages"]["mql"])),
        ("SQLs", str(total["stages"]["sql"])),
        ("Median MQL → SQL", _days(velocity["median"])),
        ("p90 MQL → SQL", _days(velocity["p90"])),
        ("Contact-me within SLA", _rate(total["sla"]["share"])),
        ("Raw leads without a usable email", str(total.get("invalid_email_leads", 0))),
    ]
    if total.get("cost"):
        items.append(("Cost per SQL (lagged)", total["cost"]["lagged_per_sql"] or "—"))
    cells = "".join(
        f"<div class='kpi'><span class='muted'>{escape(label)}</span><b>{escape(value)}</b></div>"
        for label, value in items
    )
    return f"<div class='kpis' id='kpis'>{cells}</div>"


def _funnel_chart(total: dict[str, Any]) -> str:
    stages = total["stages"]
    rows = [
        ("Raw leads", total["raw_leads"]),
        ("Unique leads", total["unique_leads"]),
        ("MQL", stages["mql"]),
        ("SQL", stages["sql"]),
        ("Opportunity", stages["opportunity"]),
        ("Customer", stages["customer"]),
    ]
    top = max([value for _, value in rows] + [1])
    bar_h, label_w = 26, 110
    height = len(rows) * (bar_h + 8) + 8
    shapes = []
    for i, (label, value) in enumerate(rows):
        y = 8 + i * (bar_h + 8)
        width = max(2, (WIDTH - label_w - 60) * value / top)
        shapes.append(
            f"<text x='0' y='{y + 17}'>{escape(label)}</text>"
            f"<rect x='{label_w}' y='{y}' width='{width:.1f}' height='{bar_h}' "
            f"rx='3' fill='#2f80ed'/><text x='{label_w + width + 6:.1f}' "
            f"y='{y + 17}'>{value}</text>"
        )
    return _svg("funnel-chart", height, "".join(shapes), "Leads at each stage of the funnel")


def _weekly_chart(weeks: list[dict[str, Any]]) -> str:
    height, base, left = 220, 190, 30
    top = max([max(w["mql"], w["sql"]) for w in weeks] + [1])
    slot = (WIDTH - left) / max(len(weeks), 1)
    shapes = [
        f"<line x1='{left}' y1='{base}' x2='{WIDTH}' y2='{base}' stroke='#9aa5b1'/>",
        f"<text x='0' y='20'>{top}</text>",
    ]
    for i, week in enumerate(weeks):
        x = left + i * slot
        for j, (stage, colour) in enumerate((("mql", "#f2994a"), ("sql", "#27ae60"))):
            h = (base - 30) * week[stage] / top
            shapes.append(
                f"<rect x='{x + 2 + j * slot * 0.4:.1f}' y='{base - h:.1f}' "
                f"width='{slot * 0.38:.1f}' height='{h:.1f}' fill='{colour}'>"
                f"<title>{escape(week['week'])} {stage.upper()}: {week[stage]}</title>"
                "</rect>"
            )
        if i % max(1, len(weeks) // 7) == 0:
            shapes.append(f"<text x='{x:.1f}' y='{base + 18}'>{escape(week['week'][5:])}</text>")
    shapes.append(
        f"<rect x='{WIDTH - 150}' y='4' width='10' height='10' fill='#f2994a'/>"
        f"<text x='{WIDTH - 136}' y='13'>MQL</text><rect x='{WIDTH - 90}' y='4' "
        f"width='10' height='10' fill='#27ae60'/><text x='{WIDTH - 76}' y='13'>SQL</text>"
    )
    return _svg("weekly-chart", height, "".join(shapes), "MQLs and SQLs entered per week")


def _velocity_chart(velocity: dict[str, Any]) -> str:
    values = velocity["values"]
    if not values:
        return "<p class='muted' id='velocity-chart'>No MQL reached SQL in this period.</p>"
    bins = min(10, max(1, len(values)))
    high = max(values) or 1
    width_days = high / bins
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int(value / width_days))] += 1
    height, base, left = 200, 170, 30
    top = max(counts)
    slot = (WIDTH - left) / bins
    shapes = [f"<line x1='{left}' y1='{base}' x2='{WIDTH}' y2='{base}' stroke='#9aa5b1'/>"]
    for i, count in enumerate(counts):
        h = (base - 20) * count / top
        x = left + i * slot
        shapes.append(
            f"<rect x='{x + 2:.1f}' y='{base - h:.1f}' width='{slot - 4:.1f}' "
            f"height='{h:.1f}' fill='#9b51e0'><title>{count} leads</title></rect>"
            f"<text x='{x + 2:.1f}' y='{base + 16}'>{i * width_days:.0f}</text>"
        )
    return _svg("velocity-chart", height, "".join(shapes), "How many days MQLs took to become SQLs")


def _svg(chart_id: str, height: int, body: str, title: str) -> str:
    return (
        f"<svg id='{chart_id}' role='img' aria-label='{escape(title)}' "
        f"viewBox='0 0 {WIDTH + 40} {height}' width='{WIDTH + 40}' height='{height}' "
        f"xmlns='http://www.w3.org/2000/svg'><title>{escape(title)}</title>{body}</svg>"
    )


def _sla(sla: dict[str, Any]) -> str:
    decided = sla["within"] + len(sla["breaches"])
    head = (
        f"<p>{sla['within']} of {decided} Contact-me leads whose window is over were touched "
        f"by sales within {sla['threshold_hours']:g} hours ({_rate(sla['share'])}); "
        f"{len(sla['open'])} more are still inside their window.</p>"
    )
    rows = [
        r | {k: minute(r.get(k)) for k in ("asked_at", "due_by", "first_touch_at")}
        for r in follow_up_rows(sla)
    ]
    late = [
        r | {"first_touch_at": r["first_touch_at"] or "never"}
        for r in rows
        if r["status"] == "breach"
    ]
    due = [r for r in rows if r["status"] == "open"]
    parts = [head]
    if late:
        parts.append(
            "<h3>Breaches: the window passed without a touch in it</h3>"
            + _people("sla-breaches", late, ("first_touch_at", "first touch"), ("hours", "hours"))
        )
    if due:
        parts.append(
            "<h3>Open: not late yet, call them before the due time</h3>"
            + _people("sla-open", due, ("hours_left", "hours left"))
        )
    return "".join(parts)


def _people(table_id: str, rows: list[dict[str, Any]], *extra: tuple[str, str]) -> str:
    """Who to follow up: the row shape `reports.follow_up_rows` gives every format."""
    columns = [
        ("name", "name"),
        ("company", "company"),
        ("email", "email"),
        ("offer", "offer"),
        ("asked_at", "asked"),
        ("due_by", "due by"),
        *extra,
    ]
    head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_text(row.get(key)))}</td>" for key, _ in columns) + "</tr>"
        for row in rows
    )
    return f"<table id='{table_id}'><tr>{head}</tr>{body}</table>"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _cost(cost: dict[str, Any]) -> str:
    return (
        f"<table><tr><th>spend in the period</th><td class='num'>{escape(cost['spend'])}"
        f"</td><th>per SQL</th><td class='num'>{escape(cost['per_sql'] or '—')}</td></tr>"
        f"<tr><th>spend {cost['lag_days'] or 0} days earlier</th><td class='num'>"
        f"{escape(cost['lagged_spend'] or '—')}</td><th>per SQL (lagged)</th>"
        f"<td class='num'>{escape(cost['lagged_per_sql'] or '—')}</td></tr></table>"
    )


def _groups(groups: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{escape(g['group'])}</td><td class='num'>{g['unique_leads']}</td>"
        f"<td class='num'>{g['stages']['mql']}</td><td class='num'>{g['stages']['sql']}</td>"
        f"<td class='num'>{_rate(g['acceptance']['rate'])}</td>"
        f"<td class='num'>{_days(g['velocity_days']['median'])}</td></tr>"
        for g in groups
    )
    return (
        "<table id='groups'><tr><th>group</th><th class='num'>unique</th>"
        "<th class='num'>MQL</th><th class='num'>SQL</th><th class='num'>acceptance</th>"
        f"<th class='num'>median MQL → SQL</th></tr>{rows}</table>"
    )
