"""Activation: holdouts and exports of each weekly snapshot's segments to marketing tools.

Business rules live in core/activation; this module wires them to partitions, the
warehouse, the exports folder and Dagster's checks. A run over a range of snapshots
(single-run backfill) exports them oldest first, so each destination ends on the newest.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from segmentation_platform import settings
from segmentation_platform.core import activation, warehouse
from segmentation_platform.core.activation import (
    ActivationConfig,
    default_config_path,
    load_activation_config,
)
from segmentation_platform.defs._lib.metadata import OWNER, column_schema, table_metadata, version_of
from segmentation_platform.defs._lib.partitions import weekly_snapshots

ACTIVATION_LOGIC_VERSION = "1"
GROUP = "activation"

ASSIGNMENTS_KEY = dg.AssetKey(["segments", "assignments"])
PROFILES_KEY = dg.AssetKey(["segments", "profiles"])
CUSTOMERS_KEY = dg.AssetKey(["identity", "customers"])
CLV_KEY = dg.AssetKey(["models", "clv_scores"])
CHURN_KEY = dg.AssetKey(["models", "churn_scores"])
RFM_KEY = dg.AssetKey(["models", "rfm_scores"])
HOLDOUTS_KEY = dg.AssetKey(["activation", "holdouts"])
EXPORTS_KEY = dg.AssetKey(["activation", "exports"])

HOLDOUT_SHARE_CHECK = "holdout_share_matches_config"
CONSENT_AUDIT_CHECK = "marketing_exports_respect_consent"

# Read at code-location load: a broken destinations.yaml fails loudly before any run,
# and its content is part of the code_version, so config changes mark exports stale.
DEFAULT_CONFIG: ActivationConfig = load_activation_config()
CODE_VERSION = version_of(ACTIVATION_LOGIC_VERSION, DEFAULT_CONFIG.raw_text)


class OutputFolders(dg.ConfigurableResource):
    """Folders for files that leave the warehouse: activation exports and HTML reports."""

    exports_dir: str
    reports_dir: str

    @property
    def exports_root(self) -> Path:
        return Path(self.exports_dir)

    @property
    def reports_root(self) -> Path:
        return Path(self.reports_dir)


class ActivationSettings(dg.ConfigurableResource):
    """Which destinations.yaml to use; empty = $SEGMENTATION_DESTINATIONS_CONFIG or the packaged file."""

    destinations_config: str = ""

    def load(self) -> ActivationConfig:
        if not self.destinations_config:
            return (
                DEFAULT_CONFIG if default_config_path() == DEFAULT_CONFIG.path else load_activation_config()
            )
        return load_activation_config(self.destinations_config)


def activation_resources(data_dir: Path = settings.DATA_DIR) -> dict:
    """The resources these assets need, keyed as the assets expect them."""
    data_dir = Path(data_dir)
    return {
        "output_folders": OutputFolders(
            exports_dir=str(data_dir / "exports"), reports_dir=str(data_dir / "reports")
        ),
        "activation_config": ActivationSettings(),
    }


def snapshot_of(partition_key: str) -> dt.date:
    """A weekly partition's snapshot date is the end of its time window (exclusive)."""
    return weekly_snapshots.time_window_for_partition_key(partition_key).end.date()


def snapshots_in_run(context: dg.AssetExecutionContext) -> list[tuple[str, dt.date]]:
    return [(key, snapshot_of(key)) for key in context.partition_keys]


_HOLDOUT_DOCS = {
    "snapshot_date": ("DATE", "Snapshot (end of the weekly partition)"),
    "experiment": ("VARCHAR", "Holdout experiment (destinations.yaml)"),
    "customer_key": ("VARCHAR", "Held-out customer"),
    "action_segment": ("VARCHAR", "Segment of the customer at the snapshot"),
    "bucket": ("DOUBLE", "SHA-256(salt:customer_key) as a number in [0, 1); held out when below share"),
    "share": ("DOUBLE", "Configured holdout share of the experiment"),
    "held_out_since": ("DATE", "First snapshot the customer was held out in this experiment"),
}
_EXPORT_DOCS = {
    "export_id": ("VARCHAR", "Unique id of the export attempt (also in the manifest)"),
    "snapshot_date": ("DATE", "Snapshot exported"),
    "destination": ("VARCHAR", "Destination name (destinations.yaml)"),
    "destination_type": ("VARCHAR", "crm_upsert_csv, map_list, cdp_traits_jsonl, ad_audience or webhook"),
    "purpose": ("VARCHAR", "marketing or service"),
    "mode": ("VARCHAR", "full or delta"),
    "scheme_version": ("VARCHAR", "Segment scheme version exported"),
    "status": (
        "VARCHAR",
        "success, failed, skipped (destination already holds a newer snapshot) or unchanged (it holds this "
        "exact export; nothing re-sent). A re-run that sends nothing keeps the row of the export that did.",
    ),
    "rows": ("BIGINT", "Rows in the file / records posted"),
    "members": ("BIGINT", "Customers in the destination's audience after this export"),
    "adds": ("BIGINT", "Customers new since the last successful export"),
    "updates": ("BIGINT", "Customers whose exported fields changed"),
    "removes": ("BIGINT", "Customers no longer in the audience"),
    "excluded_holdout": ("BIGINT", "Left out: in a holdout group"),
    "excluded_no_consent": ("BIGINT", "Left out: no consent for this destination"),
    "excluded_unsubscribed": ("BIGINT", "Left out: unsubscribed"),
    "excluded_suppressed": ("BIGINT", "Left out: on the suppression list"),
    "excluded_no_contact": ("BIGINT", "Left out: no usable (consented) contact point"),
    "excluded_not_approved": ("BIGINT", "Left out: the segment's playbook does not approve this usage"),
    "webhook_batches": ("BIGINT", "Webhook batches delivered"),
    "webhook_attempts": ("BIGINT", "Webhook POST attempts, retries included"),
    "path": ("VARCHAR", "Export file"),
    "manifest_path": ("VARCHAR", "Manifest that commits the export"),
    "sha256": ("VARCHAR", "SHA-256 of the export file"),
    "started_at": ("TIMESTAMP", "Export start (UTC)"),
    "finished_at": ("TIMESTAMP", "Export end (UTC)"),
    "message": ("VARCHAR", "Why it failed or was skipped (never contains PII)"),
}
assert set(_HOLDOUT_DOCS) == set(activation.HOLDOUT_COLUMNS)
assert set(_EXPORT_DOCS) == set(activation.EXPORT_LOG_COLUMNS)


@dg.asset(
    key=HOLDOUTS_KEY,
    description=(
        "Customers held out of all activation, per holdout experiment and snapshot: the control group "
        "lift is measured against. Deterministic (salted hash of the customer key) and sticky for the "
        "experiment's life."
    ),
    group_name=GROUP,
    owners=[OWNER],
    kinds={"duckdb", "python"},
    code_version=CODE_VERSION,
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[ASSIGNMENTS_KEY],
    metadata=table_metadata(activation.HOLDOUTS_TABLE, column_schema(_HOLDOUT_DOCS)),
    tags={"layer": "activation"},
    check_specs=[
        dg.AssetCheckSpec(
            HOLDOUT_SHARE_CHECK,
            asset=HOLDOUTS_KEY,
            description="Held-out share of each experiment's customers is within 4 standard errors of its share.",
        )
    ],
)
def holdouts(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, activation_config: ActivationSettings
):
    config = activation_config.load()
    deviations, written = [], 0
    with duckdb.get_connection() as conn:
        for _, snapshot in snapshots_in_run(context):
            frame = activation.write_holdouts(conn, snapshot, config)
            written += len(frame)
            deviations += _share_deviations(conn, snapshot, config, frame)
        total = warehouse.row_count(conn, activation.HOLDOUTS_TABLE)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "dagster/partition_row_count": written,
            "experiments": ", ".join(e.name for e in config.experiments) or "none",
        }
    )
    yield dg.AssetCheckResult(
        check_name=HOLDOUT_SHARE_CHECK,
        passed=not any(d["outside_tolerance"] for d in deviations),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"per_snapshot_and_experiment": dg.MetadataValue.json(deviations)},
    )


def _share_deviations(conn, snapshot: dt.date, config: ActivationConfig, frame: pd.DataFrame) -> list[dict]:
    results = []
    for experiment in config.active_experiments(snapshot):
        segments = conn.execute(
            f"SELECT action_segment, count(*) FROM {activation.ASSIGNMENTS_TABLE} WHERE snapshot_date = ? GROUP BY 1",
            [snapshot],
        ).fetchall()
        population = sum(n for segment, n in segments if experiment.covers(segment))
        held = frame[
            (frame["experiment"] == experiment.name) & frame["action_segment"].map(experiment.covers)
        ]
        if population == 0:
            continue
        observed = len(held) / population
        tolerance = 4 * (experiment.share * (1 - experiment.share) / population) ** 0.5 + 0.005
        results.append(
            {
                "snapshot_date": snapshot.isoformat(),
                "experiment": experiment.name,
                "customers": population,
                "held_out": len(held),
                "observed_share": round(observed, 4),
                "configured_share": experiment.share,
                "outside_tolerance": abs(observed - experiment.share) > tolerance,
            }
        )
    return results


def _latest_check_evaluations(context: dg.AssetExecutionContext, asset_key: dg.AssetKey):
    """Completed evaluations of checks on `asset_key`, newest first, through the public event API."""
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION),
        limit=10_000,
        ascending=False,
    )
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.asset_key == asset_key:
            yield record.run_id, evaluation


def failed_upstream_checks(context: dg.AssetExecutionContext, asset_key: dg.AssetKey) -> list[str]:
    """Checks on `asset_key` whose latest completed evaluation for a partition of this run failed with ERROR.

    Blocking checks only stop downstream steps of the *same* run; this catches a failed
    segment check from an earlier run before anything leaves the warehouse. A check never
    evaluated for the partition is judged by its latest evaluation overall.
    """
    latest_by_partition, latest_overall = {}, {}
    for run_id, evaluation in _latest_check_evaluations(context, asset_key):
        latest_overall.setdefault(evaluation.check_name, (run_id, evaluation))
        if evaluation.partition is not None:
            latest_by_partition.setdefault(
                (evaluation.check_name, evaluation.partition), (run_id, evaluation)
            )
    failures = []
    for check_name in latest_overall:
        for partition_key in context.partition_keys:
            run_id, evaluation = latest_by_partition.get(
                (check_name, partition_key), latest_overall[check_name]
            )
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                failures.append(f"{check_name} (partition {partition_key}, run {run_id[:8]})")
    return sorted(set(failures))


@dg.asset(
    key=EXPORTS_KEY,
    description=(
        "Exports each snapshot's segments to every enabled destination in destinations.yaml (CRM upsert "
        "CSV, marketing list, CDP traits, hashed ad audience, webhook), after consent, unsubscribe, "
        "suppression and holdout rules; full or delta against the last successful export. The table is "
        "the export log, one row per destination and snapshot; files land in the exports folder."
    ),
    group_name=GROUP,
    owners=[OWNER],
    kinds={"duckdb", "python", "csv"},
    code_version=CODE_VERSION,
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    deps=[ASSIGNMENTS_KEY, PROFILES_KEY, CUSTOMERS_KEY, CLV_KEY, CHURN_KEY, RFM_KEY, HOLDOUTS_KEY],
    metadata=table_metadata(activation.EXPORTS_TABLE, column_schema(_EXPORT_DOCS)),
    tags={"layer": "activation"},
    check_specs=[
        dg.AssetCheckSpec(
            CONSENT_AUDIT_CHECK,
            asset=EXPORTS_KEY,
            description=(
                "Re-reads every committed marketing/ad file of the run: no customer without consent, "
                "unsubscribed, suppressed or held out, and no raw email or phone in an ad audience."
            ),
        )
    ],
)
def exports(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    output_folders: OutputFolders,
    activation_config: ActivationSettings,
):
    failed_checks = failed_upstream_checks(context, ASSIGNMENTS_KEY)
    if failed_checks:
        raise dg.Failure(
            description="Refusing to export: checks on segments/assignments failed: "
            + "; ".join(failed_checks),
        )
    config = activation_config.load()
    all_results, audits, notes = [], [], set()
    with duckdb.get_connection() as conn:
        for _, snapshot in snapshots_in_run(context):
            results, snapshot_notes = activation.run_exports(
                conn, snapshot, config, output_folders.exports_root
            )
            notes.update(snapshot_notes)
            warehouse.ensure_table(conn, activation.EXPORTS_TABLE, activation.EXPORT_LOG_COLUMNS)
            logged = conn.execute(
                f"SELECT * FROM {activation.EXPORTS_TABLE} WHERE snapshot_date = ?", [snapshot]
            ).df()
            warehouse.replace_partitions(
                conn,
                activation.EXPORTS_TABLE,
                activation.export_log_frame(results, logged),
                "snapshot_date",
                [snapshot],
                columns=activation.EXPORT_LOG_COLUMNS,
            )
            audits += activation.audit_run(conn, snapshot, config, results)
            all_results += results
        total = warehouse.row_count(conn, activation.EXPORTS_TABLE)
    for note in sorted(notes):
        context.log.warning(note)
    for r in all_results:
        if r.status in ("unchanged", "skipped"):
            context.log.info(f"{r.destination} {r.snapshot_date}: {r.status}, {r.message}")
    failed = [r for r in all_results if r.status == "failed"]
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} export(s) failed; previous exports stay committed. "
            + " | ".join(f"{r.destination} {r.snapshot_date}: {r.message}" for r in failed),
            metadata={"exports": dg.MetadataValue.md(_results_table(all_results))},
        )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "dagster/partition_row_count": len(all_results),
            "exports": dg.MetadataValue.md(_results_table(all_results)),
            "exports_folder": dg.MetadataValue.path(str(output_folders.exports_root.resolve())),
            "destinations": ", ".join(d.name for d in config.enabled_destinations),
        }
    )
    violations = [a for a in audits if a["violations"]]
    yield dg.AssetCheckResult(
        check_name=CONSENT_AUDIT_CHECK,
        passed=not violations,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"files_audited": len(audits), "audits": dg.MetadataValue.json(audits)},
    )


def _results_table(results: list[activation.ExportResult]) -> str:
    lines = [
        "| snapshot | destination | mode | status | members | rows | adds | updates | removes | held out | no consent |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.snapshot_date} | {r.destination} | {r.mode} | {r.status} | {r.members} | {r.rows} | {r.adds} "
            f"| {r.updates} | {r.removes} | {r.excluded_holdout} | {r.excluded_no_consent + r.excluded_unsubscribed} |"
        )
    return "\n".join(lines)


activation_assets = [holdouts, exports]
