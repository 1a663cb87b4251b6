"""Backfill wall time through a real instance: `dagster dev`, its daemon and run queue.

    python -m benchmarks.bench_backfill [--persons 2000] [--days 60] [--weeks 26]

Generates `persons` over `days` days from 2025-01-01, starts `dagster dev` on a temporary
DAGSTER_HOME holding the repo's dagster.yaml, and does what an operator does: a backfill of
the days (`daily_ingestion`), the identity run, a backfill of the first `weeks` weekly
snapshots, each once the previous one finished. Snapshots past the last day of data see no
new data. Per stage it records the wall time from launch to "backfill completed" and splits
it into daemon pickup (launch -> run created), queue, run, and completion lag (run end ->
backfill marked done: the backfill daemon ticks every 30 s), and over all runs the failed
ones and any DuckDB lock error in their logs (the run fails the benchmark).
Results go to benchmarks/results/backfill.json.
"""

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def _harness():
    """The e2e harness (tests/e2e/conftest.py), so the benchmark drives what the tests drive."""
    spec = importlib.util.spec_from_file_location("e2e_harness", REPO_ROOT / "tests" / "e2e" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage_figures(result) -> dict:
    runs = result.runs
    figures = {
        "status": result.status,
        "wall_seconds": round(result.seconds, 1),
        "runs": len(runs),
        "partitions": len(result.stage.partitions),
    }
    created = [r["creationTime"] for r in runs]
    started = [r["startTime"] for r in runs if r["startTime"]]
    ended = [r["endTime"] for r in runs if r["endTime"]]
    if result.backfill and created:
        figures["daemon_pickup_seconds"] = round(min(created) - result.backfill["timestamp"], 1)
    if created and started:
        figures["queued_seconds"] = round(min(started) - min(created), 1)
    if started and ended:
        figures["run_seconds"] = round(max(ended) - min(started), 1)
    if result.backfill and result.backfill.get("endTimestamp") and ended:
        figures["completion_lag_seconds"] = round(result.backfill["endTimestamp"] - max(ended), 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=60, help="daily partitions, from --start")
    parser.add_argument("--weeks", type=int, default=26, help="weekly snapshots, the first ones from --start")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per stage")
    args = parser.parse_args(argv)
    harness = _harness()
    end = args.start + timedelta(days=args.days - 1)

    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as work:
        work = Path(work)
        began = time.perf_counter()
        data = harness.generate_data(work / "data", args.persons, args.start, end, args.seed)
        generate_seconds = time.perf_counter() - began
        print(f"generated {args.persons:,} persons, {args.start} .. {end} in {generate_seconds:.1f}s")
        load = os.getloadavg()
        server = harness.DagsterDev(data, work / "dagster_home")
        began = time.perf_counter()
        server.start()
        try:
            startup_seconds = time.perf_counter() - began
            print(f"dagster dev ready in {startup_seconds:.1f}s at {server.url}")
            stages = server.plan_stages(lambda keys: keys[: args.weeks])
            for stage in stages:
                if stage.skip_reason:
                    print(f"skipping {stage.name}: {stage.skip_reason}")
            results = {}
            for stage in stages:
                if stage.skip_reason:
                    continue
                result = server.run_stages([stage], args.timeout)[stage.name]
                results[stage.name] = result
                print(f"{stage.name}: {result.status} in {result.seconds:.1f}s ({len(result.runs)} run(s))")
                if not result.succeeded:
                    print(server.explain(result))
                    break
            # Every run of the instance, read from its event log and captured output.
            all_runs = server.runs()
            failed_runs = [run["runId"] for run in all_runs if run["status"] != "SUCCESS"]
            lock_errors = sum(len(server.lock_errors(run["runId"])) for run in all_runs)
        finally:
            server.stop()

    backfills = [results[name] for name in ("daily", "weekly") if name in results]
    entry = {
        "scale": {
            "persons": args.persons,
            "daily_partitions": args.days,
            "weekly_partitions": next((len(s.partitions) for s in stages if s.name == "weekly"), 0),
            "period": [args.start.isoformat(), end.isoformat()],
            "seed": args.seed,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load],
            "python": platform.python_version(),
        },
        "generate_seconds": round(generate_seconds, 1),
        "dagster_dev_startup_seconds": round(startup_seconds, 1),
        "stages": {name: _stage_figures(result) for name, result in results.items()},
        "skipped": {s.name: s.skip_reason for s in stages if s.skip_reason},
        "backfills_wall_seconds": round(sum(r.seconds for r in backfills), 1),
        "pipeline_wall_seconds": round(sum(r.seconds for r in results.values()), 1),
        "runs": len(all_runs),
        "failed_runs": failed_runs,
        "lock_errors": lock_errors,
        "succeeded": all(r.succeeded for r in results.values())
        and not any(s.skip_reason for s in stages)
        and not failed_runs
        and not lock_errors,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "backfill.json"
    out.write_text(json.dumps({"benchmark": "backfill", **entry}, indent=2) + "\n")
    print(json.dumps(entry, indent=2))
    print(f"-> {out}")
    return 0 if entry["succeeded"] else 1


if __name__ == "__main__":
    sys.exit(main())
