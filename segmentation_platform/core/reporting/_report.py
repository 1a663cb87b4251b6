"""The per-snapshot segment report: one self-contained HTML file, readable offline.

It is what a marketing lead opens on Monday: how big and valuable each segment is,
how value is spread, where customers sit on the RFM grid, who moved where since last
week, and whether activation caused extra purchases (lift with 95% intervals). All
charts are inline SVG (core/charts) and all styling inline CSS, so the file works from
an email attachment, with no network and no scripts.
"""

import datetime as dt
import math
from dataclasses import dataclass, field
from html import escape

import duckdb
import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.reporting import _charts as charts

SEGMENT_KPIS_TABLE = "measurement.segment_kpis"
CHANNEL_KPIS_TABLE = "measurement.channel_kpis"
MIGRATION_TABLE = "measurement.migration"
LIFT_TABLE = "measurement.lift"
EXPORTS_TABLE = "activation.exports"
CLV_TABLE = "models.clv_scores"
RFM_TABLE = "models.rfm_scores"
ASSIGNMENTS_TABLE = "segments.assignments"
RFM_SCORES = ("1", "2", "3", "4", "5")
_PENDING_LIFT = "Outcome window not loaded yet: see the note below."


@dataclass
class ReportData:
    snapshot: dt.date
    scheme_version: str | None = None
    segment_kpis: pd.DataFrame = field(default_factory=pd.DataFrame)
    channel_kpis: pd.DataFrame = field(default_factory=pd.DataFrame)
    migration: pd.DataFrame = field(default_factory=pd.DataFrame)
    lift: pd.DataFrame = field(default_factory=pd.DataFrame)
    exports: pd.DataFrame = field(default_factory=pd.DataFrame)
    cltv: np.ndarray = field(default_factory=lambda: np.array([]))
    # r_score, f_score, customers
    rfm_grid: pd.DataFrame = field(default_factory=pd.DataFrame)
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))


def _snapshot_rows(conn: duckdb.DuckDBPyConnection, table: str, snapshot: dt.date) -> pd.DataFrame:
    if not warehouse.table_exists(conn, table):
        return pd.DataFrame()
    return conn.execute(f"SELECT * FROM {table} WHERE snapshot_date = ?", [snapshot]).df()


def load_report_data(conn: duckdb.DuckDBPyConnection, snapshot: dt.date) -> ReportData:
    """Everything the report shows for one snapshot; any missing table just leaves its section empty."""
    data = ReportData(snapshot=snapshot)
    data.segment_kpis = _snapshot_rows(conn, SEGMENT_KPIS_TABLE, snapshot)
    data.channel_kpis = _snapshot_rows(conn, CHANNEL_KPIS_TABLE, snapshot)
    data.migration = _snapshot_rows(conn, MIGRATION_TABLE, snapshot)
    data.lift = _snapshot_rows(conn, LIFT_TABLE, snapshot)
    data.exports = _snapshot_rows(conn, EXPORTS_TABLE, snapshot)
    if "cltv" in (
        warehouse.table_columns(conn, CLV_TABLE) if warehouse.table_exists(conn, CLV_TABLE) else []
    ):
        data.cltv = (
            conn.execute(
                f"SELECT cltv FROM {CLV_TABLE} WHERE snapshot_date = ? AND cltv IS NOT NULL", [snapshot]
            )
            .df()["cltv"]
            .to_numpy(dtype=float)
        )
    if warehouse.table_exists(conn, RFM_TABLE):
        data.rfm_grid = conn.execute(
            f"SELECT CAST(r_score AS VARCHAR) AS r_score, CAST(f_score AS VARCHAR) AS f_score, count(*) AS customers "
            f"FROM {RFM_TABLE} WHERE snapshot_date = ? GROUP BY ALL",
            [snapshot],
        ).df()
    if warehouse.table_exists(conn, ASSIGNMENTS_TABLE) and "scheme_version" in warehouse.table_columns(
        conn, ASSIGNMENTS_TABLE
    ):
        versions = conn.execute(
            f"SELECT DISTINCT CAST(scheme_version AS VARCHAR) FROM {ASSIGNMENTS_TABLE} WHERE snapshot_date = ? "
            "ORDER BY 1",
            [snapshot],
        ).fetchall()
        data.scheme_version = ", ".join(v for (v,) in versions if v) or None
    return data


# --------------------------------------------------------------------------- formatting


def _missing(value) -> bool:
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
    )


def _fmt(value, kind: str = "number") -> str:
    if _missing(value):
        return "—"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "points":
        return f"{value * 100:+.1f} pp"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "money":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return charts._number(float(value))


def _table(frame: pd.DataFrame, columns: list[tuple[str, str, str]], table_id: str) -> str:
    """`columns` = (column, heading, kind)."""
    if frame.empty:
        return "<p class='empty'>No rows for this snapshot.</p>"
    head = "".join(f"<th>{escape(heading)}</th>" for _, heading, _ in columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column, _, kind in columns:
            value = record.get(column)
            text = escape(str(value)) if kind == "text" and not _missing(value) else escape(_fmt(value, kind))
            cells.append(f"<td class='{'text' if kind == 'text' else 'num'}'>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def segment_colors(data: ReportData) -> dict[str, str]:
    names = set()
    for frame, columns in (
        (data.segment_kpis, ["action_segment"]),
        (data.migration, ["from_segment", "to_segment"]),
        (data.lift, ["action_segment"]),
    ):
        for column in columns:
            if column in frame.columns:
                names.update(str(v) for v in frame[column].dropna())
    ordered = sorted(n for n in names if not n.startswith("("))
    colors = {name: charts.color_for(i) for i, name in enumerate(ordered)}
    colors.update({n: "#9e9e9e" for n in names if n.startswith("(")})
    return colors


# --------------------------------------------------------------------------- sections


def _tiles(data: ReportData) -> str:
    kpis = data.segment_kpis
    customers = int(kpis["customers"].sum()) if not kpis.empty else 0
    total_cltv = kpis["total_cltv"].sum(min_count=1) if "total_cltv" in kpis else math.nan
    revenue = kpis["revenue_30d"].sum(min_count=1) if "revenue_30d" in kpis else math.nan
    ok = int((data.exports["status"] == "success").sum()) if "status" in data.exports else 0
    failed = int((data.exports["status"] == "failed").sum()) if "status" in data.exports else 0
    tiles = [
        ("Customers", _fmt(customers, "count")),
        ("Action segments", str(len(kpis))),
        ("Predicted CLTV", _fmt(total_cltv, "money")),
        ("Revenue next 30 days", _fmt(revenue, "money") if not _missing(revenue) else "pending"),
        ("Exports", f"{ok} ok" + (f", {failed} failed" if failed else "")),
    ]
    return (
        "<div class='tiles'>"
        + "".join(
            f"<div class='tile'><div class='tile-value'>{escape(value)}</div><div class='tile-label'>{escape(name)}</div></div>"
            for name, value in tiles
        )
        + "</div>"
    )


def _segments_section(data: ReportData, colors: dict[str, str]) -> str:
    kpis = data.segment_kpis
    if kpis.empty:
        return "<section id='segments'><h2>Segment sizes and value</h2><p class='empty'>No segment KPIs.</p></section>"
    kpis = kpis.sort_values("customers", ascending=False)
    names = kpis["action_segment"].astype(str).tolist()
    seg_colors = [colors.get(n, "#999") for n in names]
    sizes = charts.bar_chart(
        "segment-sizes",
        "Customers per action segment",
        list(zip(names, kpis["customers"].astype(float), strict=True)),
        colors=seg_colors,
    )
    value = charts.bar_chart(
        "segment-value",
        "Mean predicted CLTV per action segment",
        list(zip(names, kpis["mean_cltv"].astype(float), strict=True)),
        colors=seg_colors,
    )
    table = _table(
        kpis,
        [
            ("action_segment", "Segment", "text"),
            ("customers", "Customers", "count"),
            ("share_of_customers", "Share", "percent"),
            ("mean_cltv", "Mean CLTV", "money"),
            ("mean_churn_probability", "Churn prob.", "percent"),
            ("revenue_30d", "Revenue 30d", "money"),
            ("margin_30d", "Margin 30d", "money"),
            ("conversion_30d", "Bought in 30d", "percent"),
            ("revenue_90d", "Revenue 90d", "money"),
            ("realized_churn_rate_90d", "No purchase in 90d", "percent"),
        ],
        "segment-kpis",
    )
    notes = _notes(kpis)
    return (
        "<section id='segments'><h2>Segment sizes and value</h2>"
        "<div class='row'><figure><figcaption>Customers</figcaption>"
        f"{sizes}</figure><figure><figcaption>Mean predicted CLTV</figcaption>{value}</figure></div>"
        f"{table}{notes}</section>"
    )


def _notes(frame: pd.DataFrame, label_column: str | None = None) -> str:
    """Distinct notes once each; per-row notes get the row's label so the reader knows which row."""
    if "note" not in frame.columns:
        return ""
    notes = []
    shared = frame["note"].notna().all() and frame["note"].nunique() == 1
    for record in frame.dropna(subset=["note"]).to_dict("records"):
        text = str(record["note"])
        if label_column and not shared:
            text = f"{record[label_column]}: {text}"
        if text not in notes:
            notes.append(text)
    return "".join(f"<p class='note'>{escape(n)}</p>" for n in notes)


def _cltv_section(data: ReportData) -> str:
    values = data.cltv
    chart = charts.histogram("cltv-histogram", "Distribution of predicted CLTV", values.tolist())
    summary = ""
    if len(values):
        q = np.quantile(values, [0.5, 0.9, 0.99])
        top_share = (
            np.sort(values)[::-1][: max(1, len(values) // 10)].sum() / values.sum() if values.sum() else 0
        )
        summary = (
            f"<p>{len(values):,} customers scored. Median {_fmt(q[0], 'money')}, 90th percentile "
            f"{_fmt(q[1], 'money')}, 99th {_fmt(q[2], 'money')}. The top 10% hold {top_share:.0%} of predicted value.</p>"
        )
    return f"<section id='cltv'><h2>CLTV distribution</h2>{chart}{summary}</section>"


def _rfm_section(data: ReportData) -> str:
    grid = data.rfm_grid
    cells = {}
    if not grid.empty:
        for row in grid.itertuples(index=False):
            cells[(str(row.r_score), str(row.f_score))] = float(row.customers)
    chart = charts.heatmap(
        "rfm-grid",
        "Customers by recency (R) and frequency (F) score",
        rows=list(reversed(RFM_SCORES)),
        columns=list(RFM_SCORES),
        cells=cells,
        row_title="Recency score (5 = most recent)",
        column_title="Frequency score (5 = most frequent)",
    )
    return f"<section id='rfm'><h2>RFM grid</h2>{chart}</section>"


def _migration_section(data: ReportData, colors: dict[str, str]) -> str:
    migration = data.migration
    if migration.empty:
        return "<section id='migration'><h2>Migration</h2><p class='empty'>No migration rows.</p></section>"
    previous = migration["previous_snapshot_date"].dropna()
    if previous.empty:
        return (
            "<section id='migration'><h2>Migration</h2><p class='empty'>First snapshot: there is no previous "
            "one to compare with, every customer is new.</p></section>"
        )
    before = str(pd.Timestamp(previous.iloc[0]).date())
    flows = [
        (str(r.from_segment), str(r.to_segment), int(r.customers)) for r in migration.itertuples(index=False)
    ]
    chart = charts.flow_diagram(
        "migration-flows",
        "Customers moving between segments since the previous snapshot",
        flows,
        left_title=f"{before}",
        right_title=f"{data.snapshot}",
        segment_colors=colors,
    )
    moved = migration[migration["from_segment"] != migration["to_segment"]].sort_values(
        "customers", ascending=False
    )
    stayed = int(migration.loc[migration["from_segment"] == migration["to_segment"], "customers"].sum())
    total = int(migration["customers"].sum())
    table = _table(
        moved.head(12),
        [
            ("from_segment", "From", "text"),
            ("to_segment", "To", "text"),
            ("customers", "Customers", "count"),
            ("share_of_from", "Share of From", "percent"),
        ],
        "migration-top",
    )
    return (
        f"<section id='migration'><h2>Migration since {escape(before)}</h2>{chart}"
        f"<p>{stayed:,} of {total:,} customers stayed in their segment. Largest moves:</p>{table}</section>"
    )


def _lift_section(data: ReportData) -> str:
    lift = data.lift
    if lift.empty:
        return (
            "<section id='lift'><h2>Lift vs holdout</h2><p class='empty'>No segment under a holdout experiment."
            "</p></section>"
        )
    names = lift["action_segment"].astype(str).tolist()
    conversion = charts.interval_chart(
        "lift-conversion",
        "Conversion lift (treated minus holdout) with 95% intervals",
        list(
            zip(
                names,
                lift["conversion_lift"].astype(float),
                lift["conversion_lift_low"].astype(float),
                lift["conversion_lift_high"].astype(float),
                strict=True,
            )
        ),
        value_format=lambda v: f"{v * 100:+.1f} pp",
        empty_note=_PENDING_LIFT,
    )
    revenue = charts.interval_chart(
        "lift-revenue",
        "Revenue per customer lift with 95% intervals",
        list(
            zip(
                names,
                lift["revenue_lift"].astype(float),
                lift["revenue_lift_low"].astype(float),
                lift["revenue_lift_high"].astype(float),
                strict=True,
            )
        ),
        value_format=lambda v: f"{v:+.2f}",
        empty_note=_PENDING_LIFT,
    )
    table = _table(
        lift,
        [
            ("action_segment", "Segment", "text"),
            ("experiment", "Experiment", "text"),
            ("treatment_customers", "Treated", "count"),
            ("holdout_customers", "Holdout", "count"),
            ("treatment_conversion", "Treated conv.", "percent"),
            ("holdout_conversion", "Holdout conv.", "percent"),
            ("conversion_lift", "Lift", "points"),
            ("conversion_lift_low", "CI low", "points"),
            ("conversion_lift_high", "CI high", "points"),
            ("revenue_lift", "Revenue/cust. lift", "money"),
            ("incremental_revenue", "Incremental revenue", "money"),
        ],
        "lift-table",
    )
    window = int(lift["outcome_window_days"].iloc[0]) if "outcome_window_days" in lift else 30
    return (
        f"<section id='lift'><h2>Lift vs holdout ({window}-day outcomes)</h2>"
        "<div class='row'><figure><figcaption>Conversion (any purchase), percentage points</figcaption>"
        f"{conversion}</figure><figure><figcaption>Revenue per customer</figcaption>{revenue}</figure></div>"
        "<p class='method'>Treated = customers of the segment not held out (intention to treat). Conversion interval:"
        " Newcombe hybrid score; revenue interval: Welch t. A green interval excludes zero.</p>"
        f"{table}{_notes(lift, 'action_segment')}</section>"
    )


def _channels_section(data: ReportData) -> str:
    channels = data.channel_kpis
    if channels.empty:
        return "<section id='acquisition'><h2>Acquisition economics</h2><p class='empty'>No channel data.</p></section>"
    chart = charts.bar_chart(
        "ltv-to-cac",
        "LTV to CAC ratio per acquisition channel",
        list(
            zip(
                channels["acquisition_channel"].astype(str),
                channels["ltv_to_cac"].astype(float),
                strict=True,
            )
        ),
        value_format=lambda v: f"{v:.2f}x",
    )
    table = _table(
        channels,
        [
            ("acquisition_channel", "Channel", "text"),
            ("spend", "Spend", "money"),
            ("new_customers", "New customers", "count"),
            ("cac", "CAC", "money"),
            ("mean_cltv_new_customers", "Mean CLTV (new)", "money"),
            ("ltv_to_cac", "LTV:CAC", "ratio"),
            ("payback_months", "Payback (months)", "ratio"),
        ],
        "channel-kpis",
    )
    start = channels["window_start"].dropna()
    since = f" since {pd.Timestamp(start.iloc[0]).date()}" if len(start) else ""
    return (
        f"<section id='acquisition'><h2>Acquisition economics (customers acquired{escape(since)})</h2>"
        f"{chart}{table}{_notes(channels, 'acquisition_channel')}</section>"
    )


def _exports_section(data: ReportData) -> str:
    return (
        "<section id='exports'><h2>Activation exports</h2>"
        + _table(
            data.exports,
            [
                ("destination", "Destination", "text"),
                ("destination_type", "Type", "text"),
                ("mode", "Mode", "text"),
                ("status", "Status", "text"),
                ("members", "Members", "count"),
                ("rows", "Rows sent", "count"),
                ("adds", "Adds", "count"),
                ("updates", "Updates", "count"),
                ("removes", "Removes", "count"),
                ("excluded_not_approved", "Usage not approved", "count"),
                ("excluded_holdout", "Held out", "count"),
                ("excluded_no_consent", "No consent", "count"),
                ("excluded_suppressed", "Suppressed", "count"),
            ],
            "exports",
        )
        + "</section>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1f2a44;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:24px} header p{margin:4px 0 0;color:#c9d1e4;font-size:13px}
main{padding:16px 32px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e1e5ec;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 12px}
.tiles{display:flex;gap:12px;flex-wrap:wrap;margin-top:16px}
.tile{background:#fff;border:1px solid #e1e5ec;border-radius:8px;padding:12px 18px;min-width:150px}
.tile-value{font-size:22px;font-weight:600} .tile-label{font-size:12px;color:#5b6475}
.row{display:flex;gap:24px;flex-wrap:wrap} figure{margin:0} figcaption{font-size:13px;color:#5b6475;margin-bottom:4px}
table{border-collapse:collapse;font-size:12.5px;margin-top:12px;width:100%}
th,td{border-bottom:1px solid #e8ebf0;padding:5px 8px} th{text-align:left;background:#f2f4f8}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{font-size:12px;color:#8a5a00;background:#fff7e6;padding:6px 10px;border-radius:4px}
.method,.empty{font-size:12px;color:#5b6475}
footer{font-size:12px;color:#5b6475;padding:0 32px 32px}
"""


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string (no external resources at all)."""
    colors = segment_colors(data)
    scheme = f" · scheme {escape(data.scheme_version)}" if data.scheme_version else ""
    through = ""
    if "data_through" in data.segment_kpis and data.segment_kpis["data_through"].notna().any():
        through = f" · purchases loaded up to {pd.Timestamp(data.segment_kpis['data_through'].dropna().iloc[0]).date()}"
    body = "".join(
        [
            _tiles(data),
            _segments_section(data, colors),
            _cltv_section(data),
            _rfm_section(data),
            _migration_section(data, colors),
            _lift_section(data),
            _channels_section(data),
            _exports_section(data),
        ]
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Segment report {data.snapshot}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Segment report — snapshot {data.snapshot}</h1>"
        f"<p>As of {data.snapshot} 00:00{scheme}{escape(through)} · generated "
        f"{data.generated_at.isoformat(timespec='minutes')} UTC</p></header>"
        f"<main>{body}</main><footer>Generated by segmentation-platform. No personal data is shown in this report."
        "</footer></body></html>"
    )


def markdown_summary(data: ReportData) -> str:
    """A compact segment table for Dagster run metadata (rendered as markdown in the UI)."""
    kpis = data.segment_kpis
    if kpis.empty:
        return f"No segment KPIs for {data.snapshot}."
    lift = data.lift.set_index("action_segment") if not data.lift.empty else pd.DataFrame()
    lines = [
        "| segment | customers | share | mean CLTV | revenue 30d | conversion lift (95% CI) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in kpis.sort_values("customers", ascending=False).itertuples(index=False):
        lift_text = "no holdout"
        if not lift.empty and row.action_segment in lift.index:
            entry = lift.loc[row.action_segment]
            if _missing(entry["conversion_lift"]):
                lift_text = "pending"
            else:
                lift_text = (
                    f"{_fmt(entry['conversion_lift'], 'points')} "
                    f"({_fmt(entry['conversion_lift_low'], 'points')} to {_fmt(entry['conversion_lift_high'], 'points')})"
                )
        lines.append(
            f"| {row.action_segment} | {_fmt(row.customers, 'count')} | {_fmt(row.share_of_customers, 'percent')} "
            f"| {_fmt(row.mean_cltv, 'money')} | {_fmt(row.revenue_30d, 'money')} | {lift_text} |"
        )
    return "\n".join(lines)
