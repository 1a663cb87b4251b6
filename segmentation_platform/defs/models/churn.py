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
from segmentation_platform.core import features, warehouse
from segmentation_platform.core.models import churn
from segmentation_platform.core.models.registry import record_models
from segmentation_platform.defs._lib.metadata import (
    OWNER,
    column_schema,
    markdown_table,
    table_metadata,
    version_of,
)
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots
from segmentation_platform.defs.features.assets import FEATURES_KEY, FEATURES_TABLE, KEY_MAP_KEY

CHURN_CONFIG = churn.load_churn_config()
CODE_VERSION = version_of(churn.LOGIC_VERSION, CHURN_CONFIG)

SCORES_KEY = dg.AssetKey(["models", "churn_scores"])
DRIVERS_KEY = dg.AssetKey(["models", "churn_drivers"])
# Labels need the purchase log itself (what happened after each past snapshot), not only features.
UPSTREAM = [
    FEATURES_KEY,
    KEY_MAP_KEY,
    *(dg.AssetKey(["raw", c.name]) for c in (WEB_ORDERS, POS_TRANSACTIONS)),
]
SCORES_TABLE = "models.churn_scores"
DRIVERS_TABLE = "models.churn_drivers"

AUC_CHECK = "champion_auc_above_floor"
BRIER_CHECK = "champion_beats_base_rate_brier"
COVERAGE_CHECK = "one_score_per_buyer"

SCORE_DOCS = {
    "customer_key": ("VARCHAR", "Customer key"),
    "snapshot_date": ("DATE", "Snapshot scored (features as of 00:00 on this date)"),
    "churn_probability": ("DOUBLE", "P(the customer has stopped buying for good), champion model"),
    "risk_tier": ("VARCHAR", "Risk tier by churn_probability (thresholds in config/churn.yaml)"),
    "survival_churn_probability": (
        "DOUBLE",
        "Same probability from the survival model: S(t_max | x), its plateau at the longest follow-up",
    ),
    "classifier_churn_probability": ("DOUBLE", "Same probability from the calibrated classifier"),
    "champion_model": ("VARCHAR", "Model behind churn_probability: churn_survival or churn_classifier"),
    "horizon_days": ("INTEGER", "Minimum follow-up H in days of a training snapshot"),
}
DRIVER_DOCS = {
    "snapshot_date": ("DATE", "Snapshot the model was fitted at"),
    "model": ("VARCHAR", "churn_survival or churn_classifier"),
    "is_champion": ("BOOLEAN", "Whether this model scored the snapshot"),
    "feature": ("VARCHAR", "Model input (category=level for one-hot survival inputs)"),
    "importance": (
        "DOUBLE",
        "abs(coefficient) per SD (survival) or log-loss increase when permuted (classifier)",
    ),
    "importance_kind": ("VARCHAR", "abs_coefficient or permutation_log_loss"),
    "effect": ("DOUBLE", "Hazard ratio (Cox) or time ratio (Weibull AFT) per SD of the feature"),
    "effect_kind": ("VARCHAR", "hazard_ratio_per_sd or time_ratio_per_sd"),
    "p_value": ("DOUBLE", "Wald p-value of the survival coefficient"),
    "direction": ("VARCHAR", "raises churn, lowers churn or mixed"),
}


def load_purchases(conn, customer_keys: pd.Series, since: date, cutoff: date) -> pd.DataFrame:
    """Purchases of the given customers in [since, cutoff): all the labels need, nothing later.

    The orders are the feature store's (`features.customer_orders_sql`), the one definition
    of a customer's orders that every model shares."""
    empty = pd.DataFrame(
        {"customer_key": pd.Series(dtype=object), "purchased_at": pd.Series(dtype="datetime64[us]")}
    )
    if not warehouse.table_exists(conn, features.KEY_MAP_TABLE) or customer_keys.empty:
        return empty
    conn.register("_churn_keys", pd.DataFrame({"customer_key": customer_keys.drop_duplicates().to_numpy()}))
    try:
        return conn.execute(
            f"SELECT customer_key, purchased_at FROM ({features.customer_orders_sql(conn)}) "
            "SEMI JOIN _churn_keys USING (customer_key) WHERE purchased_at >= $since",
            {
                "since": datetime.combine(since, datetime.min.time()),
                "cutoff": features.snapshot_cutoff(cutoff),
            },
        ).df()
    finally:
        conn.unregister("_churn_keys")


def load_training_frame(conn, snapshot: date, config: churn.ChurnConfig) -> pd.DataFrame:
    """The current snapshot in full plus a customer-hash sample of the past complete snapshots."""
    table = warehouse.table_ref(FEATURES_TABLE)
    cutoff = pd.Timestamp(snapshot) - pd.Timedelta(days=config.horizon_days)
    past = [
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT snapshot_date FROM {table} WHERE snapshot_date <= ? ORDER BY 1 DESC LIMIT ?",
            [cutoff.date(), config.max_snapshots],
        ).fetchall()
    ]
    eligible = ""
    if config.frequency_column:
        eligible = (
            f" AND coalesce({warehouse.quote(config.frequency_column)}, 0) >= {float(config.min_frequency)}"
        )
    current = conn.execute(f"SELECT * FROM {table} WHERE snapshot_date = ?{eligible}", [snapshot]).df()
    if not past:
        return current
    rows = conn.execute(
        f"SELECT count(*) FROM {table} WHERE snapshot_date IN (SELECT unnest(?)){eligible}", [past]
    ).fetchone()[0]
    share = min(1.0, 1.2 * config.max_rows / max(rows, 1))
    history = conn.execute(
        f"SELECT * FROM {table} WHERE snapshot_date IN (SELECT unnest(?)){eligible} "
        f"AND hash(customer_key) % 1000000 < {int(share * 1_000_000)}",
        [past],
    ).df()
    return pd.concat([history, current], ignore_index=True)


@dg.multi_asset(
    name="churn_model",
    partitions_def=weekly_snapshots,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool="duckdb",
    group_name="models",
    specs=[
        dg.AssetSpec(
            SCORES_KEY,
            description=(
                "Churn propensity of every buyer at the snapshot: P(the customer has stopped buying for "
                "good), from the champion of a lifelines survival model and a calibrated gradient-boosting "
                "model (lowest log-loss on the latest complete snapshot). Labels weigh the silence after each "
                "past snapshot by the customer's BG/NBD purchase rate; training uses only past snapshots with "
                f"at least {CHURN_CONFIG.horizon_days} days of follow-up before this one. Empty while the "
                "history is shorter than that."
            ),
            deps=UPSTREAM,
            owners=[OWNER],
            kinds={"duckdb", "scikitlearn", "python"},
            code_version=CODE_VERSION,
            metadata=table_metadata(SCORES_TABLE, column_schema(SCORE_DOCS))
            | {"horizon_days": CHURN_CONFIG.horizon_days, "auc_floor": CHURN_CONFIG.auc_floor},
            tags={"layer": "models"},
        ),
        dg.AssetSpec(
            DRIVERS_KEY,
            description=(
                "What drives churn at each snapshot: survival hazard ratios (with p-values) and the "
                "classifier's permutation importances on the holdout, for segment profiles and review."
            ),
            deps=UPSTREAM,
            owners=[OWNER],
            kinds={"duckdb", "python"},
            code_version=CODE_VERSION,
            metadata=table_metadata(DRIVERS_TABLE, column_schema(DRIVER_DOCS)),
            tags={"layer": "models"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            AUC_CHECK,
            asset=SCORES_KEY,
            blocking=True,
            description=(
                f"The champion's holdout AUC reaches {CHURN_CONFIG.auc_floor} (config/churn.yaml); a weaker model "
                "must not drive activation. It blocks on the run's latest snapshot (the one activation exports); "
                "weaker historical snapshots of a backfill and snapshots without enough history warn."
            ),
        ),
        dg.AssetCheckSpec(
            BRIER_CHECK,
            asset=SCORES_KEY,
            description="The champion's holdout Brier score beats always predicting the base rate.",
        ),
        dg.AssetCheckSpec(
            COVERAGE_CHECK,
            asset=SCORES_KEY,
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
            raise dg.Failure(f"{FEATURES_TABLE} does not exist: materialize features/customer_features first")
        for snapshot in dates:
            frame = load_training_frame(conn, snapshot, CHURN_CONFIG)
            past = frame.loc[pd.to_datetime(frame["snapshot_date"]) < pd.Timestamp(snapshot), "customer_key"]
            since = pd.to_datetime(frame["snapshot_date"]).min()
            purchases = load_purchases(conn, past, since.date() if pd.notna(since) else snapshot, snapshot)
            result = churn.fit_churn(frame, purchases, snapshot, CHURN_CONFIG)
            results[snapshot] = result
            warehouse.replace_partitions(
                conn, SCORES_TABLE, result.scores, "snapshot_date", [snapshot], columns=churn.SCORE_COLUMNS
            )
            warehouse.replace_partitions(
                conn,
                DRIVERS_TABLE,
                result.drivers(),
                "snapshot_date",
                [snapshot],
                columns=churn.DRIVER_COLUMNS,
            )
            record_models(conn, result.registry_records(datetime.now(UTC).replace(tzinfo=None), CODE_VERSION))
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
    yield dg.MaterializeResult(asset_key=SCORES_KEY, metadata=metadata)
    drivers = latest.drivers()
    yield dg.MaterializeResult(
        asset_key=DRIVERS_KEY,
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
        if r.status == "fitted" and r.champion_auc < CHURN_CONFIG.auc_floor
    }
    unscored = {d.isoformat(): r.message for d, r in results.items() if r.status != "fitted"}
    # Only the run's latest snapshot can reach a destination (older ones never roll an export
    # back), so its champion blocks; weak historical snapshots of a backfill only warn.
    latest_fails = latest.status == "fitted" and latest.champion_auc < CHURN_CONFIG.auc_floor
    yield dg.AssetCheckResult(
        asset_key=SCORES_KEY,
        check_name=AUC_CHECK,
        passed=not failing and not unscored,
        severity=dg.AssetCheckSeverity.ERROR if latest_fails else dg.AssetCheckSeverity.WARN,
        metadata={
            "auc_floor": CHURN_CONFIG.auc_floor,
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
        asset_key=SCORES_KEY,
        check_name=BRIER_CHECK,
        passed=not worse,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"snapshots_not_beating_base_rate": dg.MetadataValue.json(list(worse))},
    )
    yield dg.AssetCheckResult(
        asset_key=SCORES_KEY,
        check_name=COVERAGE_CHECK,
        passed=not coverage_problems,
        metadata={"mismatches": dg.MetadataValue.json(coverage_problems)},
    )


churn_assets = [churn_model]
