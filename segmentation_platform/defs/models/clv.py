"""CLTV per weekly snapshot: `models/clv_scores`, `models/clv_validation`, registry rows.

Each snapshot refits BG/NBD + Gamma-Gamma on every order before it (seconds even at
millions of orders), records both fits in `models.registry`, and judges a fit made
H days earlier against what customers actually did since.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from segmentation_platform.contracts import POS_TRANSACTIONS, WEB_ORDERS
from segmentation_platform.core import features, warehouse
from segmentation_platform.core.models import InsufficientHistory, clv
from segmentation_platform.core.models.registry import ModelRecord, record_models
from segmentation_platform.defs._lib.keys import (
    CLV_SCORES_KEY,
    CLV_VALIDATION_KEY,
    CUSTOMER_KEY_MAP_KEY,
    raw_key,
)
from segmentation_platform.defs._lib.metadata import OWNER, schema_metadata, version_of
from segmentation_platform.defs._lib.partitions import snapshot_dates, weekly_snapshots

CLV_LOGIC_VERSION = "1"
SCORES_TABLE, VALIDATION_TABLE = clv.CLV_SCORES_SCHEMA.table, clv.CLV_VALIDATION_SCHEMA.table
SCORES_COLUMNS = clv.CLV_SCORES_SCHEMA.sql_columns
ORDER_SOURCES = [raw_key(WEB_ORDERS.name), raw_key(POS_TRANSACTIONS.name)]

SANE_PARAMETERS_CHECK = "fitted_parameters_are_finite_and_positive"


def _orders(conn, snapshot) -> pl.DataFrame:
    query = features.customer_orders_sql(conn)
    return pl.from_arrow(
        conn.sql(
            # A fixed row order makes the fit reproducible to the last bit (float sums depend on order).
            f"SELECT customer_key, purchased_at, amount, cost FROM ({query}) ORDER BY ALL",
            params={"cutoff": features.snapshot_cutoff(snapshot)},
        ).to_arrow_table()
    )


def _no_rows() -> pl.DataFrame:
    """An empty partition: INSERT BY NAME of zero rows (the table keeps its declared columns)."""
    return pl.DataFrame(schema={"snapshot_date": pl.Date})


def date_of(text: str):
    return datetime.fromisoformat(text).date()


def _decile_markdown(deciles: pl.DataFrame) -> str:
    lines = ["| decile | customers | predicted | actual | actual revenue |", "|---:|---:|---:|---:|---:|"]
    for row in deciles.iter_rows(named=True):
        lines.append(
            f"| {row['decile']} | {row['customers']:,} | {row['predicted_purchases_mean']:.3f} "
            f"| {row['actual_purchases_mean']:.3f} | {row['actual_revenue_mean']:.2f} |"
        )
    return "\n".join(lines)


def clv_code_version(config: clv.ClvConfig) -> str:
    return version_of(CLV_LOGIC_VERSION, config)


def build_clv_assets(config: clv.ClvConfig) -> list:
    """CLTV scores and their holdout validation (with checks) for one CLV config."""
    code_version = clv_code_version(config)
    # Both CLTV assets: weekly snapshots over the same orders, written one snapshot at a time.
    snapshot_model = dict(
        group_name="models",
        partitions_def=weekly_snapshots,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="duckdb",
        deps=[*ORDER_SOURCES, CUSTOMER_KEY_MAP_KEY],
        owners=[OWNER],
        kinds={"duckdb", "scipy"},
        code_version=code_version,
    )

    @dg.asset(
        key=CLV_SCORES_KEY,
        description=(
            "CLTV per customer and weekly snapshot: BG/NBD (purchase frequency and dropout) and "
            "Gamma-Gamma (value per order) fitted by maximum likelihood on all orders before the "
            "snapshot; discounted margin over the configured horizon (config/clv.yaml). Both fits "
            "are recorded in models.registry."
        ),
        **snapshot_model,
        metadata=schema_metadata(clv.CLV_SCORES_SCHEMA),
        tags={"layer": "models"},
        check_specs=[
            dg.AssetCheckSpec(
                SANE_PARAMETERS_CHECK,
                asset=CLV_SCORES_KEY,
                blocking=True,
                description="Every fit converged to finite, positive parameters and p_alive lies in [0, 1].",
            )
        ],
    )
    def clv_scores(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        fitted_at = datetime.now(UTC).replace(tzinfo=None)
        problems, too_early, latest = [], [], None
        with duckdb.get_connection() as conn:
            for snapshot in dates:
                orders = _orders(conn, snapshot)
                try:
                    result = clv.score_snapshot(orders, snapshot, config)
                except InsufficientHistory as error:  # e.g. no repeat customer yet
                    too_early.append(f"{snapshot}: {error.reason}")
                    warehouse.replace_partitions(
                        conn, SCORES_TABLE, _no_rows(), "snapshot_date", [snapshot], columns=SCORES_COLUMNS
                    )
                    continue
                basis = "margin" if result.value_col == "margin_value" else "revenue"
                scores = result.scores.select(
                    pl.lit(snapshot).alias("snapshot_date"),
                    "customer_key",
                    pl.col(
                        "frequency",
                        "recency",
                        "T",
                        "p_alive",
                        "expected_purchases",
                        "expected_value_per_order",
                        "cltv",
                    ).cast(pl.Float64),
                    pl.lit(basis).alias("value_basis"),
                )
                warehouse.replace_partitions(
                    conn, SCORES_TABLE, scores.to_arrow(), "snapshot_date", [snapshot], columns=SCORES_COLUMNS
                )
                training_start = orders["purchased_at"].min()
                common = {
                    "snapshot_date": snapshot,
                    "fitted_at": fitted_at,
                    "training_start": training_start.date() if training_start else None,
                    "training_end": snapshot - timedelta(days=1),
                }
                record_models(
                    conn,
                    [
                        ModelRecord(
                            model="bgnbd",
                            version=code_version,
                            n_training_rows=result.bgnbd.n_customers,
                            parameters={
                                **result.bgnbd.params.__dict__,
                                "time_unit": result.bgnbd.time_unit,
                                "penalizer": config.penalizer,
                            },
                            metrics={
                                "log_likelihood": result.bgnbd.log_likelihood,
                                "converged": result.bgnbd.converged,
                            },
                            is_champion=True,
                            **common,
                        ),
                        ModelRecord(
                            model="gamma_gamma",
                            version=code_version,
                            n_training_rows=result.gamma_gamma.n_customers,
                            parameters={
                                **result.gamma_gamma.params.__dict__,
                                "value_basis": basis,
                                "penalizer": config.penalizer,
                            },
                            metrics={
                                "log_likelihood": result.gamma_gamma.log_likelihood,
                                "converged": result.gamma_gamma.converged,
                            },
                            is_champion=True,
                            **common,
                        ),
                    ],
                )
                if not (result.bgnbd.converged and result.gamma_gamma.converged):
                    problems.append(f"{snapshot}: fit did not converge ({result.bgnbd.message})")
                latest = (snapshot, result, scores)
            total_rows = warehouse.row_count(conn, SCORES_TABLE)
        metadata = {"dagster/row_count": total_rows, "snapshots": len(dates)}
        if latest:
            snapshot, result, scores = latest
            metadata |= {
                "latest_snapshot": snapshot.isoformat(),
                "dagster/partition_row_count": scores.height,
                "bgnbd": dg.MetadataValue.json(result.bgnbd.params.__dict__),
                "gamma_gamma": dg.MetadataValue.json(result.gamma_gamma.params.__dict__),
                "mean_cltv": float(scores["cltv"].mean()),
                "total_cltv": float(scores["cltv"].sum()),
                "mean_p_alive": float(scores["p_alive"].mean()),
            }
        yield dg.MaterializeResult(metadata=metadata)
        p_alive_ok = latest is None or bool(
            latest[2]["p_alive"].is_between(0, 1).all() and latest[2]["cltv"].is_finite().all()
        )
        # Too little history is a warning (early snapshots of a new shop), a bad fit an error.
        yield dg.AssetCheckResult(
            check_name=SANE_PARAMETERS_CHECK,
            passed=not problems and not too_early and p_alive_ok,
            severity=dg.AssetCheckSeverity.ERROR
            if problems or not p_alive_ok
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "problems": dg.MetadataValue.json(problems),
                "not_enough_history": dg.MetadataValue.json(too_early),
            },
        )

    @dg.asset(
        key=CLV_VALIDATION_KEY,
        description=(
            "Holdout validation of the CLTV model per snapshot: fit on orders up to T - H, predict "
            "repeat purchases in (T - H, T], compare with what happened. Aggregate error %, per-customer "
            "MAE, Spearman rank correlation (metadata and models.registry) and a decile table (this table)."
        ),
        **snapshot_model,
        metadata=schema_metadata(clv.CLV_VALIDATION_SCHEMA),
        tags={"layer": "models"},
    )
    def clv_validation(context: dg.AssetExecutionContext, duckdb: DuckDBResource):
        dates = snapshot_dates(context)
        types = clv.CLV_VALIDATION_SCHEMA.sql_columns
        latest, skipped, written = None, [], 0
        with duckdb.get_connection() as conn:
            for snapshot in dates:
                orders = _orders(conn, snapshot)
                try:
                    calibration = clv.calibrate(orders, snapshot, config)
                except InsufficientHistory as error:  # no complete holdout window yet: no deciles
                    skipped.append(f"{snapshot}: {error.reason}")
                    warehouse.replace_partitions(
                        conn,
                        VALIDATION_TABLE,
                        _no_rows(),
                        "snapshot_date",
                        [snapshot],
                        columns=types,
                    )
                    continue
                deciles = calibration.deciles.with_columns(pl.lit(snapshot).alias("snapshot_date"))
                written += warehouse.replace_partitions(
                    conn, VALIDATION_TABLE, deciles.to_arrow(), "snapshot_date", [snapshot], columns=types
                )
                record_models(
                    conn,
                    [
                        ModelRecord(
                            model="bgnbd_holdout_validation",
                            version=code_version,
                            snapshot_date=snapshot,
                            fitted_at=datetime.now(UTC).replace(tzinfo=None),
                            training_start=orders["purchased_at"].min().date(),
                            training_end=date_of(calibration.metrics["calibration_end"]),
                            n_training_rows=calibration.metrics["customers"],
                            parameters=calibration.metrics["bgnbd"],
                            metrics={k: v for k, v in calibration.metrics.items() if k != "bgnbd"},
                        )
                    ],
                )
                latest = (snapshot, calibration)
            total = warehouse.row_count(conn, VALIDATION_TABLE)
        metadata = {
            "dagster/row_count": total,
            "dagster/partition_row_count": written,
            "snapshots_validated": len(dates) - len(skipped),
            "skipped": dg.MetadataValue.json(skipped),
        }
        if latest:
            snapshot, calibration = latest
            metadata |= {k: v for k, v in calibration.metrics.items() if isinstance(v, int | float)}
            metadata["deciles"] = dg.MetadataValue.md(_decile_markdown(calibration.deciles))
        return dg.MaterializeResult(metadata=metadata)

    return [clv_scores, clv_validation]
