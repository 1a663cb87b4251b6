"""Measurement: segment KPIs, acquisition economics, migration, lift vs holdout, and the HTML report.

Outcome metrics read purchases *after* the snapshot, so these assets depend on all raw
purchase partitions (history and outcomes), not only the snapshot's week; re-materialize
older snapshots once later weeks are loaded to fill in pending outcome windows.
"""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import activation, measurement, reporting, warehouse
from segmentation_platform.defs._lib.metadata import OWNER, column_schema, table_metadata, version_of
from segmentation_platform.defs._lib.partitions import weekly_snapshots
from segmentation_platform.defs.activation.assets import (
    ASSIGNMENTS_KEY,
    CHURN_KEY,
    CLV_KEY,
    EXPORTS_KEY,
    HOLDOUTS_KEY,
    RFM_KEY,
    ActivationSettings,
    OutputFolders,
    snapshots_in_run,
)

MEASUREMENT_LOGIC_VERSION = "2"  # 2: order-free exact sums
GROUP = "measurement"
CODE_VERSION = version_of(
    MEASUREMENT_LOGIC_VERSION,
    measurement.SHORT_WINDOW_DAYS,
    measurement.LONG_WINDOW_DAYS,
    measurement.CAC_WINDOW_DAYS,
)

SEGMENT_KPIS_KEY = dg.AssetKey(["measurement", "segment_kpis"])
CHANNEL_KPIS_KEY = dg.AssetKey(["measurement", "channel_kpis"])
MIGRATION_KEY = dg.AssetKey(["measurement", "migration"])
LIFT_KEY = dg.AssetKey(["measurement", "lift"])
REPORT_KEY = dg.AssetKey(["measurement", "report"])
KEY_MAP_KEY = dg.AssetKey(["identity", "customer_key_map"])
FEATURES_KEY = dg.AssetKey(["features", "customer_features"])

COVERS_SEGMENTS_CHECK = "covers_every_assigned_customer"
FLOWS_CONSERVE_CHECK = "flows_conserve_customers"
INTERVALS_CHECK = "intervals_contain_estimates"


def _all_partitions(*keys: dg.AssetKey) -> list[dg.AssetDep]:
    """Outcomes come from the weeks after a snapshot and history from before: every raw partition counts."""
    return [dg.AssetDep(key, partition_mapping=dg.AllPartitionMapping()) for key in keys]


PURCHASE_DEPS = _all_partitions(*(dg.AssetKey(["raw", c.name]) for c in measurement.PURCHASE_SOURCES))

_SEGMENT_KPI_DOCS = {
    "snapshot_date": ("DATE", "Snapshot"),
    "action_segment": ("VARCHAR", "Action segment"),
    "customers": ("BIGINT", "Customers in the segment"),
    "share_of_customers": ("DOUBLE", "Share of all customers at the snapshot"),
    "mean_cltv": ("DOUBLE", "Mean predicted CLTV (models.clv_scores)"),
    "total_cltv": ("DOUBLE", "Sum of predicted CLTV"),
    "mean_churn_probability": ("DOUBLE", "Mean churn propensity (models.churn_scores)"),
    "revenue_30d": ("DOUBLE", "Revenue in the 30 days from the snapshot; NULL until those days are loaded"),
    "margin_30d": ("DOUBLE", "Revenue minus cost in the 30 days (purchases with a cost)"),
    "revenue_per_customer_30d": ("DOUBLE", "revenue_30d / customers"),
    "conversion_30d": ("DOUBLE", "Share of customers with a purchase in the 30 days"),
    "revenue_90d": ("DOUBLE", "Revenue in the 90 days from the snapshot; NULL until loaded"),
    "margin_90d": ("DOUBLE", "Revenue minus cost in the 90 days"),
    "revenue_per_customer_90d": ("DOUBLE", "revenue_90d / customers"),
    "realized_churn_rate_90d": ("DOUBLE", "Share of customers with no purchase in the 90 days"),
    "data_through": ("DATE", "First day without loaded purchases (the laggiest purchase source)"),
    "note": ("VARCHAR", "Which outcome windows are still pending, and why"),
}
_CHANNEL_KPI_DOCS = {
    "snapshot_date": ("DATE", "Snapshot"),
    "acquisition_channel": ("VARCHAR", "Acquisition channel (features / marketing_spend, lower-cased)"),
    "window_start": ("DATE", "Start of the acquisition window (90 days before the snapshot)"),
    "spend": ("DOUBLE", "Marketing spend of the channel in the window"),
    "new_customers": ("BIGINT", "Customers whose first identified purchase fell in the window"),
    "cac": ("DOUBLE", "spend / new_customers"),
    "mean_cltv_new_customers": ("DOUBLE", "Mean predicted CLTV of the new customers at the snapshot"),
    "ltv_to_cac": ("DOUBLE", "mean_cltv_new_customers / cac"),
    "monthly_margin_per_customer": ("DOUBLE", "Contribution margin per customer-month of the cohort so far"),
    "payback_months": ("DOUBLE", "cac / monthly_margin_per_customer"),
    "note": ("VARCHAR", "Caveats (no spend, no cost data, ...)"),
}
_MIGRATION_DOCS = {
    "snapshot_date": ("DATE", "Snapshot customers moved to"),
    "previous_snapshot_date": ("DATE", "Previous snapshot in segments.assignments (NULL for the first)"),
    "from_segment": ("VARCHAR", "Segment at the previous snapshot, or (new)"),
    "to_segment": ("VARCHAR", "Segment now, or (gone)"),
    "customers": ("BIGINT", "Customers making this move"),
    "share_of_from": ("DOUBLE", "customers / customers in from_segment"),
}
_LIFT_DOCS = {
    "snapshot_date": ("DATE", "Snapshot the experiment groups were fixed at"),
    "action_segment": ("VARCHAR", "Action segment"),
    "experiment": ("VARCHAR", "Holdout experiment"),
    "outcome_window_days": ("INTEGER", "Days after the snapshot outcomes are counted in"),
    "treatment_customers": ("BIGINT", "Customers not held out (intention to treat)"),
    "holdout_customers": ("BIGINT", "Customers held out"),
    "treatment_conversion": ("DOUBLE", "Share of treated with a purchase in the window"),
    "holdout_conversion": ("DOUBLE", "Share of holdout with a purchase in the window"),
    "conversion_lift": ("DOUBLE", "treatment_conversion - holdout_conversion"),
    "conversion_lift_low": ("DOUBLE", "95% CI low (Newcombe hybrid score)"),
    "conversion_lift_high": ("DOUBLE", "95% CI high (Newcombe hybrid score)"),
    "relative_conversion_lift": ("DOUBLE", "conversion_lift / holdout_conversion"),
    "treatment_revenue_per_customer": ("DOUBLE", "Mean revenue per treated customer in the window"),
    "holdout_revenue_per_customer": ("DOUBLE", "Mean revenue per holdout customer in the window"),
    "revenue_lift": ("DOUBLE", "Difference of revenue per customer"),
    "revenue_lift_low": ("DOUBLE", "95% CI low (Welch t)"),
    "revenue_lift_high": ("DOUBLE", "95% CI high (Welch t)"),
    "incremental_revenue": ("DOUBLE", "revenue_lift x treatment_customers"),
    "note": ("VARCHAR", "Pending window or small-sample caveat"),
}
assert set(_SEGMENT_KPI_DOCS) == set(measurement.SEGMENT_KPI_COLUMNS)
assert set(_CHANNEL_KPI_DOCS) == set(measurement.CHANNEL_KPI_COLUMNS)
assert set(_MIGRATION_DOCS) == set(measurement.MIGRATION_COLUMNS)
assert set(_LIFT_DOCS) == set(measurement.LIFT_COLUMNS)

_COMMON = {
    "owners": [OWNER],
    "code_version": CODE_VERSION,
    "tags": {"layer": "measurement"},
}


def _spec(key: dg.AssetKey, table: str, docs: dict, description: str, deps: list) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=description,
        kinds={"duckdb", "python"},
        metadata=table_metadata(table, column_schema(docs)),
        deps=deps,
        **_COMMON,
    )


@dg.multi_asset(
    name="segment_and_channel_kpis",
    group_name=GROUP,
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    specs=[
        _spec(
            SEGMENT_KPIS_KEY,
            "measurement.segment_kpis",
            _SEGMENT_KPI_DOCS,
            "Per snapshot and action segment: size, predicted value and what the segment went on to spend "
            "in the following 30/90 days (NULL with a note until those days are loaded), and realized churn.",
            [ASSIGNMENTS_KEY, CLV_KEY, CHURN_KEY, KEY_MAP_KEY, *PURCHASE_DEPS],
        ),
        _spec(
            CHANNEL_KPIS_KEY,
            "measurement.channel_kpis",
            _CHANNEL_KPI_DOCS,
            "Per snapshot and acquisition channel: CAC over the 90 days before the snapshot, LTV:CAC and "
            "payback months of the customers acquired in it.",
            [
                CLV_KEY,
                FEATURES_KEY,
                KEY_MAP_KEY,
                *PURCHASE_DEPS,
                *_all_partitions(dg.AssetKey(["raw", "marketing_spend"])),
            ],
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            COVERS_SEGMENTS_CHECK,
            asset=SEGMENT_KPIS_KEY,
            description="Customers summed over segments = customers in segments.assignments, per snapshot.",
        )
    ],
)
def segment_and_channel_kpis(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    mismatches, segment_rows, channel_rows, pending = {}, 0, 0, []
    with duckdb.get_connection() as conn:
        for _, snapshot in snapshots_in_run(context):
            kpis = measurement.segment_kpis(conn, snapshot)
            segment_rows += warehouse.replace_partitions(
                conn,
                "measurement.segment_kpis",
                kpis,
                "snapshot_date",
                [snapshot],
                columns=measurement.SEGMENT_KPI_COLUMNS,
            )
            channel_rows += warehouse.replace_partitions(
                conn,
                "measurement.channel_kpis",
                measurement.channel_kpis(conn, snapshot),
                "snapshot_date",
                [snapshot],
                columns=measurement.CHANNEL_KPI_COLUMNS,
            )
            assigned = conn.execute(
                f"SELECT count(*) FROM {measurement.ASSIGNMENTS_TABLE} WHERE snapshot_date = ?", [snapshot]
            ).fetchone()[0]
            if int(kpis["customers"].sum()) != assigned:
                mismatches[snapshot.isoformat()] = {
                    "kpis": int(kpis["customers"].sum()),
                    "assigned": assigned,
                }
            if kpis["note"].notna().any():
                pending.append(snapshot.isoformat())
        totals = {
            table: warehouse.row_count(conn, table)
            for table in ("measurement.segment_kpis", "measurement.channel_kpis")
        }
    yield dg.MaterializeResult(
        asset_key=SEGMENT_KPIS_KEY,
        metadata={
            "dagster/row_count": totals["measurement.segment_kpis"],
            "dagster/partition_row_count": segment_rows,
            "snapshots_with_pending_outcomes": ", ".join(pending) or "none",
        },
    )
    yield dg.MaterializeResult(
        asset_key=CHANNEL_KPIS_KEY,
        metadata={
            "dagster/row_count": totals["measurement.channel_kpis"],
            "dagster/partition_row_count": channel_rows,
        },
    )
    yield dg.AssetCheckResult(
        asset_key=SEGMENT_KPIS_KEY,
        check_name=COVERS_SEGMENTS_CHECK,
        passed=not mismatches,
        metadata={"mismatches": dg.MetadataValue.json(mismatches)},
    )


@dg.asset(
    key=MIGRATION_KEY,
    description="Customers moving between action segments from the previous snapshot to this one "
    "((new) and (gone) included): the segment history's flow matrix.",
    group_name=GROUP,
    kinds={"duckdb", "python"},
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[dg.AssetDep(ASSIGNMENTS_KEY, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))],
    metadata=table_metadata("measurement.migration", column_schema(_MIGRATION_DOCS)),
    check_specs=[
        dg.AssetCheckSpec(
            FLOWS_CONSERVE_CHECK,
            asset=MIGRATION_KEY,
            description="Flows into each segment add up to its customers now; flows out, to its customers before.",
        )
    ],
    **_COMMON,
)
def migration(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
    broken, rows = {}, 0
    with duckdb.get_connection() as conn:
        for _, snapshot in snapshots_in_run(context):
            frame = measurement.migration_matrix(conn, snapshot)
            rows += warehouse.replace_partitions(
                conn,
                "measurement.migration",
                frame,
                "snapshot_date",
                [snapshot],
                columns=measurement.MIGRATION_COLUMNS,
            )
            now = dict(
                conn.execute(
                    f"SELECT action_segment, count(*) FROM {measurement.ASSIGNMENTS_TABLE} "
                    "WHERE snapshot_date = ? GROUP BY 1",
                    [snapshot],
                ).fetchall()
            )
            inflow = (
                frame[frame["to_segment"] != measurement.GONE_SEGMENT]
                .groupby("to_segment")["customers"]
                .sum()
            )
            if inflow.to_dict() != now:
                broken[snapshot.isoformat()] = {"flows_in": inflow.to_dict(), "assigned": now}
        total = warehouse.row_count(conn, "measurement.migration")
    yield dg.MaterializeResult(metadata={"dagster/row_count": total, "dagster/partition_row_count": rows})
    yield dg.AssetCheckResult(
        check_name=FLOWS_CONSERVE_CHECK, passed=not broken, metadata={"broken": dg.MetadataValue.json(broken)}
    )


@dg.asset(
    key=LIFT_KEY,
    description="Causal effect of activation per action segment: treated vs holdout conversion and revenue "
    "per customer in the 30 days after the snapshot, with 95% confidence intervals.",
    group_name=GROUP,
    kinds={"duckdb", "python"},
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[HOLDOUTS_KEY, ASSIGNMENTS_KEY, KEY_MAP_KEY, *PURCHASE_DEPS],
    metadata=table_metadata("measurement.lift", column_schema(_LIFT_DOCS)),
    check_specs=[
        dg.AssetCheckSpec(
            INTERVALS_CHECK,
            asset=LIFT_KEY,
            description="Every measured lift lies inside its own confidence interval (low <= estimate <= high).",
        )
    ],
    **_COMMON,
)
def lift(context: dg.AssetExecutionContext, duckdb: DuckDBResource, activation_config: ActivationSettings):
    experiments = activation_config.load().experiments
    bad, rows, tables = [], 0, []
    with duckdb.get_connection() as conn:
        for _, snapshot in snapshots_in_run(context):
            table = measurement.lift(conn, snapshot, experiments)
            rows += warehouse.replace_partitions(
                conn, "measurement.lift", table, "snapshot_date", [snapshot], columns=measurement.LIFT_COLUMNS
            )
            for record in table.dropna(subset=["conversion_lift", "revenue_lift"]).to_dict("records"):
                for name in ("conversion_lift", "revenue_lift"):
                    if not record[f"{name}_low"] - 1e-12 <= record[name] <= record[f"{name}_high"] + 1e-12:
                        bad.append(f"{snapshot} {record['action_segment']} {name}")
            tables.append(table)
        total = warehouse.row_count(conn, "measurement.lift")
    latest = tables[-1] if tables else None
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "dagster/partition_row_count": rows,
            "latest_snapshot": dg.MetadataValue.md(_lift_markdown(latest)) if latest is not None else "none",
        }
    )
    yield dg.AssetCheckResult(
        check_name=INTERVALS_CHECK, passed=not bad, metadata={"bad": dg.MetadataValue.json(bad)}
    )


def _lift_markdown(table) -> str:
    if table.empty:
        return "No segment under a holdout experiment."
    lines = ["| segment | treated | holdout | conversion lift | 95% CI |", "|---|---:|---:|---:|---|"]
    for r in table.to_dict("records"):
        if r["conversion_lift"] != r["conversion_lift"]:
            lines.append(
                f"| {r['action_segment']} | {r['treatment_customers']} | {r['holdout_customers']} | pending | |"
            )
            continue
        lines.append(
            f"| {r['action_segment']} | {r['treatment_customers']} | {r['holdout_customers']} "
            f"| {r['conversion_lift'] * 100:+.1f} pp | {r['conversion_lift_low'] * 100:+.1f} to "
            f"{r['conversion_lift_high'] * 100:+.1f} pp |"
        )
    return "\n".join(lines)


@dg.asset(
    key=REPORT_KEY,
    description="Self-contained offline HTML report per snapshot (inline SVG charts, no scripts or network): "
    "segment sizes and value, CLTV distribution, RFM grid, migration flows, lift with intervals, "
    "acquisition economics and exports. Written to <reports>/<snapshot>/report.html.",
    group_name=GROUP,
    kinds={"html", "python"},
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[SEGMENT_KPIS_KEY, CHANNEL_KPIS_KEY, MIGRATION_KEY, LIFT_KEY, EXPORTS_KEY, CLV_KEY, RFM_KEY],
    **_COMMON,
)
def report_html(context: dg.AssetExecutionContext, duckdb: DuckDBResource, output_folders: OutputFolders):
    written: list[Path] = []
    summary = ""
    with duckdb.get_connection() as conn:
        for _, snapshot in snapshots_in_run(context):
            data = reporting.load_report_data(conn, snapshot)
            path = output_folders.reports_root / snapshot.isoformat() / "report.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            activation.write_atomically(path, reporting.render_report(data).encode("utf-8"))
            written.append(path.resolve())
            summary = reporting.markdown_summary(data)
    latest = written[-1]
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(latest)),
            "report_url": dg.MetadataValue.url(latest.as_uri()),
            "reports_written": len(written),
            "summary": dg.MetadataValue.md(summary),
        }
    )


measurement_assets = [segment_and_channel_kpis, migration, lift, report_html]
