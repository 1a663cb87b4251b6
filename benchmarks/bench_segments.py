"""Segment-stage benchmark: churn scoring + behavioural clustering + segment assignment at scale.

    .venv/bin/python benchmarks/bench_segments.py                    # 1M customers
    .venv/bin/python benchmarks/bench_segments.py --customers 100000

A feature panel shaped exactly like `features.customer_features` is synthesized (the last
weekly snapshot holds every customer; earlier snapshots keep a 10% customer sample, which
is all the churn model trains on anyway) together with the purchase log, RFM scores and
CLTV. Synthesis is not timed. Timed, in order, on the pure core functions the Dagster
assets call: churn (label, validate both models, pick the champion, score every buyer),
clustering (choose k, fit, assign every buyer, match ids to the previous snapshot) and
segment assignment + profiles for every customer. Goal: <= 120 s for the three at 1M.
Results: a table on stdout and JSON in benchmarks/results/segments.json.
"""

import argparse
import json
import platform
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segmentation_platform.core.models import rfm  # noqa: E402
from segmentation_platform.core.models.churn import fit_churn, load_churn_config  # noqa: E402
from segmentation_platform.core.models.clustering import fit_clusters, load_clustering_config  # noqa: E402
from segmentation_platform.core.segments import assign_segments, load_scheme, segment_profiles  # noqa: E402
from segmentation_platform.synthetic.behaviour_panel import simulate_panel  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "segments.json"
BUDGET_SECONDS = 120.0


class PeakRss:
    """Peak resident memory of this process while a block runs, sampled every 50 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def timed(label: str, rows: dict, fn):
    with PeakRss() as rss:
        began = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - began
    rows[label] = {"seconds": round(seconds, 2), "peak_rss_mb": round(rss.peak / 2**20)}
    print(f"{label:<28} {seconds:8.1f} s   peak RSS {rss.peak / 2**20:8.0f} MB", flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--history-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    snapshots = [date(2025, 1, 6) + timedelta(weeks=i) for i in range(40)]
    as_of, previous = snapshots[-14], snapshots[-15]
    print(f"synthesizing {args.customers:,} customers, {len(snapshots)} weekly snapshots ...", flush=True)
    began = time.perf_counter()
    # Purchases run 13 weeks past the scored snapshot: the model never sees them, the
    # out-of-time check below does.
    panel = simulate_panel(
        args.customers,
        snapshots,
        seed=args.seed,
        history_fraction=args.history_fraction,
        full_snapshots=[previous, as_of],
    )
    features = panel.features[panel.features["snapshot_date"] <= pd.Timestamp(as_of)]
    current = features[features["snapshot_date"] == pd.Timestamp(as_of)]
    last_week = features[features["snapshot_date"] == pd.Timestamp(previous)]
    rfm_scores = rfm.score_rfm(
        current[["snapshot_date", "customer_key", "recency_days", "frequency", "monetary_total"]]
    ).to_pandas()
    buyers = current[current["frequency"] > 0]
    clv = pd.DataFrame(
        {
            "customer_key": buyers["customer_key"].to_numpy(),
            "cltv": (buyers["monetary_total"] / (1 + buyers["recency_days"].astype(float) / 90)).to_numpy(),
        }
    )
    synth_seconds = time.perf_counter() - began
    print(
        f"synthesized in {synth_seconds:.0f} s: {len(current):,} customers at {as_of}, "
        f"{len(features) - len(current) - len(last_week):,} sampled history rows, {len(panel.purchases):,} purchases",
        flush=True,
    )

    churn_config, clustering_config, scheme = load_churn_config(), load_clustering_config(), load_scheme()
    steps: dict[str, dict] = {}
    print(f"\n{'step':<28} {'wall':>10}", flush=True)
    churn = timed(
        "churn fit + score", steps, lambda: fit_churn(features, panel.purchases, as_of, churn_config)
    )
    prior = fit_clusters(last_week, previous, clustering_config)  # untimed: last week's run
    clusters = timed(
        "behaviour clustering",
        steps,
        lambda: fit_clusters(current, as_of, clustering_config, prior.centroids()),
    )
    sources = {
        "features": current,
        "rfm": rfm_scores,
        "clv": clv,
        "churn": churn.scores,
        "clusters": clusters.assignments,
    }
    assigned = timed("segment assignment", steps, lambda: assign_segments(scheme, sources, as_of))
    profiles = timed(
        "segment profiles", steps, lambda: segment_profiles(scheme, assigned.assignments, sources, as_of)
    )
    total = sum(step["seconds"] for step in steps.values())
    print(f"{'total':<28} {total:8.1f} s   (budget {BUDGET_SECONDS:.0f} s)")

    champion = churn.champion_report
    truth = churn.scores.merge(panel.truth[["customer_key", "dropout_at"]], on="customer_key")
    dropped = (truth["dropout_at"] <= pd.Timestamp(as_of)).to_numpy(dtype=int)
    from sklearn.metrics import brier_score_loss, roc_auc_score

    # The panel's truth: dropped out before the snapshot (its dropout may precede any repeat
    # purchase, unlike BG/NBD's; benchmarks/bench_churn_truth.py judges on the generator's).
    out_of_time = {
        "auc": float(roc_auc_score(dropped, truth["churn_probability"])),
        "brier": float(brier_score_loss(dropped, truth["churn_probability"])),
        "base_rate_brier": float(dropped.mean() * (1 - dropped.mean())),
    }
    summary = {
        "customers": int(len(current)),
        "buyers_scored": int(len(churn.scores)),
        "history_rows": int(len(features) - len(current) - len(last_week)),
        "purchases": int(len(panel.purchases)),
        "steps": steps,
        "total_seconds": round(total, 2),
        "budget_seconds": BUDGET_SECONDS,
        "within_budget": total <= BUDGET_SECONDS,
        "churn": {
            "champion": churn.champion,
            "validation_scheme": churn.validation_scheme,
            "holdout": {
                m.name: {k: round(m.metrics[k], 4) for k in ("auc", "brier", "base_rate_brier", "log_loss")}
                for m in churn.models
            },
            "vs_panel_truth": {k: round(v, 4) for k, v in out_of_time.items()},
            "fit_seconds": {m.name: m.parameters.get("fit_seconds") for m in churn.models},
            "training_rows": {m.name: m.n_training_rows for m in churn.models},
        },
        "clusters": {
            "k": clusters.k,
            "silhouette": round(clusters.silhouette, 4),
            "kept_ids": sorted(clusters.matched),
            "new_ids": clusters.new_clusters,
        },
        "segments": profiles.set_index("action_segment")["customers"].astype(int).to_dict(),
        "synthesis_seconds": round(synth_seconds, 1),
        "machine": {
            "python": platform.python_version(),
            "cpus": psutil.cpu_count(),
            "platform": platform.platform(),
        },
        "threads_per_process": churn_config.threads,
    }
    print(
        f"\nchurn champion {champion.name}: holdout AUC {champion.metrics['auc']:.3f}, Brier "
        f"{champion.metrics['brier']:.3f} (base rate {champion.metrics['base_rate_brier']:.3f}); vs panel truth "
        f"AUC {out_of_time['auc']:.3f}, Brier {out_of_time['brier']:.3f} (base rate {out_of_time['base_rate_brier']:.3f})"
    )
    print(
        f"clusters: k={clusters.k}, silhouette {clusters.silhouette:.3f}, ids kept {sorted(clusters.matched)}"
    )
    print("segments: " + ", ".join(f"{k} {v:,}" for k, v in summary["segments"].items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"-> {args.output}")
    return 0 if summary["within_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
