import dataclasses
import os
import subprocess
import sys
from datetime import date, timedelta

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from segmentation_platform.core import warehouse
from segmentation_platform.core.models import rfm
from segmentation_platform.core.segments import SCHEME_PATH
from segmentation_platform.defs._lib.config import load_platform_config
from segmentation_platform.defs._lib.keys import CHURN_SCORES_KEY
from segmentation_platform.defs._lib.keys import SEGMENT_ASSIGNMENTS_KEY as ASSIGNMENTS_KEY
from segmentation_platform.defs.models.churn import AUC_CHECK, build_churn_assets
from segmentation_platform.defs.models.clusters import build_cluster_assets
from segmentation_platform.defs.segments.assets import (
    NON_EMPTY_CHECK,
    ONE_SEGMENT_CHECK,
    SEGMENT_COUNT_CHECK,
    build_segment_assets,
)
from segmentation_platform.synthetic.behaviour_panel import simulate_panel

# Weekly partition 2025-08-25 .. 2025-09-01: its snapshot is taken at 00:00 on 2025-09-01.
CONFIG = load_platform_config()
# Production code paths with test-sized samples.
FAST_CHURN = dataclasses.replace(
    CONFIG.churn, max_rows=4_000, survival_max_rows=1_500, max_iter=30, permutation_rows=300
)
(churn_model,) = build_churn_assets(FAST_CHURN)
(behaviour_clustering,) = build_cluster_assets(CONFIG.clustering)
SCHEME = CONFIG.scheme
segment_assets = build_segment_assets(SCHEME)
changelog, assignments, _profiles = segment_assets
SEGMENT_STAGE_ASSETS = [churn_model, behaviour_clustering, *segment_assets]
FIRST_SNAPSHOT = date(2025, 1, 13)
SNAPSHOTS = [FIRST_SNAPSHOT + timedelta(weeks=i) for i in range(35)]  # one week beyond SNAPSHOT
PARTITION, SNAPSHOT = "2025-08-25", date(2025, 9, 1)
EARLY_PARTITION, EARLY_SNAPSHOT = "2025-01-27", date(2025, 2, 3)


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory):
    """Features, raw purchases, key map, RFM and CLV as the upstream stages leave them."""
    assert SNAPSHOTS[-2] == SNAPSHOT
    panel = simulate_panel(1_500, SNAPSHOTS, seed=11)
    path = tmp_path_factory.mktemp("segments") / "warehouse.duckdb"
    purchases = panel.purchases.assign(row=np.arange(len(panel.purchases)))
    web = purchases[purchases["channel"] == "web"]
    pos = purchases[purchases["channel"] == "pos"]
    with duckdb.connect(str(path)) as conn:
        warehouse.replace_table(conn, "features.customer_features", panel.features)
        warehouse.replace_table(
            conn,
            "raw.web_orders",
            pd.DataFrame(
                {
                    "order_id": "W" + web["row"].astype(str),
                    "account_id": "A" + web["customer_key"],
                    "ordered_at": web["purchased_at"],
                    "amount": web["amount"],
                }
            ),
        )
        warehouse.replace_table(
            conn,
            "raw.pos_transactions",
            pd.DataFrame(
                {
                    "receipt_id": "R" + pos["row"].astype(str),
                    "store_id": "S1",
                    "purchased_at": pos["purchased_at"],
                    "amount": pos["amount"],
                    "loyalty_id": "L" + pos["customer_key"],
                }
            ),
        )
        keys = panel.truth["customer_key"]
        warehouse.replace_table(
            conn,
            "identity.customer_key_map",
            pd.concat(
                [
                    pd.DataFrame({"source": "web_orders", "source_id": "A" + keys, "customer_key": keys}),
                    pd.DataFrame(
                        {"source": "pos_transactions", "source_id": "L" + keys, "customer_key": keys}
                    ),
                ]
            ),
        )
        scored = panel.features[
            ["snapshot_date", "customer_key", "recency_days", "frequency", "monetary_total"]
        ]
        warehouse.replace_table(conn, "models.rfm_scores", rfm.score_rfm(scored, conn=conn))
        buyers = panel.features[panel.features["frequency"] > 0]
        warehouse.replace_table(
            conn,
            "models.clv_scores",
            pd.DataFrame(
                {
                    "customer_key": buyers["customer_key"],
                    "snapshot_date": buyers["snapshot_date"],
                    "p_alive": 1 / (1 + buyers["recency_days"].astype(float) / 90),
                    "cltv": buyers["monetary_total"] / (1 + buyers["recency_days"].astype(float) / 90),
                }
            ),
        )
    return path


def materialize(path, assets, partition_key=None, **kw):
    return dg.materialize(
        assets,
        partition_key=partition_key,
        resources={"duckdb": DuckDBResource(database=str(path))},
        raise_on_error=kw.pop("raise_on_error", True),
        **kw,
    )


def checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def query(path, sql, params=None):
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def test_the_stage_materializes_one_snapshot_end_to_end(warehouse_path):
    result = materialize(warehouse_path, SEGMENT_STAGE_ASSETS, PARTITION)
    assert result.success
    evaluations = checks(result)
    assert all(e.passed for e in evaluations.values()), {
        n: e.metadata for n, e in evaluations.items() if not e.passed
    }
    assert {AUC_CHECK, ONE_SEGMENT_CHECK, NON_EMPTY_CHECK, SEGMENT_COUNT_CHECK} <= set(evaluations)

    customers = query(
        warehouse_path, "SELECT count(*) FROM features.customer_features WHERE snapshot_date = ?", [SNAPSHOT]
    )[0][0]
    buyers = query(
        warehouse_path,
        "SELECT count(*) FROM features.customer_features WHERE snapshot_date = ? AND frequency > 0",
        [SNAPSHOT],
    )[0][0]
    assert query(warehouse_path, "SELECT count(*), count(DISTINCT customer_key) FROM models.churn_scores")[
        0
    ] == (buyers, buyers)
    assert (
        query(warehouse_path, "SELECT count(DISTINCT customer_key) FROM models.behaviour_clusters")[0][0]
        == buyers
    )
    rows = query(
        warehouse_path,
        "SELECT count(*), count(DISTINCT customer_key), count(action_segment), min(scheme_version) FROM segments.assignments",
    )[0]
    assert rows == (customers, customers, customers, SCHEME.version)
    assert query(warehouse_path, "SELECT count(*) FROM segments.profiles")[0][0] == len(SCHEME.segments)
    assert query(warehouse_path, "SELECT count(*) FROM segments.changelog")[0][0] == 1
    registry = {
        r[0]
        for r in query(
            warehouse_path, "SELECT model FROM models.registry WHERE snapshot_date = ?", [SNAPSHOT]
        )
    }
    assert registry == {"churn_survival", "churn_classifier", "behaviour_clusters"}
    assert (
        query(
            warehouse_path, "SELECT count(*) FROM models.registry WHERE is_champion AND model LIKE 'churn%'"
        )[0][0]
        == 1
    )
    # Every axis the activation catalog exports is a column.
    columns = {
        r[0]
        for r in query(
            warehouse_path,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'assignments'",
        )
    }
    assert {
        "value_tier",
        "lifecycle_stage",
        "risk_tier",
        "rfm_segment",
        "behaviour_cluster",
        "rule",
    } <= columns
    metadata = result.asset_materializations_for_node("churn_model")[0].metadata
    assert metadata["status"].value == "fitted" and "calibration_deciles" in metadata

    # Re-materializing replaces the partition and, with the scheme unchanged, logs nothing new.
    assert materialize(warehouse_path, SEGMENT_STAGE_ASSETS, PARTITION).success
    assert query(warehouse_path, "SELECT count(*) FROM segments.assignments")[0][0] == customers
    assert query(warehouse_path, "SELECT count(*) FROM models.churn_scores")[0][0] == buyers
    assert query(warehouse_path, "SELECT count(*) FROM segments.changelog")[0][0] == 1
    assert (
        query(warehouse_path, "SELECT count(*) FROM models.registry WHERE snapshot_date = ?", [SNAPSHOT])[0][
            0
        ]
        == 3
    )


def test_early_snapshots_warn_but_still_get_segments(warehouse_path):
    result = materialize(warehouse_path, SEGMENT_STAGE_ASSETS, EARLY_PARTITION)
    assert result.success
    auc = checks(result)[AUC_CHECK]
    assert not auc.passed and auc.severity == dg.AssetCheckSeverity.WARN
    assert str(EARLY_SNAPSHOT) in str(auc.metadata["snapshots_not_scored"].value)
    tiers = query(
        warehouse_path,
        "SELECT DISTINCT risk_tier FROM segments.assignments WHERE snapshot_date = ?",
        [EARLY_SNAPSHOT],
    )
    assert tiers == [("unscored",)]
    assert (
        query(
            warehouse_path,
            "SELECT count(*) FROM models.churn_scores WHERE snapshot_date = ?",
            [EARLY_SNAPSHOT],
        )[0][0]
        == 0
    )


def test_a_champion_below_the_auc_floor_blocks_segment_assignment(warehouse_path):
    (strict_churn,) = build_churn_assets(dataclasses.replace(FAST_CHURN, auc_floor=0.999))
    result = materialize(
        warehouse_path, [strict_churn, changelog, assignments], PARTITION, raise_on_error=False
    )
    auc = checks(result)[AUC_CHECK]
    assert not auc.passed and auc.severity == dg.AssetCheckSeverity.ERROR
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert CHURN_SCORES_KEY in materialized and ASSIGNMENTS_KEY not in materialized


def test_cluster_ids_carry_over_to_the_next_snapshot(warehouse_path):
    assert materialize(warehouse_path, [behaviour_clustering], "2025-08-11").success
    assert materialize(warehouse_path, [behaviour_clustering], "2025-08-18").success
    before = dict(
        query(
            warehouse_path,
            "SELECT cluster_id, cluster_label FROM models.behaviour_cluster_profiles WHERE snapshot_date = ?",
            [date(2025, 8, 18)],
        )
    )
    after = query(
        warehouse_path,
        "SELECT cluster_id, matched_previous, centroid_shift FROM models.behaviour_cluster_profiles WHERE snapshot_date = ?",
        [date(2025, 8, 25)],
    )
    assert {cluster_id for cluster_id, _, _ in after} == set(before)
    assert all(matched and shift < 0.5 for _, matched, shift in after)
    moved = query(
        warehouse_path,
        "SELECT avg(CASE WHEN a.cluster_id = b.cluster_id THEN 1.0 ELSE 0.0 END) FROM models.behaviour_clusters a "
        "JOIN models.behaviour_clusters b USING (customer_key) WHERE a.snapshot_date = ? AND b.snapshot_date = ?",
        [date(2025, 8, 18), date(2025, 8, 25)],
    )[0][0]
    # Most customers keep their id a week later (the panel redraws email activity every week,
    # so those near a boundary may switch); with unmatched ids this would be about 1/k.
    assert moved > 0.75


def test_an_invalid_scheme_fails_when_definitions_load(tmp_path):
    bad = tmp_path / "scheme.yaml"
    bad.write_text(
        SCHEME_PATH.read_text().replace("      risk_tier: [high, medium]\n", "      risk_teir: [high]\n", 1)
    )
    line = next(i + 1 for i, text in enumerate(bad.read_text().splitlines()) if "risk_teir" in text)
    run = subprocess.run(
        [sys.executable, "-c", "import segmentation_platform.definitions"],
        env=os.environ | {"SEGMENTATION_SEGMENT_SCHEME": str(bad)},
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert f"{bad}:{line}: rule high_value_rising_risk: unknown axis 'risk_teir'" in run.stderr


def test_stage_assets_fit_the_platform_graph(tmp_path):
    """With the upstream stages: no key clashes, and one weekly job can run the whole stage."""
    from segmentation_platform.defs._lib.resources import resources_for
    from segmentation_platform.defs.features.assets import build_feature_assets
    from segmentation_platform.defs.ingestion.assets import build_ingestion_assets

    assets = [*build_ingestion_assets(), *build_feature_assets(CONFIG.features), *SEGMENT_STAGE_ASSETS]
    keys = [key for a in assets for key in a.keys]
    assert len(keys) == len(set(keys))
    job = dg.define_asset_job("weekly_segments", selection=dg.AssetSelection.assets(*SEGMENT_STAGE_ASSETS))
    defs = dg.Definitions(assets=assets, jobs=[job], resources=resources_for(tmp_path))
    resolved = defs.resolve_job_def("weekly_segments")
    assert resolved.partitions_def is not None


def test_a_changed_scheme_yaml_adds_one_changelog_row_and_an_unchanged_one_none(tmp_path):
    """The changelog asset over a YAML edit: bumped version, one row with the diff; re-runs add nothing."""
    from segmentation_platform.core import segments as core_segments

    path = tmp_path / "warehouse.duckdb"
    assert materialize(path, [changelog]).success
    assert materialize(path, [changelog]).success
    edited_file = tmp_path / "scheme.yaml"
    edited_file.write_text(
        SCHEME_PATH.read_text()
        .replace("version: 1\n", "version: 2\n", 1)
        .replace("      risk_tier: [high, medium]\n", "      risk_tier: [high]\n", 1)
    )
    edited = core_segments.load_scheme(edited_file)
    edited_changelog = build_segment_assets(edited)[0]
    for _ in range(2):
        result = materialize(path, [edited_changelog])
        assert result.success
    rows = query(
        path,
        f"SELECT change_number, scheme_version, change_summary FROM {core_segments.SEGMENT_CHANGELOG_SCHEMA.table} ORDER BY 1",
    )
    assert [(number, version) for number, version, _ in rows] == [(1, SCHEME.version), (2, edited.version)]
    assert edited.version != SCHEME.version
    assert "changed rules[high_value_rising_risk].when.risk_tier: [high, medium] -> [high]" in rows[1][2]
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["recorded_new_version"].value is False  # the second run with the edit added nothing
