"""Churn settings (config/churn.yaml): risk tiers, label horizon, training sample, the two models' parameters."""

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from segmentation_platform.core.config import ConfigError, Section, load_located_yaml
from segmentation_platform.core.config._paths import CONFIG_DIR
from segmentation_platform.core.models.clv import load_clv_config

CHURN_CONFIG_PATH = CONFIG_DIR / "churn.yaml"
LOGIC_VERSION = "2"
SURVIVAL_MODEL = "churn_survival"
CLASSIFIER_MODEL = "churn_classifier"
PROBABILITY_CLIP = 1e-4


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiskTier:
    name: str
    min_probability: float | None  # None: the lowest tier, takes the rest


@dataclass(frozen=True)
class ChurnConfig:
    horizon_days: int = 90
    risk_tiers: tuple[RiskTier, ...] = (
        RiskTier("high", 0.6),
        RiskTier("medium", 0.3),
        RiskTier("low", None),
    )
    auc_floor: float = 0.70
    frequency_column: str | None = "frequency"
    min_frequency: float = 1
    exclude: tuple[str, ...] = ("customer_key", "snapshot_date", "first_purchase_at", "last_purchase_at")
    categorical: tuple[str, ...] = ("acquisition_channel", "lifecycle_stage")
    max_snapshots: int = 26
    max_rows: int = 80_000
    holdout_snapshots: int = 1
    purge_label_overlap: bool = True
    refit_champion: bool = True
    seed: int = 7
    survival_model: str = "cox_ph"
    penalizer: float = 0.01
    survival_max_rows: int = 30_000
    max_iter: int = 150
    learning_rate: float = 0.08
    max_leaf_nodes: int = 31
    calibration: str = "isotonic"
    calibration_folds: int = 3
    permutation_rows: int = 2_000
    permutation_repeats: int = 2
    threads: int | None = 1
    declared_version: int = 1
    # The BG/NBD fits behind the labels and signals are the CLV stage's model, with its prior.
    bgnbd_penalizer: float = 0.0

    def result_settings(self) -> tuple:
        """Everything that can change a result, i.e. all but `threads`: what code_version hashes."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "threads")

    def tier_of(self, probability: np.ndarray) -> np.ndarray:
        """Risk tier names; NaN probability -> None."""
        probability = np.asarray(probability, dtype=float)
        tiers = np.full(len(probability), None, dtype=object)
        open_rows = ~np.isnan(probability)
        for tier in self.risk_tiers:
            hit = (
                open_rows
                if tier.min_probability is None
                else open_rows & (probability >= tier.min_probability)
            )
            tiers[hit] = tier.name
            open_rows &= ~hit
        return tiers


def load_churn_config(path: Path | str = CHURN_CONFIG_PATH) -> ChurnConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read churn config ({exc.strerror})") from None
    top = Section(load_located_yaml(text, path), path, "")
    top.only(
        ["version", "horizon_days", "risk_tiers", "auc_floor", "population", "features", "training"]
        + ["survival", "classifier", "importance", "threads"],
        required=["version", "horizon_days", "risk_tiers", "auc_floor"],
    )
    tiers_data = top.data["risk_tiers"]
    if not isinstance(tiers_data, list) or len(tiers_data) < 2:
        raise top.error("risk_tiers", "risk_tiers must list at least two tiers, highest first")
    tiers, previous = [], None
    for index, item in enumerate(tiers_data):
        tier = Section(item, path, f"risk_tiers[{index}]", tiers_data.line_of(index)).only(
            ["name", "min_probability"], required=["name"]
        )
        last = index == len(tiers_data) - 1
        if last != (not tier.has("min_probability")):
            raise tier.error(
                None, "every tier but the last needs min_probability; the last takes the rest and has none"
            )
        minimum = None if last else tier.number("min_probability", low=0.0, high=1.0)
        if minimum is not None and previous is not None and minimum >= previous:
            raise tier.error("min_probability", "risk tiers must be listed highest min_probability first")
        previous = minimum if minimum is not None else previous
        tiers.append(RiskTier(tier.text("name", word=True), minimum))
    kwargs: dict = {
        "bgnbd_penalizer": load_clv_config().penalizer,
        "declared_version": top.number("version", integer=True, low=1),
        "horizon_days": top.number("horizon_days", integer=True, low=1, high=3650),
        "risk_tiers": tuple(tiers),
        "auc_floor": top.number("auc_floor", low=0.0, high=1.0),
        "threads": None
        if top.data.get("threads", 1) is None
        else top.number("threads", 1, low=1, integer=True),
    }
    if top.has("population"):
        section = top.section("population").only(["frequency_column", "min_frequency"])
        kwargs["frequency_column"] = section.data.get("frequency_column") or None
        kwargs["min_frequency"] = section.number("min_frequency", 1, low=0)
    if top.has("features"):
        section = top.section("features").only(["exclude", "categorical"])
        kwargs["exclude"] = section.words("exclude", list(ChurnConfig.exclude))
        kwargs["categorical"] = tuple(section.data.get("categorical") or ())
    if top.has("training"):
        section = top.section("training").only(
            [
                "max_snapshots",
                "max_rows",
                "holdout_snapshots",
                "purge_label_overlap",
                "refit_champion",
                "seed",
            ]
        )
        kwargs |= {
            "max_snapshots": section.number("max_snapshots", 26, low=1, integer=True),
            "max_rows": section.number("max_rows", 80_000, low=100, integer=True),
            "holdout_snapshots": section.number("holdout_snapshots", 1, low=1, integer=True),
            "purge_label_overlap": section.flag("purge_label_overlap", True),
            "refit_champion": section.flag("refit_champion", True),
            "seed": section.number("seed", 7, integer=True),
        }
    if top.has("survival"):
        section = top.section("survival").only(["model", "penalizer", "max_rows"])
        kwargs |= {
            "survival_model": section.choice("model", ["cox_ph", "weibull_aft"], "cox_ph"),
            "penalizer": section.number("penalizer", 0.01, low=0.0),
            "survival_max_rows": section.number("max_rows", 30_000, low=100, integer=True),
        }
    if top.has("classifier"):
        section = top.section("classifier").only(
            ["max_iter", "learning_rate", "max_leaf_nodes", "calibration", "calibration_folds"]
        )
        kwargs |= {
            "max_iter": section.number("max_iter", 150, low=10, integer=True),
            "learning_rate": section.number("learning_rate", 0.08, low=0.001, high=1.0),
            "max_leaf_nodes": section.number("max_leaf_nodes", 31, low=2, integer=True),
            "calibration": section.choice("calibration", ["isotonic", "sigmoid"], "isotonic"),
            "calibration_folds": section.number("calibration_folds", 3, low=2, high=10, integer=True),
        }
    if top.has("importance"):
        section = top.section("importance").only(["permutation_rows", "repeats"])
        kwargs |= {
            "permutation_rows": section.number("permutation_rows", 2_000, low=100, integer=True),
            "permutation_repeats": section.number("repeats", 2, low=1, integer=True),
        }
    return ChurnConfig(**kwargs)
