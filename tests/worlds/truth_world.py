"""Raw tables straight from generated landing files, keyed by the generator's TRUE identities.

Churn judged against the ground truth must not inherit identity-resolution errors, so the
churn truth test and `benchmarks/bench_churn_truth.py` load the same way.
"""

from pathlib import Path

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.core import warehouse


def load_raw_with_true_keys(out: Path, conn) -> None:
    conn.execute("CREATE SCHEMA raw")
    for contract in CONTRACTS.values():
        if contract.person_ref is None:  # marketing spend: no customers in it
            continue
        casts = ", ".join(
            f"TRY_CAST({warehouse.quote(c.name)} AS {c.duckdb_type}) AS {warehouse.quote(c.name)}"
            for c in contract.columns
        )
        conn.execute(
            f"CREATE TABLE raw.{contract.name} AS SELECT {casts} FROM read_csv('{out}/landing/{contract.name}/*.csv', "
            "all_varchar = true, header = true, union_by_name = true)"
        )
    conn.execute("CREATE SCHEMA identity")
    conn.execute(
        "CREATE TABLE identity.customer_key_map AS SELECT source, source_id, person_id AS customer_key "
        f"FROM '{out}/ground_truth/identity.parquet'"
    )
