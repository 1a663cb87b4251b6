import dataclasses
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from segmentation_platform.core.config import ConfigError
from segmentation_platform.core.models.churn import (
    CLASSIFIER_MODEL,
    SURVIVAL_MODEL,
    ChurnConfig,
    complete_snapshots,
    fit_churn,
    label_snapshots,
    load_churn_config,
)
from segmentation_platform.synthetic.behaviour_panel import simulate_panel
from tests.worlds.truth_world import load_raw_with_true_keys

SNAPSHOTS = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(40)]
AS_OF = SNAPSHOTS[-14]  # leaves 13 weeks (> 90 days) after it to check predictions against
# Smaller samples and boosting than production: the same code paths, a fraction of the time.
FAST = dataclasses.replace(
    load_churn_config(), max_rows=12_000, survival_max_rows=5_000, max_iter=60, permutation_rows=1_000
)
TINY = dataclasses.replace(FAST, max_rows=3_000, survival_max_rows=1_500, max_iter=30, permutation_rows=300)


@pytest.fixture(scope="module")
def panel():
    return simulate_panel(4_000, SNAPSHOTS, seed=3)


@pytest.fixture(scope="module")
def fitted(panel):
    return fit_churn(panel.features, panel.purchases, AS_OF, FAST)


def test_label_weighs_the_silence_after_the_snapshot_by_the_purchase_rate():
    """0 after any purchase in the follow-up; else P(dropped out | silent) by Bayes with BG/NBD."""
    rows = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d", "e", "f"],
            "snapshot_date": pd.Timestamp("2025-03-03"),
            "bgnbd_p_alive": [0.5, 0.5, 0.5, 0.5, 0.5, 1.0],
            # Gamma(shape r + x, rate alpha + T) of the purchase rate if alive: d is a slow
            # buyer (mean 1 per 100 days), e a fast one (1 per 10 days), f never repeated.
            "_bgnbd_shape": [2.0, 2.0, 2.0, 2.0, 2.0, 1.0],
            "_bgnbd_rate": [200.0, 200.0, 200.0, 200.0, 20.0, 100.0],
        }
    )
    purchases = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "c"],
            "purchased_at": pd.to_datetime(
                ["2025-03-03 00:00", "2025-06-01 00:00", "2025-02-01 00:00", "2025-05-31 23:59"]
            ),
        }
    )
    labels = label_snapshots(rows, purchases, as_of="2025-07-01", horizon_days=90).set_index("customer_key")
    # a buys at the snapshot instant (counts as after it), b on day T+90, c's second purchase
    # falls inside: each proves they were alive. d and e stay silent for 120 days.
    assert labels.loc[["a", "b", "c"], "churned"].tolist() == [0.0, 0.0, 0.0]
    silent_if_alive = {"d": (200 / 320) ** 2, "e": (20 / 140) ** 2}
    for key, s in silent_if_alive.items():
        assert labels.loc[key, "churned"] == pytest.approx(0.5 / (0.5 + 0.5 * s))
    assert (
        0.5 < labels.loc["d", "churned"] < labels.loc["e", "churned"] < 1.0
    )  # a fast buyer's silence says more
    assert labels.loc["f", "churned"] == 0.0  # no repeat purchase: BG/NBD has no dropout yet
    assert labels.loc["b", "duration_days"] == pytest.approx(90.0)
    assert labels.loc["d", "duration_days"] == pytest.approx(120.0)  # censored at as_of
    assert not labels.loc["d", "purchased"]
    early = label_snapshots(rows, purchases, as_of="2025-05-01", horizon_days=90)
    assert early["churned"].isna().all()  # window not closed: no label, and b's purchase is unseen
    assert early.set_index("customer_key").loc["b", "purchased"] == False  # noqa: E712


def test_complete_snapshots_need_the_whole_window_before_the_cutoff():
    dates = [date(2025, 1, 6), date(2025, 1, 13), date(2025, 4, 7)]
    assert complete_snapshots(dates, date(2025, 4, 7), 90) == [pd.Timestamp("2025-01-06")]
    assert complete_snapshots(dates, date(2025, 4, 13), 90) == [pd.Timestamp(d) for d in dates[:2]]


def test_champion_discriminates_and_beats_the_base_rate(fitted, panel):
    assert fitted.status == "fitted", fitted.message
    assert fitted.validation_scheme == "time_split_purged"
    champion = fitted.champion_report
    assert champion.metrics["auc"] >= 0.80
    assert champion.metrics["brier"] < champion.metrics["base_rate_brier"]
    # Against the panel's truth: who had really stopped buying at AS_OF. The panel's dropout
    # may come before any repeat purchase, which the BG/NBD labels rule out (one-time buyers
    # are labelled active), so the ranking is weaker here than on the BG/NBD generator
    # (test_against_the_generators_ground_truth); the survival plateau ranks it well.
    truth = fitted.scores.merge(panel.truth, on="customer_key")
    dropped_out = (truth["dropout_at"] <= pd.Timestamp(AS_OF)).to_numpy(dtype=int)
    assert roc_auc_score(dropped_out, truth["churn_probability"]) > 0.65
    assert roc_auc_score(dropped_out, truth["survival_churn_probability"]) > 0.85
    brier = brier_score_loss(dropped_out, truth["churn_probability"])
    assert brier < dropped_out.mean() * (1 - dropped_out.mean())


def test_both_models_are_validated_and_recorded(fitted):
    names = {m.name: m for m in fitted.models}
    assert set(names) == {SURVIVAL_MODEL, CLASSIFIER_MODEL}
    assert sum(m.is_champion for m in fitted.models) == 1
    champion = fitted.champion_report
    assert champion.metrics["log_loss"] == min(m.metrics["log_loss"] for m in fitted.models)
    for model in fitted.models:
        assert model.status == "fitted", model.message
        assert len(model.calibration) == 10 and len(model.lift) == 10
        assert model.lift["lift"].iloc[0] > 1.5  # the riskiest decile churns well above average
        assert model.lift["cumulative_capture"].iloc[-1] == pytest.approx(1.0)
        assert len(model.drivers)
    survival = names[SURVIVAL_MODEL].drivers.set_index("feature")
    assert survival.loc["recency_days", "direction"] == "raises churn"
    assert survival.loc["recency_days", "effect"] < 1  # longer since the last order: lower purchase hazard
    records = fitted.registry_records(pd.Timestamp("2025-01-01").to_pydatetime(), "v")
    assert {r.model for r in records} == {SURVIVAL_MODEL, CLASSIFIER_MODEL}
    assert all(r.training_end <= AS_OF - timedelta(days=90) for r in records)
    assert all("calibration" in r.metrics and "lift" in r.metrics for r in records)


def test_scores_cover_every_buyer_with_a_risk_tier(fitted, panel):
    current = panel.features[panel.features["snapshot_date"] == pd.Timestamp(AS_OF)]
    buyers = set(current.loc[current["frequency"] > 0, "customer_key"])
    scores = fitted.scores
    assert set(scores["customer_key"]) == buyers and scores["customer_key"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_tier"]) <= {"high", "medium", "low"}
    high = scores.loc[scores["risk_tier"] == "high", "churn_probability"]
    assert (high >= 0.6).all()


def test_nothing_after_the_snapshot_changes_the_model(panel):
    """Future purchases and future feature rows are never read: the result is identical."""
    rng = np.random.default_rng(0)
    keys = panel.features["customer_key"].unique()
    future_purchases = pd.DataFrame(
        {
            "customer_key": rng.choice(keys, 20_000),
            "purchased_at": pd.Timestamp(AS_OF) + pd.to_timedelta(rng.uniform(0, 200, 20_000), unit="D"),
        }
    )
    future_features = panel.features[panel.features["snapshot_date"] > pd.Timestamp(AS_OF)].copy()
    future_features["recency_days"] = 0
    honest = fit_churn(
        panel.features[panel.features["snapshot_date"] <= pd.Timestamp(AS_OF)], panel.purchases, AS_OF, TINY
    )
    tampered = fit_churn(
        pd.concat([panel.features, future_features]),
        pd.concat([panel.purchases[["customer_key", "purchased_at"]], future_purchases]),
        AS_OF,
        TINY,
    )
    assert honest.status == "fitted"
    pd.testing.assert_frame_equal(tampered.scores, honest.scores)
    assert [m.metrics for m in tampered.models] == [m.metrics for m in honest.models]
    # Every training and holdout snapshot had its label window closed by AS_OF.
    assert max(honest.training_snapshots + honest.holdout_snapshots) <= AS_OF - timedelta(days=90)


def test_no_complete_label_window_means_no_scores_and_a_clear_message(panel):
    early = SNAPSHOTS[5]
    result = fit_churn(panel.features, panel.purchases, early, TINY)
    assert result.status == "insufficient_history"
    assert result.scores.empty and result.champion is None
    assert "complete 90-day label window" in result.message
    assert str(SNAPSHOTS[0] + timedelta(days=90)) in result.message


def test_weibull_aft_survival_model_works_too(panel):
    config = dataclasses.replace(TINY, survival_model="weibull_aft")
    result = fit_churn(panel.features, panel.purchases, AS_OF, config)
    survival = next(m for m in result.models if m.name == SURVIVAL_MODEL)
    assert survival.status == "fitted", survival.message
    assert survival.metrics["auc"] > 0.75
    assert set(survival.drivers["effect_kind"]) == {"time_ratio_per_sd"}


def test_risk_tiers_follow_the_configured_thresholds():
    config = ChurnConfig()
    tiers = config.tier_of(np.array([0.95, 0.6, 0.59, 0.3, 0.1, np.nan]))
    assert list(tiers) == ["high", "high", "medium", "medium", "low", None]


def test_config_errors_name_file_and_line(tmp_path):
    path = tmp_path / "churn.yaml"
    path.write_text(
        "version: 1\nhorizon_days: 90\nauc_floor: 0.7\nrisk_tiers:\n  - name: high\n    min_probability: 0.6\n"
        "  - name: low\ntraining:\n  max_rowz: 10\n"
    )
    with pytest.raises(ConfigError) as error:
        load_churn_config(path)
    assert error.value.line == 9 and "max_rowz" in str(error.value) and str(path) in str(error.value)
    path.write_text(
        "version: 1\nhorizon_days: 90\nauc_floor: 0.7\nrisk_tiers:\n  - name: low\n    min_probability: 0.2\n"
        "  - name: high\n"
        "  - name: x\n"
    )
    with pytest.raises(ConfigError, match=r"churn.yaml:7: every tier but the last"):
        load_churn_config(path)


@pytest.fixture(scope="module")
def generated_world(tmp_path_factory):
    """The real generator -> raw tables -> the real feature store, with the TRUE key map."""
    import duckdb

    from segmentation_platform.core import features
    from segmentation_platform.synthetic import generator

    out = tmp_path_factory.mktemp("churn_world")
    end = date(2025, 3, 31)
    generator.generate(out, persons=2_500, start=date(2024, 1, 1), end=end, seed=5, broken_share=0.0)
    conn = duckdb.connect()
    load_raw_with_true_keys(out, conn)
    snapshots = [date(2024, 6, 3) + timedelta(weeks=2 * i) for i in range(15)]
    frame = pd.concat(
        [features.compute_customer_features(conn, s).to_pandas() for s in snapshots], ignore_index=True
    )
    purchases = conn.execute(
        f"SELECT customer_key, purchased_at FROM ({features.customer_orders_sql(conn)})",
        {"cutoff": features.snapshot_cutoff(end)},
    ).df()
    persons = pd.read_parquet(out / "ground_truth" / "persons.parquet")
    return frame, purchases, persons, snapshots[-1]


def test_against_the_generators_ground_truth(generated_world):
    """Real feature store on generated data: the champion finds who had really dropped out.

    The generator's truth (params.json "churn"): churned at d iff persons.dropout_date <= d.
    """
    frame, purchases, persons, as_of = generated_world
    result = fit_churn(frame, purchases, as_of, FAST)
    assert result.status == "fitted", result.message
    champion = result.champion_report
    assert champion.metrics["auc"] >= 0.80
    assert champion.metrics["brier"] < champion.metrics["base_rate_brier"]
    truth = result.scores.merge(
        persons[["person_id", "dropout_date"]], left_on="customer_key", right_on="person_id"
    )
    assert len(truth) == len(result.scores) > 2_000
    dropped_out = (pd.to_datetime(truth["dropout_date"]) <= pd.Timestamp(as_of)).to_numpy(dtype=int)
    assert 0.15 < dropped_out.mean() < 0.4
    probability = truth["churn_probability"].to_numpy()
    assert roc_auc_score(dropped_out, probability) >= 0.80
    # Calibrated: better than always predicting the true share, and about as many churners as there are.
    assert brier_score_loss(dropped_out, probability) < dropped_out.mean() * (1 - dropped_out.mean())
    assert probability.mean() == pytest.approx(dropped_out.mean(), abs=0.08)
    # BG/NBD signals drive it: P(alive) is among the classifier's strongest drivers.
    classifier = next(m for m in result.models if m.name == CLASSIFIER_MODEL)
    assert "bgnbd_p_alive" in classifier.drivers["feature"].head(5).tolist()
