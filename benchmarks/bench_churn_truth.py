"""Churn against the generator's ground truth at scale: AUC and Brier vs who really dropped out.

    .venv/bin/python benchmarks/bench_churn_truth.py                    # 100k persons
    .venv/bin/python benchmarks/bench_churn_truth.py --persons 20000
    .venv/bin/python benchmarks/bench_churn_truth.py --demo-year   # 3k persons, 2025, every snapshot

The real generator writes landing files; raw tables are loaded from them, the TRUE key map
stands in for identity resolution (so churn is judged on its own), and the real feature
store computes biweekly snapshots. The production churn config then fits at the last
snapshot. Truth (params.json "churn"): churned at d iff persons.dropout_date <= d.
Timed per step with peak RSS; results in benchmarks/results/churn-truth-<persons>.json.
`--demo-year` mirrors `segmentation-platform demo` (3,000 persons over 2025, weekly
snapshots) and fits every other snapshot once 90 days of history exist: the champion's
holdout AUC and its AUC against the truth through the year (churn-truth-demo-year.json).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import psutil
from sklearn.metrics import brier_score_loss, roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_segments import timed  # noqa: E402
from segmentation_platform.core import features  # noqa: E402
from segmentation_platform.core.models.churn import fit_churn, load_churn_config  # noqa: E402
from segmentation_platform.synthetic.generator import generate  # noqa: E402
from tests.worlds.truth_world import load_raw_with_true_keys  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def demo_year() -> int:
    start, end = date(2025, 1, 1), date(2025, 12, 31)
    snapshots = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(52)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out, 3_000, start, end, seed=42, broken_share=0.0)
        conn = duckdb.connect()
        load_raw_with_true_keys(out, conn)
        frame = pd.concat(
            [features.compute_customer_features(conn, s).to_pandas() for s in snapshots], ignore_index=True
        )
        purchases = conn.execute(
            f"SELECT customer_key, purchased_at FROM ({features.customer_orders_sql(conn)})",
            {"cutoff": features.snapshot_cutoff(end)},
        ).df()
        persons = pd.read_parquet(
            out / "ground_truth" / "persons.parquet", columns=["person_id", "dropout_date"]
        )
    config = load_churn_config()
    rows = []
    for as_of in [s for s in snapshots if s >= snapshots[0] + timedelta(days=config.horizon_days)][::2]:
        result = fit_churn(frame, purchases, as_of, config)
        if result.status != "fitted":
            rows.append({"snapshot": as_of.isoformat(), "status": result.status, "message": result.message})
            print(rows[-1], flush=True)
            continue
        truth = result.scores.merge(persons, left_on="customer_key", right_on="person_id")
        dropped = (pd.to_datetime(truth["dropout_date"]) <= pd.Timestamp(as_of)).to_numpy(dtype=int)
        probability = truth["churn_probability"].to_numpy()
        row = {
            "snapshot": as_of.isoformat(),
            "champion": result.champion,
            "validation_scheme": result.validation_scheme,
            "holdout_auc": round(result.champion_auc, 4),
            "auc_vs_truth": round(float(roc_auc_score(dropped, probability)), 4),
            "brier_vs_truth": round(float(brier_score_loss(dropped, probability)), 4),
            "base_rate_brier_vs_truth": round(float(dropped.mean() * (1 - dropped.mean())), 4),
            "scored": int(len(truth)),
        }
        print(row, flush=True)
        rows.append(row)
    path = RESULTS / "churn-truth-demo-year.json"
    summary = {
        "persons": 3_000,
        "period": [start.isoformat(), end.isoformat()],
        "seed": 42,
        "auc_floor": config.auc_floor,
        "min_holdout_auc": min(r["holdout_auc"] for r in rows if "holdout_auc" in r),
        "min_auc_vs_truth": min(r["auc_vs_truth"] for r in rows if "auc_vs_truth" in r),
        "snapshots": rows,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"-> {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--snapshots", type=int, default=15, help="biweekly snapshots from 2024-06-03")
    parser.add_argument("--demo-year", action="store_true")
    args = parser.parse_args(argv)
    if args.demo_year:
        return demo_year()
    start, end = date(2024, 1, 1), date(2025, 3, 31)
    snapshots = [date(2024, 6, 3) + timedelta(weeks=2 * i) for i in range(args.snapshots)]
    as_of = snapshots[-1]
    steps: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        timed(
            "generate",
            steps,
            lambda: generate(out, args.persons, start, end, seed=args.seed, broken_share=0.0),
        )
        conn = duckdb.connect()
        timed("load raw + true key map", steps, lambda: load_raw_with_true_keys(out, conn))
        frame = timed(
            f"features x{len(snapshots)} snapshots",
            steps,
            lambda: pd.concat(
                [features.compute_customer_features(conn, s).to_pandas() for s in snapshots],
                ignore_index=True,
            ),
        )
        purchases = conn.execute(
            f"SELECT customer_key, purchased_at FROM ({features.customer_orders_sql(conn)})",
            {"cutoff": features.snapshot_cutoff(end)},
        ).df()
        persons = pd.read_parquet(
            out / "ground_truth" / "persons.parquet", columns=["person_id", "dropout_date"]
        )
    config = load_churn_config()
    result = timed("churn fit + score", steps, lambda: fit_churn(frame, purchases, as_of, config))
    truth = result.scores.merge(persons, left_on="customer_key", right_on="person_id")
    dropped = (pd.to_datetime(truth["dropout_date"]) <= pd.Timestamp(as_of)).to_numpy(dtype=int)
    probability = truth["churn_probability"].to_numpy()
    vs_truth = {
        column: {
            "auc": round(float(roc_auc_score(dropped, truth[column])), 4),
            "brier": round(float(brier_score_loss(dropped, truth[column])), 4),
            "mean_predicted": round(float(truth[column].mean()), 4),
        }
        for column in ("churn_probability", "survival_churn_probability", "classifier_churn_probability")
    }
    summary = {
        "persons": args.persons,
        "snapshots": [s.isoformat() for s in snapshots],
        "scored_snapshot": as_of.isoformat(),
        "buyers_scored": int(len(result.scores)),
        "true_dropout_rate": round(float(dropped.mean()), 4),
        "base_rate_brier_vs_truth": round(float(dropped.mean() * (1 - dropped.mean())), 4),
        "champion": result.champion,
        "champion_vs_truth": vs_truth["churn_probability"],
        "each_model_vs_truth": vs_truth,
        "holdout": {
            m.name: {k: round(m.metrics[k], 4) for k in ("auc", "brier", "base_rate_brier", "log_loss")}
            for m in result.models
        },
        "validation_scheme": result.validation_scheme,
        "training_rows": {m.name: m.n_training_rows for m in result.models},
        "steps": steps,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "python": platform.python_version(),
            "cpus": psutil.cpu_count(),
            "platform": platform.platform(),
        },
    }
    champion = vs_truth["churn_probability"]
    print(
        f"\n{args.persons:,} persons, {len(result.scores):,} buyers scored at {as_of}; champion {result.champion}: "
        f"AUC vs truth {champion['auc']:.3f}, Brier {champion['brier']:.4f} "
        f"(base rate {summary['base_rate_brier_vs_truth']:.4f}); load {summary['load_average_at_end']}"
    )
    assert np.isfinite(probability).all()
    path = RESULTS / f"churn-truth-{args.persons}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
