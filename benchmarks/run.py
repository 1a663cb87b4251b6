"""Scale run: generate + every pipeline job in-process, per-asset wall time and peak RSS.

    python -m benchmarks.run --scale 100000 [--start 2024-01-01 --end 2025-12-31]

Peak RSS is sampled every 20 ms from this process (the in-process executor runs every
step here) and attributed to the step whose start/end window contains the sample.
"""

import argparse
import json
import os
import platform
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import psutil

RESULTS = Path(__file__).resolve().parent / "results"


class RssSampler:
    def __init__(self, interval: float = 0.02):
        self.samples: list[tuple[float, int]] = []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._process.memory_info().rss))
            time.sleep(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak_between(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def step_windows(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    starts, windows = {}, []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            windows.append((event.step_key, starts[event.step_key], entry.timestamp))
    return windows


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=10_000, help="persons in the synthetic population")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / "work")
    args = parser.parse_args(argv)
    # Partitions are fixed when the definitions load: start them where the data starts.
    os.environ["SEGMENTATION_START_DATE"] = args.start.isoformat()
    from segmentation_platform.demo import run_pipeline
    from segmentation_platform.synthetic.generator import generate

    data_dir = args.work / f"scale-{args.scale}"
    shutil.rmtree(data_dir, ignore_errors=True)
    rows = []
    with RssSampler() as sampler:
        began = time.time()
        summary = generate(
            out_dir=data_dir, persons=args.scale, start=args.start, end=args.end, seed=args.seed
        )
        rows.append(("generate", time.time() - began, sampler.peak_between(began, time.time())))
        with dg.DagsterInstance.ephemeral() as instance:
            results = run_pipeline(data_dir, args.start, args.end, print, instance)
            for result in results:
                for step, start, end in step_windows(instance, result.run_id):
                    rows.append((step, end - start, sampler.peak_between(start, end)))
    ok = bool(results) and all(r.success for r in results)
    print(
        f"\nscale: {args.scale:,} persons, {args.start} .. {args.end}; {platform.node()} {psutil.cpu_count()} cpus"
    )
    print(f"{'step':<40} {'wall s':>9} {'peak RSS MiB':>13}")
    for step, seconds, rss in rows:
        print(f"{step:<40} {seconds:>9.1f} {rss / 2**20:>13.0f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pipeline-{args.scale}.json"
    out.write_text(
        json.dumps(
            {
                "scale_persons": args.scale,
                "start": args.start.isoformat(),
                "end": args.end.isoformat(),
                "cpus": psutil.cpu_count(),
                "success": ok,
                "generated": str(summary),
                "steps": [
                    {"step": s, "wall_seconds": round(w, 2), "peak_rss_mib": round(r / 2**20)}
                    for s, w, r in rows
                ],
            },
            indent=2,
        )
    )
    print(f"saved {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
