"""Scale run of the synthetic generator: wall time, CPU time, peak memory and rows per source.

    .venv/bin/python benchmarks/bench_generate.py --persons 100000 --start 2024-01-01 --end 2025-12-31

Prints a table and writes benchmarks/results/generate.json. The target is 100k persons over
two years in at most 60 s on a 2-core machine; the load average is recorded because other
work on the machine skews wall time (CPU time does not).
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from segmentation_platform.synthetic.generator import generate

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"
TARGET_SECONDS = 60.0


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out", type=Path, help="output folder (default: a temporary one, removed afterwards)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_generate_"))
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    summary = generate(
        out,
        args.persons,
        args.start,
        args.end,
        seed=args.seed,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _peak_rss_mb()
    landing_bytes = _bytes_under(out / "landing")
    truth_bytes = _bytes_under(out / "ground_truth")
    if args.out is None:
        shutil.rmtree(out)

    result = {
        "persons": args.persons,
        "start": args.start.isoformat(),
        "end": args.end.isoformat(),
        "seed": args.seed,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak, 1),
        "target_seconds": TARGET_SECONDS,
        "within_target": wall <= TARGET_SECONDS,
        "total_rows": summary.total_rows,
        "rows_per_second": round(summary.total_rows / wall),
        "broken_rows": summary.total_broken_rows,
        "identity_records": summary.identity_records,
        "landing_mb": round(landing_bytes / 2**20, 1),
        "ground_truth_mb": round(truth_bytes / 2**20, 1),
        "sources": {
            name: {"rows": s.rows, "broken_rows": s.broken_rows, "files": s.files}
            for name, s in summary.sources.items()
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load_before],
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    print()
    print(f"{'source':<18} {'rows':>12} {'broken':>8} {'files':>6}")
    for name, s in result["sources"].items():
        print(f"{name:<18} {s['rows']:>12,} {s['broken_rows']:>8,} {s['files']:>6,}")
    print(f"{'total':<18} {result['total_rows']:>12,} {result['broken_rows']:>8,}")
    print(
        f"\nwall {result['wall_seconds']} s (target {TARGET_SECONDS:.0f} s), cpu {result['cpu_seconds']} s, "
        f"peak RSS {result['peak_rss_mb']} MB, {result['rows_per_second']:,} rows/s, "
        f"landing {result['landing_mb']} MB, load before {result['machine']['load_average_before']}"
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
