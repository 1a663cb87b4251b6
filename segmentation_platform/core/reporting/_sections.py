"""The report's sections, one HTML fragment each: tiles, segments, CLTV, RFM grid, migration,
lift, acquisition economics, exports."""

import math
from html import escape

import numpy as np
import pandas as pd

from segmentation_platform.core.reporting import _charts as charts
from segmentation_platform.core.reporting._data import ReportData
from segmentation_platform.core.reporting._format import fmt, html_table, missing

RFM_SCORES = ("1", "2", "3", "4", "5")
_PENDING_LIFT = "Outcome window not loaded yet: see the note below."


def tiles(data: ReportData) -> str:
    kpis = data.segment_kpis
    customers = int(kpis["customers"].sum()) if not kpis.empty else 0
    total_cltv = kpis["total_cltv"].sum(min_count=1) if "total_cltv" in kpis else math.nan
    revenue = kpis["revenue_30d"].sum(min_count=1) if "revenue_30d" in kpis else math.nan
    ok = int((data.exports["status"] == "success").sum()) if "status" in data.exports else 0
    failed = int((data.exports["status"] == "failed").sum()) if "status" in data.exports else 0
    tiles = [
        ("Customers", fmt(customers, "count")),
        ("Action segments", str(len(kpis))),
        ("Predicted CLTV", fmt(total_cltv, "money")),
        ("Revenue next 30 days", fmt(revenue, "money") if not missing(revenue) else "pending"),
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


def segments_section(data: ReportData, colors: dict[str, str]) -> str:
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
    table = html_table(
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


def cltv_section(data: ReportData) -> str:
    values = data.cltv
    chart = charts.histogram("cltv-histogram", "Distribution of predicted CLTV", values.tolist())
    summary = ""
    if len(values):
        q = np.quantile(values, [0.5, 0.9, 0.99])
        top_share = (
            np.sort(values)[::-1][: max(1, len(values) // 10)].sum() / values.sum() if values.sum() else 0
        )
        summary = (
            f"<p>{len(values):,} customers scored. Median {fmt(q[0], 'money')}, 90th percentile "
            f"{fmt(q[1], 'money')}, 99th {fmt(q[2], 'money')}. The top 10% hold {top_share:.0%} of predicted value.</p>"
        )
    return f"<section id='cltv'><h2>CLTV distribution</h2>{chart}{summary}</section>"


def rfm_section(data: ReportData) -> str:
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


def migration_section(data: ReportData, colors: dict[str, str]) -> str:
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
    table = html_table(
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


def lift_section(data: ReportData) -> str:
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
    table = html_table(
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


def channels_section(data: ReportData) -> str:
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
    table = html_table(
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


def exports_section(data: ReportData) -> str:
    return (
        "<section id='exports'><h2>Activation exports</h2>"
        + html_table(
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
