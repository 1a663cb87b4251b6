"""Churn propensity: `models.churn_scores` and `models.churn_drivers`, per weekly snapshot.

The model logic lives in core/churn; this module reads the snapshot's features and the
purchase log before the snapshot from the warehouse, fits, scores, records both models
in `models.registry` and reports validation figures as metadata. A run over a range of
snapshots (single-run backfill) fits each snapshot in turn, each on its own past only.
"""

from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import POS_TRANSACTIONS, WEB_ORDERS
from segmentation_platform.core import warehouse
from segmentation_platform.core.models import churn
from segmentation_platform.core.models.registry import record_models
from segmentation_platform.core.warehouse import tables
from segmentation_platform.defs._lib.keys import (
    CHURN_DRIVERS_KEY,
    CHURN_SCORES_KEY,
    CUSTOMER_FEATURES_KEY,
    CUSTOMER_KEY_MAP_KEY,
    raw_key,
)
from segmentation_platform.defs._lib.metadata import OWNER, markdown_table, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

# Labels need the purchase log itself (what happened after each past snapshot), not only features.
UPSTREAM = [
    CUSTOMER_FEATURES_KEY,
    CUSTOMER_KEY_MAP_KEY,
    *(raw_key(c.name) for c in (WEB_ORDERS, POS_TRANSACTIONS)),
]
SCORES_TABLE = churn.CHURN_SCORES_SCHEMA.table
DRIVERS_TABLE = churn.CHURN_DRIVERS_SCHEMA.table
FEATURES_TABLE = tables.CUSTOMER_FEATURES

AUC_CHECK = "champion_auc_above_floor"
BRIER_CHECK = "champion_beats_base_rate_brier"
COVERAGE_CHECK = "one_score_per_buyer"


def churn_code_version(config: churn.ChurnConfig) -> str:
    """Logic version and every setting that changes scores; `threads` only changes speed."""
    return version_of(churn.LOGIC_VERSION, config.result_settings())


def build_churn_assets(config: churn.ChurnConfig) -> list:
    """The churn multi-asset (scores and drivers, with their checks) for one churn config."""
    return [_churn_model_asset(config)]


def _churn_model_asset(config: churn.ChurnConfig) -> dg.AssetsDefinition:
    code_version = churn_code_version(config)

    @dg.multi_asset(
        name="churn_model",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        group_name="models",
        specs=[
            dg.AssetSpec(
                CHURN_SCORES_KEY,
                description=(
                    "Churn propensity of every buyer at the snapshot: P(the customer has stopped buying for "
                    "good), from the champion of a lifelines survival model and a calibrated gradient-boosting "
                    "model (lowest log-loss on the latest complete snapshot). Labels weigh the silence after each "
                    "past snapshot by the customer's BG/NBD purchase rate; training uses only past snapshots with "
                    f"at least {config.horizon_days} days of follow-up before this one. Empty while the "
                    "history is shorter than that."
                ),
                deps=UPSTREAM,
                owners=[OWNER],
                kinds={"duckdb", "scikitlearn", "python"},
                code_version=code_version,
                metadata=schema_metadata(churn.CHURN_SCORES_SCHEMA)
                | {"horizon_days": config.horizon_days, "auc_floor": config.auc_floor},
                tags={"layer": "models"},
            ),
            dg.AssetSpec(
                CHURN_DRIVERS_KEY,
                description=(
                    "What drives churn at each snapshot: survival hazard ratios (with p-values) and the "
                    "classifier's permutation importances on the holdout, for segment profiles and review."
                ),
                deps=UPSTREAM,
                owners=[OWNER],
                kinds={"duckdb", "python"},
                code_version=code_version,
                metadata=schema_metadata(churn.CHURN_DRIVERS_SCHEMA),
                tags={"layer": "models"},
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                AUC_CHECK,
                asset=CHURN_SCORES_KEY,
                blocking=True,
                description=(
                    f"The champion's holdout AUC reaches {config.auc_floor} (config/churn.yaml); a weaker model "
                    "must not drive activation. It blocks on the run's latest snapshot (the one activation exports); "
                    "weaker historical snapshots of a backfill and snapshots without enough history warn."
                ),
            ),
            dg.AssetCheckSpec(
                BRIER_CHECK,
                asset=CHURN_SCORES_KEY,
                description="The champion's holdout Brier score beats always predicting the base rate.",
            ),
            dg.AssetCheckSpec(
                COVERAGE_CHECK,
                asset=CHURN_SCORES_KEY,
                description="Every buyer of a scored snapshot has exactly one score.",
            ),
        ],
    )
    def churn_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        results: dict[date, churn.ChurnResult] = {}
        coverage_problems = {}
        with duckdb.get_connection() as conn:
            if not warehouse.table_exists(conn, FEATURES_TABLE):
                raise dg.Failure(
                    f"{FEATURES_TABLE} does not exist: materialize features/customer_features first"
                )
            for snapshot in dates:
                frame = churn.load_training_frame(conn, snapshot, config)
                past = frame.loc[
                    pd.to_datetime(frame["snapshot_date"]) < pd.Timestamp(snapshot), "customer_key"
                ]
                since = pd.to_datetime(frame["snapshot_date"]).min()
                purchases = churn.load_purchases(
                    conn, past, since.date() if pd.notna(since) else snapshot, snapshot
                )
                result = churn.fit_churn(frame, purchases, snapshot, config)
                results[snapshot] = result
                warehouse.replace_partitions(
                    conn,
                    SCORES_TABLE,
                    result.scores,
                    "snapshot_date",
                    [snapshot],
                    columns=churn.CHURN_SCORES_SCHEMA.sql_columns,
                )
                warehouse.replace_partitions(
                    conn,
                    DRIVERS_TABLE,
                    result.drivers(),
                    "snapshot_date",
                    [snapshot],
                    columns=churn.CHURN_DRIVERS_SCHEMA.sql_columns,
                )
                record_models(
                    conn, result.registry_records(datetime.now(UTC).replace(tzinfo=None), code_version)
                )
                buyers = int((frame["snapshot_date"] == pd.Timestamp(snapshot)).sum())
                if result.status == "fitted" and (
                    len(result.scores) != buyers or result.scores["customer_key"].duplicated().any()
                ):
                    coverage_problems[snapshot.isoformat()] = {"buyers": buyers, "scores": len(result.scores)}
                context.log.info(f"churn as of {snapshot}: {result.status}. {result.message}")
            total_rows = warehouse.row_count(conn, SCORES_TABLE)
            driver_rows = warehouse.row_count(conn, DRIVERS_TABLE)

        latest = results[dates[-1]]
        summary = pd.DataFrame(
            [
                {
                    "snapshot": d.isoformat(),
                    "status": r.status,
                    "champion": r.champion or "-",
                    "auc": r.champion_auc if r.champion_auc is not None else float("nan"),
                    "brier": r.champion_report.metrics["brier"] if r.champion_report else float("nan"),
                    "base_rate_brier": r.champion_report.metrics["base_rate_brier"]
                    if r.champion_report
                    else float("nan"),
                    "scored": len(r.scores),
                }
                for d, r in results.items()
            ]
        )
        metadata = {
            "dagster/row_count": total_rows,
            "dagster/partition_row_count": sum(len(r.scores) for r in results.values()),
            "status": latest.status,
            "message": latest.message,
            "snapshots": dg.MetadataValue.md(markdown_table(summary.tail(12))),
        }
        champion = latest.champion_report
        if champion is not None:
            metadata |= {
                "champion_model": champion.name,
                "validation_scheme": latest.validation_scheme,
                "holdout_snapshots": ", ".join(d.isoformat() for d in latest.holdout_snapshots),
                **{
                    f"{m.name}/{key}": float(m.metrics[key])
                    for m in latest.models
                    if m.metrics
                    for key in ("auc", "brier", "base_rate_brier", "log_loss")
                },
                **{f"{m.name}/fit_seconds": m.fit_seconds for m in latest.models},
                "calibration_deciles": dg.MetadataValue.md(markdown_table(champion.calibration)),
                "lift_by_decile": dg.MetadataValue.md(markdown_table(champion.lift)),
                "risk_tiers": dg.MetadataValue.json(latest.scores["risk_tier"].value_counts().to_dict()),
            }
        yield dg.MaterializeResult(asset_key=CHURN_SCORES_KEY, metadata=metadata)
        drivers = latest.drivers()
        yield dg.MaterializeResult(
            asset_key=CHURN_DRIVERS_KEY,
            metadata={
                "dagster/row_count": driver_rows,
                "dagster/partition_row_count": sum(len(r.drivers()) for r in results.values()),
                "top_drivers": dg.MetadataValue.md(
                    markdown_table(
                        drivers.groupby("model").head(8)[
                            ["model", "feature", "importance", "effect", "direction"]
                        ]
                    )
                ),
            },
        )

        failing = {
            d.isoformat(): r.champion_auc
            for d, r in results.items()
            if r.status == "fitted" and r.champion_auc < config.auc_floor
        }
        unscored = {d.isoformat(): r.message for d, r in results.items() if r.status != "fitted"}
        # Only the run's latest snapshot can reach a destination (older ones never roll an export
        # back), so its champion blocks; weak historical snapshots of a backfill only warn.
        latest_fails = latest.status == "fitted" and latest.champion_auc < config.auc_floor
        yield dg.AssetCheckResult(
            asset_key=CHURN_SCORES_KEY,
            check_name=AUC_CHECK,
            passed=not failing and not unscored,
            severity=dg.AssetCheckSeverity.ERROR if latest_fails else dg.AssetCheckSeverity.WARN,
            metadata={
                "auc_floor": config.auc_floor,
                "latest_champion_auc": float(latest.champion_auc)
                if latest.champion_auc is not None
                else float("nan"),
                "snapshots_below_floor": dg.MetadataValue.json(failing),
                "snapshots_not_scored": dg.MetadataValue.json(unscored),
            },
        )
        worse = {
            d.isoformat(): r.champion_report.metrics
            for d, r in results.items()
            if r.champion_report
            and r.champion_report.metrics["brier"] >= r.champion_report.metrics["base_rate_brier"]
        }
        yield dg.AssetCheckResult(
            asset_key=CHURN_SCORES_KEY,
            check_name=BRIER_CHECK,
            passed=not worse,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"snapshots_not_beating_base_rate": dg.MetadataValue.json(list(worse))},
        )
        yield dg.AssetCheckResult(
            asset_key=CHURN_SCORES_KEY,
            check_name=COVERAGE_CHECK,
            passed=not coverage_problems,
            metadata={"mismatches": dg.MetadataValue.json(coverage_problems)},
        )

    return churn_model
