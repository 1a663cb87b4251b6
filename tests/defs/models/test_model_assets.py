"""Group `models` is one folder of factories: each asset is built from its config, and only
settings that change results feed its code_version (threads never mark an asset stale)."""

import dataclasses

import pytest

from segmentation_platform.core.warehouse import tables
from segmentation_platform.defs._lib.config import load_platform_config
from segmentation_platform.defs._lib.keys import key_of
from segmentation_platform.defs.models import definitions as models
from segmentation_platform.defs.models.churn import build_churn_assets
from segmentation_platform.defs.models.clusters import build_cluster_assets
from segmentation_platform.defs.models.clv import build_clv_assets

CONFIG = load_platform_config()


def _versions(assets) -> set[str]:
    return {spec.code_version for asset in assets for spec in asset.specs}


def test_the_models_group_holds_every_model_table_and_nothing_else():
    defs = models.build_defs(CONFIG)
    specs = [spec for asset in defs.assets for spec in asset.specs]
    assert {spec.group_name for spec in specs} == {"models"}
    assert sorted(spec.key for spec in specs) == sorted(
        key_of(table)
        for table in (
            tables.RFM_SCORES,
            tables.CLV_SCORES,
            tables.CLV_VALIDATION,
            tables.CHURN_SCORES,
            tables.CHURN_DRIVERS,
            tables.BEHAVIOUR_CLUSTERS,
            tables.BEHAVIOUR_CLUSTER_PROFILES,
        )
    )


@pytest.mark.parametrize(
    ("build", "config", "runtime", "results"),
    [
        (build_churn_assets, CONFIG.churn, {"threads": 2}, {"max_iter": CONFIG.churn.max_iter + 1}),
        (build_churn_assets, CONFIG.churn, {"threads": None}, {"auc_floor": CONFIG.churn.auc_floor + 0.01}),
        (build_cluster_assets, CONFIG.clustering, {"threads": 2}, {"k_max": CONFIG.clustering.k_max + 1}),
        (build_clv_assets, CONFIG.clv, {}, {"horizon_months": CONFIG.clv.horizon_months + 1}),
    ],
)
def test_runtime_knobs_keep_code_version_result_settings_change_it(build, config, runtime, results):
    (base,) = _versions(build(config))
    assert _versions(build(dataclasses.replace(config, **runtime))) == {base}
    assert _versions(build(dataclasses.replace(config, **results))) != {base}
