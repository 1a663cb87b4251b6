"""Feature snapshot (and RFM scoring) at scale: 1M customers, ~3M orders.

The raw tables and the identity key map are synthesized directly in DuckDB with
`range()` (no landing files, no identity run), so the figure measures the feature query
alone. The measurement runs in a fresh child process: its peak RSS is the snapshot's,
not the synthesis's.

    .venv/bin/python -m benchmarks.bench_features [--customers 1000000]

Writes benchmarks/results/features.json.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import warehouse
from segmentation_platform.core.features import compute_customer_features, feature_columns
from segmentation_platform.core.ingestion import raw_table_columns
from segmentation_platform.core.models.rfm import RFM_SCORES_SCHEMA, score_rfm

HERE = Path(__file__).resolve().parent
WORK_DIR = HERE / "work"
RESULTS = HERE / "results" / "features.json"
SNAPSHOT = date(2026, 1, 5)
# Two years of history before the snapshot, in seconds.
SPAN_SECONDS = 730 * 86400
CATEGORIES = "['apparel', 'shoes', 'bags', 'beauty', 'home', 'electronics', 'toys', 'sports']"
CHANNELS = "['organic', 'paid_search', 'social', 'email', 'referral', 'affiliate']"


def _rand(seed_sql: str, salt: str) -> str:
    """Uniform [0, 1) from a stable hash: reproducible under parallel execution, unlike random()."""
    return f"((hash({seed_sql}, '{salt}') % 1000000) / 1000000.0)"


def _at(seed_sql: str, salt: str) -> str:
    return (
        f"(TIMESTAMP '2024-01-06' + to_seconds(CAST(hash({seed_sql}, '{salt}') % {SPAN_SECONDS} AS BIGINT)))"
    )


def synthesize(conn: duckdb.DuckDBPyConnection, customers: int) -> dict[str, int]:
    """Raw tables shaped like the contracts plus a key map: ~2.0 web + ~1.1 POS orders per customer."""
    for contract in CONTRACTS.values():
        warehouse.ensure_table(conn, f"raw.{contract.name}", raw_table_columns(contract))
    web_customers = int(customers * 0.7)
    loyalty_start = int(customers * 0.5)
    meta = (
        "CAST({at} AS DATE) AS _partition_date, 'bench.csv' AS _source_file, n AS _line, now() AS _loaded_at"
    )
    # Skewed customer choice: u^2 makes low indexes frequent buyers, as in real shops.
    conn.execute(f"""
        INSERT INTO raw.web_orders BY NAME
        SELECT 'O' || n AS order_id,
               'A' || CAST(floor({web_customers} * pow({_rand("n", "who")}, 2)) AS BIGINT) AS account_id,
               {_at("n", "when")} AS ordered_at,
               round(5 + 195 * {_rand("n", "amount")}, 2) AS amount,
               {CATEGORIES}[1 + CAST(hash(n, 'cat') % 8 AS INTEGER)] AS category,
               round((5 + 195 * {_rand("n", "amount")}) * 0.55, 2) AS cost,
               CASE WHEN {_rand("n", "disc")} < 0.25 THEN round(10 * {_rand("n", "d2")}, 2) ELSE 0 END AS discount,
               1 + CAST(hash(n, 'items') % 5 AS BIGINT) AS items,
               CASE WHEN {_rand("n", "acq")} < 0.6 THEN {CHANNELS}[1 + CAST(hash(n, 'ch') % 6 AS INTEGER)] END
                   AS acquisition_channel,
               {meta.format(at=_at("n", "when"))}
        FROM range({2 * customers}) r(n)
    """)
    # Receipts: 25% anonymous, 5% identified by phone only (person_ref 'receipt:<id>').
    conn.execute(f"""
        INSERT INTO raw.pos_transactions BY NAME
        SELECT 'R' || n AS receipt_id, 'S' || (hash(n, 'store') % 120) AS store_id,
               {_at("n", "pwhen")} AS purchased_at,
               round(3 + 120 * {_rand("n", "pamount")}, 2) AS amount,
               CASE WHEN kind >= 0.30 THEN 'L' || ({loyalty_start} + CAST(
                   floor({customers - loyalty_start} * pow({_rand("n", "pwho")}, 2)) AS BIGINT)) END AS loyalty_id,
               CASE WHEN kind >= 0.25 AND kind < 0.30 THEN '+1555' || lpad(CAST(n AS VARCHAR), 7, '0') END AS phone,
               {CATEGORIES}[1 + CAST(hash(n, 'pcat') % 8 AS INTEGER)] AS category,
               round((3 + 120 * {_rand("n", "pamount")}) * 0.6, 2) AS cost,
               0.0 AS discount, 1 AS items,
               {meta.format(at=_at("n", "pwhen"))}
        FROM (SELECT n, {_rand("n", "kind")} AS kind FROM range({int(1.1 * customers)}) r(n))
    """)
    conn.execute(f"""
        INSERT INTO raw.crm_contacts BY NAME
        SELECT 'K' || i AS contact_id,
               {_at("i * 10 + v", "crm")} AS updated_at,
               {_rand("i * 10 + v", "ec")} < 0.7 AS email_consent,
               {_rand("i * 10 + v", "sc")} < 0.3 AS sms_consent,
               CASE WHEN v = 0 THEN {CHANNELS}[1 + CAST(hash(i, 'cch') % 6 AS INTEGER)] END AS acquisition_channel,
               CAST({_at("i * 10 + v", "crm")} AS DATE) AS _partition_date, 'bench.csv' AS _source_file,
               i * 10 + v AS _line, now() AS _loaded_at
        FROM range({customers}) r(i), range(2) s(v)
        WHERE i % 5 <> 0 AND (v = 0 OR i % 3 = 0)
    """)
    conn.execute(f"""
        INSERT INTO raw.email_events BY NAME
        SELECT 'E' || n AS event_id, {_at("n", "ewhen")} AS occurred_at,
               CASE WHEN u < 0.60 THEN 'send' WHEN u < 0.85 THEN 'open' WHEN u < 0.95 THEN 'click'
                    WHEN u < 0.97 THEN 'unsubscribe' ELSE 'bounce' END AS event_type,
               'S' || (3 * CAST(floor({customers // 3} * {_rand("n", "ewho")}) AS BIGINT) + 1) AS subscriber_id,
               'M' || (hash(n, 'camp') % 200) AS campaign_id,
               {meta.format(at=_at("n", "ewhen"))}
        FROM (SELECT n, {_rand("n", "etype")} AS u FROM range({2 * customers}) r(n))
    """)
    conn.execute(f"""
        INSERT INTO raw.support_tickets BY NAME
        SELECT 'T' || n AS ticket_id, {_at("n", "twhen")} AS created_at,
               'K' || (5 * CAST(floor({customers // 5} * {_rand("n", "twho")}) AS BIGINT) + 1) AS contact_id,
               CASE WHEN {_rand("n", "rated")} < 0.5 THEN 1 + CAST(hash(n, 'sat') % 5 AS BIGINT) END
                   AS satisfaction,
               {meta.format(at=_at("n", "twhen"))}
        FROM range({customers // 7}) r(n)
    """)
    key = "'C' || lpad(CAST({i} AS VARCHAR), 10, '0')"
    conn.execute("CREATE SCHEMA IF NOT EXISTS identity")
    conn.execute(f"""
        CREATE OR REPLACE TABLE identity.customer_key_map AS
        SELECT 'web_orders' AS source, 'A' || i AS source_id, {key.format(i="i")} AS customer_key
            FROM range({web_customers}) r(i)
        UNION ALL SELECT 'pos_transactions', 'L' || i, {key.format(i="i")}
            FROM range({loyalty_start}, {customers}) r(i)
        UNION ALL SELECT 'pos_transactions', 'receipt:' || receipt_id,
                {key.format(i=f"hash(receipt_id) % {customers}")}
            FROM raw.pos_transactions WHERE loyalty_id IS NULL AND phone IS NOT NULL
        UNION ALL SELECT 'crm_contacts', 'K' || i, {key.format(i="i")}
            FROM range({customers}) r(i) WHERE i % 5 <> 0
        UNION ALL SELECT 'email_events', 'S' || i, {key.format(i="i")}
            FROM range({customers}) r(i) WHERE i % 3 = 1
        UNION ALL SELECT 'support_tickets', ticket_id, {key.format(i="CAST(substr(contact_id, 2) AS BIGINT)")}
            FROM raw.support_tickets
    """)
    tables = [f"raw.{name}" for name in CONTRACTS] + ["identity.customer_key_map"]
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in tables}


def measure(database: Path, threads: int | None) -> dict:
    """Features then RFM for one snapshot, timed; run in its own process for a clean peak RSS."""
    conn = duckdb.connect(str(database))
    if threads:
        conn.execute(f"SET threads = {threads}")
    began = time.perf_counter()
    features = compute_customer_features(conn, SNAPSHOT)
    features_seconds = time.perf_counter() - began
    began = time.perf_counter()
    warehouse.replace_partitions(
        conn, "features.customer_features", features, "snapshot_date", [SNAPSHOT], columns=feature_columns()
    )
    write_seconds = time.perf_counter() - began
    began = time.perf_counter()
    scores = score_rfm(
        features.select(["snapshot_date", "customer_key", "recency_days", "frequency", "monetary_total"])
    )
    rfm_seconds = time.perf_counter() - began
    began = time.perf_counter()
    warehouse.replace_partitions(
        conn,
        RFM_SCORES_SCHEMA.table,
        scores,
        "snapshot_date",
        [SNAPSHOT],
        columns=RFM_SCORES_SCHEMA.sql_columns,
    )
    rfm_write_seconds = time.perf_counter() - began
    stages = dict(
        conn.execute(
            "SELECT lifecycle_stage, count(*) FROM features.customer_features WHERE snapshot_date = ? "
            "GROUP BY 1 ORDER BY 1",
            [SNAPSHOT],
        ).fetchall()
    )
    conn.close()
    return {
        "feature_rows": features.num_rows,
        "feature_columns": features.num_columns,
        "rfm_rows": scores.num_rows,
        "features_seconds": round(features_seconds, 2),
        "features_write_seconds": round(write_seconds, 2),
        "rfm_seconds": round(rfm_seconds, 2),
        "rfm_write_seconds": round(rfm_write_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "lifecycle_stages": stages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--budget-seconds", type=float, default=30.0, help="fail above this feature time")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.threads)))
        return 0

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    database = WORK_DIR / f"features_{args.customers}.duckdb"
    database.unlink(missing_ok=True)
    began = time.perf_counter()
    with duckdb.connect(str(database)) as conn:
        rows = synthesize(conn, args.customers)
    synth_seconds = time.perf_counter() - began
    print(f"synthesized in {synth_seconds:.1f}s: " + ", ".join(f"{t}={n:,}" for t, n in rows.items()))

    command = [sys.executable, "-m", "benchmarks.bench_features", "--measure", str(database)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    # Other work on the machine slows the figure down: record how busy it was.
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    child = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent, check=False)
    if child.returncode != 0:
        print(child.stderr, file=sys.stderr)
        return child.returncode
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    figures["process_seconds"] = round(time.perf_counter() - began, 2)
    result = {
        "benchmark": "features",
        "snapshot_date": SNAPSHOT.isoformat(),
        "customers": args.customers,
        "input_rows": rows,
        "synthesis_seconds": round(synth_seconds, 1),
        **figures,
        "budget_seconds": args.budget_seconds,
        "within_budget": figures["features_seconds"] <= args.budget_seconds,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "platform": platform.platform(),
            "load_average_1m_before": round(load_before, 2),
            "load_average_1m_after": round(os.getloadavg()[0], 2),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"features: {figures['feature_rows']:,} customers x {figures['feature_columns']} columns in "
        f"{figures['features_seconds']}s (write {figures['features_write_seconds']}s); "
        f"RFM {figures['rfm_rows']:,} rows in {figures['rfm_seconds']}s (write {figures['rfm_write_seconds']}s); "
        f"peak RSS {figures['peak_rss_mb']} MB -> {RESULTS.relative_to(HERE.parent)}"
    )
    database.unlink(missing_ok=True)
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
