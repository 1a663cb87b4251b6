"""Identity resolution at scale, and its accuracy against the generator's ground truth.

Two runs on synthetic data from `segmentation_platform.synthetic.generator` (one year):

- accuracy: 100k persons (~265k source records). Pairwise and B-cubed precision/recall
  against `ground_truth/identity.parquet`, next to the *evidence ceiling*: the recall an
  oracle reaches joining a person's records whenever they share any identifier, a
  cross-reference or both carry a name. Records of one person with nothing in common
  cannot be joined by any method; the generator gives every identifying record realistic
  evidence, so the ceiling is close to 1 and the bar is absolute: precision >= 0.995 and
  recall >= 0.99. A re-run on unchanged input must change no key.
- scale: 400k persons (~1.1M source records), wall time and peak RSS of
  `resolve_identities` alone (model training included), budget 5 min and 8 GiB.

Landing CSVs are loaded into a DuckDB file first (read_csv, rows that do not parse are
dropped: a stand-in for ingestion). Each resolve runs in a fresh child process whose
peak RSS (os.wait4) is the resolve's own, with DuckDB's memory_limit at 5GB.

    .venv/bin/python -m benchmarks.bench_identity [--accuracy-persons 100000]
        [--scale-persons 400000] [--write-default-model]

`--write-default-model` also saves the model trained on the accuracy run as the packaged
default (config/identity_model.json) used for data sets too small to train on.
Writes benchmarks/results/identity.json.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from segmentation_platform.contracts import CONTRACTS

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "work" / "identity"
RESULTS = HERE / "results" / "identity.json"
DEFAULT_MODEL = HERE.parent / "segmentation_platform" / "config" / "identity_model.json"
PERSON_SOURCES = ("web_orders", "pos_transactions", "crm_contacts", "support_tickets", "email_events")
METADATA_COLUMNS = {
    "_partition_date": "DATE",
    "_source_file": "VARCHAR",
    "_line": "BIGINT",
    "_loaded_at": "TIMESTAMP",
}
START, END = dt.date(2024, 1, 1), dt.date(2024, 12, 31)
TIME_BUDGET_SECONDS = 300
PRECISION_BAR, RECALL_BAR = 0.995, 0.99  # pairwise, against the ground truth
RSS_BUDGET_MB = 8 * 1024


def load_landing_into_raw(conn: duckdb.DuckDBPyConnection, landing_dir: Path) -> dict[str, int]:
    """Typed raw tables from landing CSVs; rows whose required columns do not parse are dropped."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    loaded = {}
    for source in PERSON_SOURCES:
        contract = CONTRACTS[source]
        columns = {c.name: c.duckdb_type for c in contract.columns} | METADATA_COLUMNS
        conn.execute(
            f"CREATE OR REPLACE TABLE raw.{source} ("
            + ", ".join(f'"{n}" {t}' for n, t in columns.items())
            + ")"
        )
        typed = ", ".join(
            f'NULLIF("{c.name}", \'\') AS "{c.name}"'
            if c.duckdb_type == "VARCHAR"
            else f'TRY_CAST(NULLIF(trim("{c.name}"), \'\') AS {c.duckdb_type}) AS "{c.name}"'
            for c in contract.columns
        )
        required = " AND ".join(f'"{c}" IS NOT NULL' for c in contract.required_columns)
        conn.execute(
            f"""
            INSERT INTO raw.{source} BY NAME
            SELECT * EXCLUDE (_file),
                   CAST(regexp_extract(_file, '(\\d{{4}}-\\d{{2}}-\\d{{2}})', 1) AS DATE) AS _partition_date,
                   _file AS _source_file, NULL::BIGINT AS _line, now()::TIMESTAMP AS _loaded_at
            FROM (
                SELECT {typed}, filename AS _file
                FROM read_csv('{landing_dir / source}/*.csv', header = true, all_varchar = true,
                              ignore_errors = true, filename = true, union_by_name = true)
            )
            WHERE {required}
            """
        )
        loaded[source] = conn.execute(f"SELECT count(*) FROM raw.{source}").fetchall()[0][0]
    return loaded


def prepare(persons: int, seed: int) -> tuple[Path, dict]:
    """Generate (once) and load (once) a data set; returns the warehouse path and sizes."""
    from segmentation_platform.synthetic.generator import generate

    folder = WORK_DIR / f"persons-{persons}-seed-{seed}"
    warehouse = folder / "warehouse.duckdb"
    info_path = folder / "prepared.json"
    if info_path.exists() and warehouse.exists():
        return warehouse, json.loads(info_path.read_text())
    started = time.perf_counter()
    summary = generate(folder / "data", persons, START, END, seed=seed)
    generated = time.perf_counter() - started
    warehouse.unlink(missing_ok=True)
    conn = duckdb.connect(str(warehouse))
    conn.execute("SET enable_progress_bar = false")
    started = time.perf_counter()
    rows = load_landing_into_raw(conn, folder / "data" / "landing")
    conn.execute(
        "CREATE OR REPLACE TABLE main.truth AS SELECT * FROM read_parquet(?)",
        [str(folder / "data" / "ground_truth" / "identity.parquet")],
    )
    conn.close()
    info = {
        "persons": persons,
        "seed": seed,
        "identity_records_in_truth": summary.identity_records,
        "raw_rows": rows,
        "generate_seconds": round(generated, 1),
        "load_seconds": round(time.perf_counter() - started, 1),
    }
    info_path.write_text(json.dumps(info, indent=2))
    return warehouse, info


def resolve_child(warehouse: Path, evaluate: bool, rerun: bool, model_out: Path | None) -> None:
    """Runs in the child process: resolve, optionally evaluate and re-run; JSON on stdout."""
    from segmentation_platform.core.identity import (
        clustering_accuracy,
        compare_key_maps,
        evidence_ceiling,
        resolve_identities,
    )

    run_copy = warehouse.with_name("run.duckdb")
    run_copy.unlink(missing_ok=True)
    shutil.copyfile(warehouse, run_copy)
    conn = duckdb.connect(str(run_copy))
    conn.execute("SET enable_progress_bar = false")
    conn.execute("SET memory_limit = '5GB'")
    started = time.perf_counter()
    result = resolve_identities(conn, now=dt.datetime(2025, 1, 1))
    out: dict = {
        "resolve_seconds": round(time.perf_counter() - started, 2),
        "metrics": result.metrics,
        "checks": {name: check.as_dict() for name, check in result.checks.items()},
    }
    if evaluate:
        out["accuracy"] = clustering_accuracy(conn, "identity.customer_key_map", "main.truth")
        out["ceiling"] = evidence_ceiling(conn, "main.truth")
    if model_out is not None and result.model_json:
        model_out.write_text(json.dumps(json.loads(result.model_json), indent=2, sort_keys=True) + "\n")
    if rerun:
        conn.execute("CREATE OR REPLACE TABLE main.first_key_map AS SELECT * FROM identity.customer_key_map")
        started = time.perf_counter()
        again = resolve_identities(conn, now=dt.datetime(2025, 1, 2))
        out["rerun_seconds"] = round(time.perf_counter() - started, 2)
        out["rerun_key_changes"] = {k: v for k, v in again.metrics.items() if k.startswith("keys_")}
        out["rerun_stability"] = compare_key_maps(
            conn, "main.first_key_map", "identity.customer_key_map"
        ).as_dict()
        out["rerun_model_version_unchanged"] = again.model_version == result.model_version
    conn.close()
    run_copy.unlink(missing_ok=True)
    print(json.dumps(out, default=str))


def run_in_child(warehouse: Path, evaluate: bool, rerun: bool, model_out: Path | None) -> dict:
    args = [sys.executable, "-m", "benchmarks.bench_identity", "--child", str(warehouse)]
    args += ["--evaluate"] if evaluate else []
    args += ["--rerun"] if rerun else []
    args += ["--model-out", str(model_out)] if model_out else []
    load_before = os.getloadavg()
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=HERE.parent)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"resolve child failed with status {status}")
    result = json.loads(output.decode().strip().splitlines()[-1])
    result["child_wall_seconds"] = round(time.perf_counter() - started, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: kilobytes
    # Machine load (1/5/15 min) around the run: other work on the machine slows every stage.
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accuracy-persons", type=int, default=100_000)
    parser.add_argument("--scale-persons", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--write-default-model", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rerun", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        resolve_child(args.child, args.evaluate, args.rerun, args.model_out)
        return 0

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    accuracy_db, accuracy_info = prepare(args.accuracy_persons, args.seed)
    accuracy = run_in_child(
        accuracy_db, evaluate=True, rerun=True, model_out=DEFAULT_MODEL if args.write_default_model else None
    )
    scale_db, scale_info = prepare(args.scale_persons, args.seed + 1)
    scale = run_in_child(scale_db, evaluate=False, rerun=False, model_out=None)

    measured, ceiling = accuracy["accuracy"], accuracy["ceiling"]
    report = {
        "benchmark": "identity",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
        },
        "period": [START.isoformat(), END.isoformat()],
        "accuracy_run": {
            **accuracy_info,
            "records": accuracy["metrics"]["records"],
            "customers": accuracy["metrics"]["customers"],
            "resolve_seconds": accuracy["resolve_seconds"],
            "peak_rss_mb": accuracy["peak_rss_mb"],
            "load_average": accuracy["load_average"],
            "accuracy": measured,
            "meets_accuracy_bar": measured["pairwise_precision"] >= PRECISION_BAR
            and measured["pairwise_recall"] >= RECALL_BAR,
            "evidence_ceiling": ceiling,
            "recall_share_of_ceiling": {
                "pairwise": measured["pairwise_recall"] / ceiling["pairwise_recall"],
                "bcubed": measured["bcubed_recall"] / ceiling["bcubed_recall"],
            },
            "rerun_seconds": accuracy["rerun_seconds"],
            "rerun_key_changes": accuracy["rerun_key_changes"],
            "rerun_stability": accuracy["rerun_stability"],
            "rerun_model_version_unchanged": accuracy["rerun_model_version_unchanged"],
            "metrics": accuracy["metrics"],
        },
        "scale_run": {
            **scale_info,
            "records": scale["metrics"]["records"],
            "customers": scale["metrics"]["customers"],
            "resolve_seconds": scale["resolve_seconds"],
            "peak_rss_mb": scale["peak_rss_mb"],
            "load_average": scale["load_average"],
            "within_budget": scale["resolve_seconds"] <= TIME_BUDGET_SECONDS
            and scale["peak_rss_mb"] <= RSS_BUDGET_MB,
            "checks": scale["checks"],
            "metrics": scale["metrics"],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    acc, scale = report["accuracy_run"], report["scale_run"]
    measured, ceiling = acc["accuracy"], acc["evidence_ceiling"]
    print(
        f"{'run':<10} {'persons':>9} {'records':>10} {'customers':>10} {'resolve s':>10} {'peak RSS MB':>12}"
    )
    for name, run in (("accuracy", acc), ("scale", scale)):
        print(
            f"{name:<10} {run['persons']:>9,} {run['records']:>10,} {run['customers']:>10,} "
            f"{run['resolve_seconds']:>10.1f} {run['peak_rss_mb']:>12,.0f}"
        )
    print(f"\n{'metric':<12} {'precision':>10} {'recall':>8} {'ceiling recall':>15} {'share':>7}")
    for kind in ("pairwise", "bcubed"):
        print(
            f"{kind:<12} {measured[f'{kind}_precision']:>10.4f} {measured[f'{kind}_recall']:>8.4f} "
            f"{ceiling[f'{kind}_recall']:>15.4f} {measured[f'{kind}_recall'] / ceiling[f'{kind}_recall']:>7.3f}"
        )
    stable = acc["rerun_stability"]["counts"]["records_with_changed_key"]
    print(f"accuracy bar (precision >= {PRECISION_BAR}, recall >= {RECALL_BAR}): {acc['meets_accuracy_bar']}")
    print(f"\nre-run on unchanged input: {stable} records changed key, {acc['rerun_seconds']:.1f} s")
    print(
        f"scale within budget (<= {TIME_BUDGET_SECONDS} s, <= {RSS_BUDGET_MB} MB): {scale['within_budget']}"
    )
    for name, run in (("accuracy", acc), ("scale", scale)):
        print(f"load average around the {name} run (1/5/15 min): {run['load_average']}")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
