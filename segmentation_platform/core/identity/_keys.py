"""Stable customer keys across runs, with a changelog of every merge, split and new key.

Keys are `prefix + zero-padded sequence` (`C0000000042`): deterministic, sortable, and
their sequence number is their age, which decides merges. Assignment, given the previous
key map and this run's clusters:

- Keys are visited oldest first; each takes the cluster holding most of its records (ties:
  lowest cluster id) among clusters no older key has taken. A cluster reached by several
  keys therefore keeps the OLDEST (a merge; the younger keys retire). A key whose records
  are now spread over several clusters stays with its largest part (a split); the other
  parts get new keys. Should an older key already hold that largest part, the key moves
  on to its next-largest part, so as many records as possible keep their key.
- Clusters no previous key reaches get new keys, minted in cluster order after the
  highest sequence number ever issued (key map and changelog), so keys are never reused.

Unchanged input gives unchanged clusters and therefore exactly the previous key map.
"""

import datetime as dt
import json
from collections import defaultdict

import duckdb
import pyarrow as pa

from segmentation_platform.core.identity._config import IdentityConfig
from segmentation_platform.core.identity._records import arrow_to_table


def key_sequence_sql(expr: str, prefix: str) -> str:
    return f"TRY_CAST(CASE WHEN starts_with({expr}, '{prefix}') THEN substr({expr}, {len(prefix) + 1}) END AS BIGINT)"


def highest_issued_sequence(
    conn: duckdb.DuckDBPyConnection, previous_map: str | None, previous_changelog: str | None, prefix: str
) -> int:
    """Highest sequence number ever minted: retired keys count too, so none is reissued."""
    parts = []
    if previous_map:
        parts.append(f"SELECT customer_key AS k FROM {previous_map}")
    if previous_changelog:
        parts.append(f"SELECT customer_key FROM {previous_changelog}")
        parts.append(f"SELECT unnest(previous_keys) FROM {previous_changelog}")
    if not parts:
        return 0
    sql = f"SELECT coalesce(max({key_sequence_sql('k', prefix)}), 0) FROM ({' UNION ALL '.join(parts)})"
    return int(conn.execute(sql).fetchall()[0][0])


def assign_keys(
    conn: duckdb.DuckDBPyConnection,
    scratch: str,
    config: IdentityConfig,
    previous_map: str | None,
    highest_sequence: int,
    now: dt.datetime,
) -> dict[str, int]:
    """Create `{scratch}.key_map` and `{scratch}.changelog`; returns change counts.

    `previous_map` names a table with (source, source_id, customer_key[, assigned_at]),
    or None on the first run.
    """
    s = scratch
    prefix, digits = config.keys.prefix, config.keys.digits
    if previous_map is None:
        conn.execute(
            f"CREATE OR REPLACE TABLE {s}.previous_map "
            "(source VARCHAR, source_id VARCHAR, customer_key VARCHAR, assigned_at TIMESTAMP)"
        )
    else:
        assigned = (
            "assigned_at"
            if "assigned_at" in _columns(conn, previous_map)
            else "NULL::TIMESTAMP AS assigned_at"
        )
        conn.execute(
            f"CREATE OR REPLACE TABLE {s}.previous_map AS "
            f"SELECT CAST(source AS VARCHAR) AS source, CAST(source_id AS VARCHAR) AS source_id, "
            f"CAST(customer_key AS VARCHAR) AS customer_key, {assigned} FROM {previous_map}"
        )
    duplicates = conn.execute(
        f"SELECT count(*) FROM (SELECT source, source_id FROM {s}.previous_map "
        "GROUP BY ALL HAVING count(DISTINCT customer_key) > 1)"
    ).fetchall()[0][0]
    if duplicates:
        raise ValueError(
            f"previous key map gives {duplicates} source records more than one customer_key; "
            "it must hold one key per (source, source_id)"
        )
    overlap = conn.execute(
        f"""
        SELECT p.customer_key, c.cluster_id, count(*) AS n
        FROM {s}.previous_map p
        JOIN {s}.records r USING (source, source_id)
        JOIN {s}.clusters c USING (record_id)
        GROUP BY p.customer_key, c.cluster_id
        ORDER BY {key_sequence_sql("p.customer_key", prefix)} NULLS LAST, p.customer_key, n DESC, c.cluster_id
        """
    ).fetchall()

    cluster_key: dict[int, str] = {}
    previous_keys_of_cluster: dict[int, list[str]] = defaultdict(list)
    key_records: dict[str, int] = defaultdict(int)
    current_key = None
    placed = False
    for key, cluster_id, n in overlap:
        previous_keys_of_cluster[cluster_id].append(key)
        key_records[key] += n
        if key != current_key:
            current_key, placed = key, False
        if not placed and cluster_id not in cluster_key:
            cluster_key[cluster_id] = key
            placed = True

    assigned = pa.table(
        {
            "cluster_id": pa.array(list(cluster_key), pa.int64()),
            "customer_key": pa.array(list(cluster_key.values()), pa.string()),
        }
    )
    arrow_to_table(conn, assigned, f"{s}.assigned_keys")
    # Clusters no previous key reaches get new keys, in cluster order.
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.cluster_keys AS
        SELECT cluster_id, customer_key, false AS minted FROM {s}.assigned_keys
        UNION ALL
        SELECT cluster_id,
               '{prefix}' || lpad(CAST({highest_sequence} + row_number() OVER (ORDER BY cluster_id) AS VARCHAR),
                                  {digits}, '0'),
               true
        FROM (SELECT DISTINCT cluster_id FROM {s}.clusters) c
        ANTI JOIN {s}.assigned_keys a USING (cluster_id)
        """
    )
    longest = conn.execute(
        f"SELECT coalesce(max(length(customer_key)), 0) FROM {s}.cluster_keys WHERE minted"
    ).fetchall()[0][0]
    if longest > len(prefix) + digits:
        raise ValueError(f"customer key sequence overflowed {digits} digits; raise keys.digits")
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.key_map AS
        SELECT r.source, r.source_id, k.customer_key, r.record_id, c.cluster_id,
               CASE WHEN p.customer_key = k.customer_key THEN coalesce(p.assigned_at, TIMESTAMP '{now}')
                    ELSE TIMESTAMP '{now}' END AS assigned_at
        FROM {s}.records r
        JOIN {s}.clusters c USING (record_id)
        JOIN {s}.cluster_keys k USING (cluster_id)
        LEFT JOIN {s}.previous_map p USING (source, source_id)
        ORDER BY r.record_id
        """
    )
    return _write_changelog(conn, s, cluster_key, previous_keys_of_cluster, key_records, now)


def _write_changelog(conn, s, assigned, previous_keys_of_cluster, key_records, now) -> dict[str, int]:
    """Python builds the few merge/split/retire rows; SQL the (first-run: many) new ones."""
    keyed = [c for c in previous_keys_of_cluster]
    arrow_to_table(conn, pa.table({"cluster_id": pa.array(keyed, pa.int64())}), f"{s}.previously_keyed")
    minted_from_previous = dict(
        conn.execute(
            f"SELECT cluster_id, customer_key FROM {s}.cluster_keys JOIN {s}.previously_keyed USING (cluster_id) "
            "WHERE minted"
        ).fetchall()
    )
    live_keys = set(assigned.values())
    sizes = dict(
        conn.execute(
            f"SELECT cluster_id, count(*) FROM {s}.clusters JOIN {s}.previously_keyed USING (cluster_id) "
            "GROUP BY cluster_id"
        ).fetchall()
    )
    moved = dict(
        conn.execute(
            f"SELECT cluster_id, count(*) FROM {s}.key_map m JOIN {s}.previous_map p USING (source, source_id) "
            "WHERE p.customer_key <> m.customer_key GROUP BY cluster_id"
        ).fetchall()
    )
    merge_clusters = [c for c, keys in previous_keys_of_cluster.items() if c in assigned and len(keys) > 1]
    evidence = _merge_evidence(conn, s, merge_clusters)
    guard = _guard_reasons(conn, s)

    rows = []
    for cluster_id in sorted(previous_keys_of_cluster):
        previous = previous_keys_of_cluster[cluster_id]
        retired = [k for k in previous if k not in live_keys]
        base = {
            "n_records": sizes.get(cluster_id, 0),
            "previous_keys": previous,
            "retired_keys": retired,
            "n_records_moved": moved.get(cluster_id, 0),
        }
        if cluster_id in minted_from_previous:
            reason = guard.get(
                cluster_id, "no accepted link joins these records to the rest of the previous customer"
            )
            rows.append(
                {
                    **base,
                    "customer_key": minted_from_previous[cluster_id],
                    "change_type": "split",
                    "evidence": json.dumps({"split_from": previous, "reason": reason}),
                }
            )
        elif len(previous) > 1:
            key = assigned[cluster_id]
            rows.append(
                {
                    **base,
                    "customer_key": key,
                    "change_type": "merge",
                    "evidence": json.dumps({"survivor": key, "links": evidence.get(cluster_id, {})}),
                }
            )
    lost = sorted(set(key_records) - live_keys - {k for r in rows for k in r["previous_keys"]})
    if lost:
        raise RuntimeError(f"customer keys retired without a changelog row: {lost[:5]}")
    previous_keys = [
        row[0]
        for row in conn.execute(f"SELECT DISTINCT customer_key FROM {s}.previous_map ORDER BY 1").fetchall()
    ]
    for key in previous_keys:
        if key not in key_records:
            rows.append(
                {
                    "customer_key": key,
                    "change_type": "retire",
                    "previous_keys": [key],
                    "retired_keys": [key],
                    "n_records": 0,
                    "n_records_moved": 0,
                    "evidence": json.dumps({"reason": "none of its source records exist any more"}),
                }
            )
    table = pa.table(
        {
            "changed_at": pa.array([now] * len(rows), pa.timestamp("us")),
            "change_type": pa.array([r["change_type"] for r in rows], pa.string()),
            "customer_key": pa.array([r["customer_key"] for r in rows], pa.string()),
            "previous_keys": pa.array([r["previous_keys"] for r in rows], pa.list_(pa.string())),
            "retired_keys": pa.array([r["retired_keys"] for r in rows], pa.list_(pa.string())),
            "n_records": pa.array([r["n_records"] for r in rows], pa.int64()),
            "n_records_moved": pa.array([r["n_records_moved"] for r in rows], pa.int64()),
            "evidence": pa.array([r["evidence"] for r in rows], pa.string()),
        }
    )
    arrow_to_table(conn, table, f"{s}.changelog")
    new_evidence = json.dumps({"reason": "records not seen under any key before"})
    conn.execute(
        f"""
        INSERT INTO {s}.changelog
        SELECT TIMESTAMP '{now}', 'new', k.customer_key, []::VARCHAR[], []::VARCHAR[], count(*), 0, '{new_evidence}'
        FROM {s}.cluster_keys k
        JOIN {s}.clusters c USING (cluster_id)
        ANTI JOIN {s}.previously_keyed p USING (cluster_id)
        GROUP BY k.customer_key
        """
    )
    counts = dict(conn.execute(f"SELECT change_type, count(*) FROM {s}.changelog GROUP BY 1").fetchall())
    return {f"keys_{change}": n for change, n in sorted(counts.items())}


def _merge_evidence(conn, s: str, clusters: list[int]) -> dict[int, dict]:
    """Per merged cluster: the accepted links that bridge records of different previous keys."""
    if not clusters:
        return {}
    arrow_to_table(conn, pa.table({"cluster_id": pa.array(clusters, pa.int64())}), f"{s}.merge_clusters")
    rows = conn.execute(
        f"""
        SELECT ml.cluster_id, l.link_type, count(*) AS n, min(l.match_probability) AS min_probability
        FROM {s}.links l
        JOIN {s}.key_map ml ON ml.record_id = l.record_id_l
        JOIN {s}.key_map mr ON mr.record_id = l.record_id_r
        JOIN {s}.merge_clusters mc ON mc.cluster_id = ml.cluster_id
        LEFT JOIN {s}.previous_map pl ON pl.source = ml.source AND pl.source_id = ml.source_id
        LEFT JOIN {s}.previous_map pr ON pr.source = mr.source AND pr.source_id = mr.source_id
        WHERE l.accepted AND NOT l.refused_by_guard
          AND (pl.customer_key IS NULL OR pr.customer_key IS NULL OR pl.customer_key <> pr.customer_key)
        GROUP BY ALL
        ORDER BY 1, 2
        """
    ).fetchall()
    evidence: dict[int, dict] = defaultdict(dict)
    for cluster_id, link_type, n, min_probability in rows:
        evidence[cluster_id][link_type] = {"links": n, "min_probability": round(min_probability, 6)}
    return evidence


def _guard_reasons(conn, s: str) -> dict[int, str]:
    rows = conn.execute(f"SELECT cluster_id, reason FROM {s}.guard_flags").fetchall()
    return {cluster_id: f"over-merge guard: {reason}" for cluster_id, reason in rows}


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {row[0] for row in conn.execute(f"DESCRIBE {table}").fetchall()}
