"""Checks on identity outputs and accuracy against ground truth.

Each check returns pass/fail with the counts behind it, so the Dagster asset checks can
show numbers, not just a red light. Accuracy metrics count pairs from cluster sizes
(sum of n*(n-1)/2 over the contingency table), never by enumerating pairs, so they run
on a million records in a second.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb

from segmentation_platform.core.warehouse import tables


@dataclass
class CheckResult:
    name: str
    passed: bool
    counts: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Relation:
    """A table name or a DataFrame/Arrow table, usable in SQL for the duration of a block."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, relation, alias: str):
        self.conn, self.relation, self.alias = conn, relation, alias

    def __enter__(self) -> str:
        if isinstance(self.relation, str):
            return self.relation
        self.conn.register(self.alias, self.relation)
        return self.alias

    def __exit__(self, *exc) -> None:
        if not isinstance(self.relation, str):
            self.conn.unregister(self.alias)


def check_every_record_has_one_key(
    conn: duckdb.DuckDBPyConnection, records=tables.IDENTITY_RECORDS, key_map=tables.CUSTOMER_KEY_MAP
) -> CheckResult:
    """Every source record maps to exactly one customer key, and the map holds nothing else."""
    with _Relation(conn, records, "_check_records") as r, _Relation(conn, key_map, "_check_key_map") as m:
        n_records, unmapped, multiple, orphans, null_keys = conn.execute(
            f"""
            SELECT
                (SELECT count(*) FROM {r}),
                (SELECT count(*) FROM {r} x WHERE NOT EXISTS (
                    SELECT 1 FROM {m} k WHERE k.source = x.source AND k.source_id = x.source_id)),
                (SELECT count(*) FROM (SELECT source, source_id FROM {m} GROUP BY ALL HAVING count(*) > 1)),
                (SELECT count(*) FROM {m} k WHERE NOT EXISTS (
                    SELECT 1 FROM {r} x WHERE k.source = x.source AND k.source_id = x.source_id)),
                (SELECT count(*) FROM {m} WHERE customer_key IS NULL)
            """
        ).fetchall()[0]
    return CheckResult(
        name="every_record_has_one_key",
        passed=unmapped == 0 and multiple == 0 and orphans == 0 and null_keys == 0,
        counts={
            "records": n_records,
            "unmapped_records": unmapped,
            "records_with_several_keys": multiple,
            "key_map_rows_without_record": orphans,
            "null_keys": null_keys,
        },
        description="each (source, source_id) record has exactly one customer_key",
    )


def check_cluster_size_cap(
    conn: duckdb.DuckDBPyConnection, max_cluster_size: int, key_map=tables.CUSTOMER_KEY_MAP
) -> CheckResult:
    with _Relation(conn, key_map, "_check_key_map") as m:
        largest, over = conn.execute(
            f"""
            SELECT coalesce(max(n), 0), count(*) FILTER (WHERE n > {int(max_cluster_size)})
            FROM (SELECT customer_key, count(*) AS n FROM {m} GROUP BY customer_key)
            """
        ).fetchall()[0]
    return CheckResult(
        name="cluster_size_cap",
        passed=over == 0,
        counts={"largest_customer_records": largest, "customers_over_cap": over, "cap": max_cluster_size},
        description=f"no customer holds more than {max_cluster_size} source records",
    )


def check_keys_stable_unless_logged(
    conn: duckdb.DuckDBPyConnection,
    previous,
    changed_at,
    key_map=tables.CUSTOMER_KEY_MAP,
    changelog=tables.IDENTITY_CHANGELOG,
) -> CheckResult:
    """A record that had a key before keeps it unless the run of `changed_at` logged the
    merge, split or new key that moved it (`previous`: the key map before that run)."""
    with _Relation(conn, previous, "_previous_key_map") as p:
        unexplained = conn.execute(
            f"""
            SELECT count(*)
            FROM {p} p
            JOIN {key_map} c USING (source, source_id)
            WHERE p.customer_key <> c.customer_key
              AND c.customer_key NOT IN (
                  SELECT customer_key FROM {changelog}
                  WHERE changed_at = ? AND change_type IN ('merge', 'split', 'new')
              )
            """,
            [changed_at],
        ).fetchall()[0][0]
    return CheckResult(
        name="keys_stable_unless_logged",
        passed=unexplained == 0,
        counts={"records_changed_without_logged_merge_or_split": unexplained},
        description="every key change of a known record is logged in the changelog",
    )


def compare_key_maps(conn: duckdb.DuckDBPyConnection, previous, current) -> CheckResult:
    """Key stability between two key maps: passes when no shared record changed key."""
    with _Relation(conn, previous, "_prev_key_map") as p, _Relation(conn, current, "_curr_key_map") as c:
        shared, changed, added, removed, keys_before, keys_after = conn.execute(
            f"""
            SELECT
                count(*) FILTER (WHERE p.source IS NOT NULL AND c.source IS NOT NULL),
                count(*) FILTER (WHERE p.source IS NOT NULL AND c.source IS NOT NULL
                                 AND p.customer_key <> c.customer_key),
                count(*) FILTER (WHERE p.source IS NULL),
                count(*) FILTER (WHERE c.source IS NULL),
                (SELECT count(DISTINCT customer_key) FROM {p}),
                (SELECT count(DISTINCT customer_key) FROM {c})
            FROM {p} p FULL OUTER JOIN {c} c ON p.source = c.source AND p.source_id = c.source_id
            """
        ).fetchall()[0]
    return CheckResult(
        name="key_stability",
        passed=changed == 0,
        counts={
            "shared_records": shared,
            "records_with_changed_key": changed,
            "stable_share": (shared - changed) / shared if shared else 1.0,
            "records_added": added,
            "records_removed": removed,
            "keys_before": keys_before,
            "keys_after": keys_after,
        },
        description="records present in both key maps keep their customer_key",
    )


def clustering_accuracy(conn: duckdb.DuckDBPyConnection, predicted, truth) -> dict[str, float]:
    """Pairwise and B-cubed precision/recall of predicted keys against true person ids.

    `predicted` has (source, source_id, customer_key); `truth` has (source, source_id,
    person_id). Scored on the records present in both.
    """
    with _Relation(conn, predicted, "_predicted") as p, _Relation(conn, truth, "_truth") as t:
        row = conn.execute(
            f"""
            WITH joined AS (
                SELECT CAST(p.customer_key AS VARCHAR) AS c, CAST(t.person_id AS VARCHAR) AS t
                FROM {p} p JOIN {t} t ON p.source = t.source AND CAST(p.source_id AS VARCHAR) = CAST(t.source_id AS VARCHAR)
            ),
            cells AS (SELECT c, t, count(*)::DOUBLE AS n FROM joined GROUP BY c, t),
            predicted_sizes AS (SELECT c, sum(n) AS a FROM cells GROUP BY c),
            true_sizes AS (SELECT t, sum(n) AS b FROM cells GROUP BY t),
            scored AS (
                SELECT cells.n, ps.a, ts.b FROM cells JOIN predicted_sizes ps USING (c) JOIN true_sizes ts USING (t)
            )
            SELECT
                sum(n),
                sum(n * (n - 1) / 2),
                (SELECT sum(a * (a - 1) / 2) FROM predicted_sizes),
                (SELECT sum(b * (b - 1) / 2) FROM true_sizes),
                sum(n * n / a),
                sum(n * n / b),
                (SELECT count(*) FROM predicted_sizes),
                (SELECT count(*) FROM true_sizes)
            FROM scored
            """
        ).fetchall()[0]
    n, true_positive, predicted_pairs, true_pairs, bcubed_p, bcubed_r, n_predicted, n_true = (
        float(v or 0) for v in row
    )
    return {
        "records_scored": int(n),
        "predicted_customers": int(n_predicted),
        "true_persons": int(n_true),
        "pairwise_precision": true_positive / predicted_pairs if predicted_pairs else 1.0,
        "pairwise_recall": true_positive / true_pairs if true_pairs else 1.0,
        "pairwise_f1": _f1(true_positive, predicted_pairs, true_pairs),
        "bcubed_precision": bcubed_p / n if n else 1.0,
        "bcubed_recall": bcubed_r / n if n else 1.0,
        "true_positive_pairs": int(true_positive),
        "predicted_pairs": int(predicted_pairs),
        "true_pairs": int(true_pairs),
    }


def evidence_ceiling(conn: duckdb.DuckDBPyConnection, truth, schema: str = "identity") -> dict[str, float]:
    """The accuracy an oracle would reach with this run's evidence, as a yardstick for recall.

    The oracle joins two records of the same true person whenever they share an identifier
    value, a source cross-reference, or both carry a name (so a name-based matcher could in
    principle join them). Records of one person with none of these in common (a loyalty
    card no system ever referenced) cannot be resolved by any method; recall is judged
    against this ceiling, not against 1.
    """
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    with _Relation(conn, truth, "_truth") as t:
        conn.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _ceiling_records AS
            SELECT row_number() OVER (ORDER BY r.source, r.source_id) - 1 AS node, r.source, r.source_id,
                   r.first_name IS NOT NULL AS named, CAST(t.person_id AS VARCHAR) AS person_id
            FROM {schema}.records r
            JOIN {t} t ON t.source = r.source AND CAST(t.source_id AS VARCHAR) = r.source_id
            """
        )
    edges = conn.execute(
        f"""
        WITH shared AS (
            SELECT c.node, c.person_id, i.id_type || ':' || i.value AS grp
            FROM {schema}.identifiers i JOIN _ceiling_records c USING (source, source_id)
            UNION ALL
            SELECT c.node, c.person_id, 'named' FROM _ceiling_records c WHERE c.named
        ),
        stars AS (
            SELECT node, min(node) OVER (PARTITION BY person_id, grp) AS hub FROM shared
        )
        SELECT node AS a, hub AS b FROM stars WHERE node <> hub
        UNION ALL
        SELECT cl.node, cr.node
        FROM {schema}.links l
        JOIN _ceiling_records cl ON cl.source = l.source_l AND cl.source_id = l.source_id_l
        JOIN _ceiling_records cr ON cr.source = l.source_r AND cr.source_id = l.source_id_r
        WHERE l.link_type LIKE 'xref:%' AND cl.person_id = cr.person_id
        """
    ).fetchnumpy()
    n = conn.execute("SELECT count(*) FROM _ceiling_records").fetchall()[0][0]
    graph = coo_matrix((np.ones(len(edges["a"]), dtype=np.int8), (edges["a"], edges["b"])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    conn.register("_ceiling_labels", pa.table({"node": np.arange(n, dtype=np.int64), "label": labels}))
    try:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _ceiling_oracle AS "
            "SELECT c.source, c.source_id, CAST(l.label AS VARCHAR) AS customer_key "
            "FROM _ceiling_records c JOIN _ceiling_labels l USING (node)"
        )
    finally:
        conn.unregister("_ceiling_labels")
    result = clustering_accuracy(conn, "_ceiling_oracle", truth)
    conn.execute("DROP TABLE _ceiling_records; DROP TABLE _ceiling_oracle")
    return result


def _f1(true_positive: float, predicted_pairs: float, true_pairs: float) -> float:
    precision = true_positive / predicted_pairs if predicted_pairs else 1.0
    recall = true_positive / true_pairs if true_pairs else 1.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
