"""Activation: holdouts and exports of each weekly snapshot's segments to marketing tools.

Business rules live in core/activation; this module wires them to partitions, the
warehouse, the exports folder and Dagster's checks. A run over a range of snapshots
(single-run backfill) exports them oldest first, so each destination ends on the newest.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from segmentation_platform import settings
from segmentation_platform.core import activation, warehouse
from segmentation_platform.core.activation import ActivationConfig, load_activation_config
from segmentation_platform.defs._lib.keys import (
    CHURN_SCORES_KEY,
    CLV_SCORES_KEY,
    CUSTOMERS_KEY,
    EXPORTS_KEY,
    HOLDOUTS_KEY,
    RFM_SCORES_KEY,
    SEGMENT_ASSIGNMENTS_KEY,
    SEGMENT_PROFILES_KEY,
)
from segmentation_platform.defs._lib.metadata import OWNER, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import weekly_snapshots

ACTIVATION_LOGIC_VERSION = "1"
GROUP = "activation"

HOLDOUT_SHARE_CHECK = "holdout_share_matches_config"
CONSENT_AUDIT_CHECK = "marketing_exports_respect_consent"


def activation_code_version(config: ActivationConfig) -> str:
    """The destinations file's content is part of the code_version: editing it marks exports stale."""
    return version_of(ACTIVATION_LOGIC_VERSION, config.raw_text)


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
    """Which destinations.yaml a run uses (read when the run starts, so the suppression list and
    secrets are current); empty = settings.DESTINATIONS_PATH or the packaged file."""

    destinations_config: str = ""

    def load(self) -> ActivationConfig:
        return load_activation_config(
            self.destinations_config or settings.DESTINATIONS_PATH or activation.CONFIG_PATH
        )


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


def build_activation_assets(config: ActivationConfig) -> list:
    """Holdouts and exports (with their checks); `config` sets their code_version."""
    code_version = activation_code_version(config)

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
        code_version=code_version,
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[SEGMENT_ASSIGNMENTS_KEY],
        metadata=schema_metadata(activation.HOLDOUTS_SCHEMA),
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
                deviations += activation.holdout_share_deviations(conn, snapshot, config, frame)
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
        code_version=code_version,
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[
            SEGMENT_ASSIGNMENTS_KEY,
            SEGMENT_PROFILES_KEY,
            CUSTOMERS_KEY,
            CLV_SCORES_KEY,
            CHURN_SCORES_KEY,
            RFM_SCORES_KEY,
            HOLDOUTS_KEY,
        ],
        metadata=schema_metadata(activation.EXPORTS_SCHEMA),
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
        failed_checks = failed_upstream_checks(context, SEGMENT_ASSIGNMENTS_KEY)
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
                warehouse.ensure_table(conn, activation.EXPORTS_TABLE, activation.EXPORTS_SCHEMA.sql_columns)
                logged = conn.execute(
                    f"SELECT * FROM {activation.EXPORTS_TABLE} WHERE snapshot_date = ?", [snapshot]
                ).df()
                warehouse.replace_partitions(
                    conn,
                    activation.EXPORTS_TABLE,
                    activation.export_log_frame(results, logged),
                    "snapshot_date",
                    [snapshot],
                    columns=activation.EXPORTS_SCHEMA.sql_columns,
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

    return [holdouts, exports]
