"""Links between records and their clustering into customers.

Deterministic links join each record to the *representative* (lowest record id) of every
group sharing a normalized email, phone or loyalty id: a star per value instead of all
pairs, so a value shared by thousands of receipts costs thousands of edges, not millions.
Values shared by more records than the hub cap (a shop's phone, a placeholder email) link
nothing.

Clusters are connected components of the accepted links (scipy's csgraph on a sparse
matrix: a second or two at a million records, where iterative SQL label propagation needs
one join per graph-diameter step). The over-merge guard then revisits only clusters that
are too big or hold conflicting birth dates: it rebuilds them edge by edge, strongest
evidence first, refusing any edge that would join two different birth dates or exceed the
size cap. Refused edges and the resulting splits are recorded for review.
"""

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from segmentation_platform.core.identity._config import IdentityConfig
from segmentation_platform.core.identity._records import arrow_to_table

# Evidence strength used by the guard: lower is stronger, applied first.
LINK_STRENGTH_SQL = """
CASE
    WHEN link_type LIKE 'xref:%' THEN 0
    WHEN link_type = 'loyalty_id' THEN 1
    WHEN link_type = 'email' THEN 2
    WHEN link_type = 'phone' THEN 3
    ELSE 4
END
"""


def dates_compatible_sql(a: str, b: str, typo_edits: int) -> str:
    """Same birth date give or take a typo or a day/month swap (01/02 vs 02/01)."""
    return (
        f"(levenshtein(CAST({a} AS VARCHAR), CAST({b} AS VARCHAR)) <= {typo_edits} "
        f"OR (year({a}) = year({b}) AND month({a}) = day({b}) AND day({a}) = month({b})))"
    )


def find_shared_identifiers(conn: duckdb.DuckDBPyConnection, scratch: str, config: IdentityConfig) -> None:
    """Create `{scratch}.identifier_groups` (values shared by several records) and
    `{scratch}.ambiguous_identifiers`.

    A value is ambiguous when the records carrying it name different people (first names
    none of whose forms are alike — Jaro-Winkler-close or one keystroke apart —, or
    incompatible birth dates): a household landline, a family mailbox. Such a value links
    nothing deterministically and is hidden from the probabilistic model, where an agreeing
    household phone would otherwise outweigh two different first names.
    """
    s = scratch
    cap = config.deterministic.max_records_per_identifier
    similarity = config.deterministic.compatible_first_name_similarity
    dates_ok = dates_compatible_sql("a.birth_date", "b.birth_date", config.clustering.birth_date_typo_edits)
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.identifier_groups AS
        SELECT id_type, value, min(record_id) AS representative, count(*) AS n_records
        FROM {s}.identifiers
        GROUP BY id_type, value
        HAVING count(*) > 1
        """
    )
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.identifier_people AS
        SELECT DISTINCT i.id_type, i.value, r.first_name, r.first_name_forms, r.birth_date
        FROM {s}.identifiers i
        JOIN {s}.identifier_groups g USING (id_type, value)
        JOIN {s}.records r USING (record_id)
        WHERE g.n_records <= {cap} AND (r.first_name IS NOT NULL OR r.birth_date IS NOT NULL)
        """
    )
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.ambiguous_identifiers AS
        SELECT DISTINCT a.id_type, a.value
        FROM {s}.identifier_people a
        JOIN {s}.identifier_people b ON a.id_type = b.id_type AND a.value = b.value
        WHERE (a.first_name < b.first_name
               AND NOT list_bool_or(flatten([[jaro_winkler_similarity(x, y) >= {similarity}
                                                OR damerau_levenshtein(x, y) <= 1
                                                for y in b.first_name_forms] for x in a.first_name_forms])))
           OR (a.birth_date < b.birth_date AND NOT {dates_ok})
        """
    )


def build_links(conn: duckdb.DuckDBPyConnection, scratch: str, config: IdentityConfig) -> dict[str, int]:
    """Create `{scratch}.links` from shared identifiers (hubs and ambiguous values left out),
    cross-references and scored pairs; returns counts per link type."""
    s = scratch
    cap = config.deterministic.max_records_per_identifier
    threshold = config.probabilistic.match_probability_threshold
    conn.execute(
        f"""
        CREATE OR REPLACE TABLE {s}.links AS
        SELECT g.representative AS record_id_l, i.record_id AS record_id_r, i.id_type AS link_type,
               1.0::DOUBLE AS match_probability, NULL::DOUBLE AS match_weight, true AS accepted,
               false AS refused_by_guard, 'shared ' || i.id_type AS evidence
        FROM {s}.identifiers i
        JOIN {s}.identifier_groups g USING (id_type, value)
        ANTI JOIN {s}.ambiguous_identifiers a USING (id_type, value)
        WHERE i.record_id <> g.representative AND g.n_records <= {cap}
        UNION ALL
        SELECT record_id_l, record_id_r, link_type, 1.0, NULL, true, false, 'source cross-reference'
        FROM {s}.xref_links
        UNION ALL
        SELECT record_id_l, record_id_r, 'probabilistic', match_probability, match_weight,
               match_probability >= {threshold}, false, evidence
        FROM {s}.probabilistic_links
        """
    )
    counts = dict(
        conn.execute(
            f"SELECT link_type, count(*) FROM {s}.links WHERE accepted GROUP BY link_type"
        ).fetchall()
    )
    hubs = conn.execute(f"SELECT count(*) FROM {s}.identifier_groups WHERE n_records > {cap}").fetchall()[0][
        0
    ]
    ambiguous = dict(
        conn.execute(f"SELECT id_type, count(*) FROM {s}.ambiguous_identifiers GROUP BY id_type").fetchall()
    )
    near_misses = conn.execute(f"SELECT count(*) FROM {s}.links WHERE NOT accepted").fetchall()[0][0]
    return {
        **{f"links_{k.replace(':', '_').replace('.', '_')}": v for k, v in sorted(counts.items())},
        "links_below_threshold": near_misses,
        "hub_identifier_values_ignored": hubs,
        **{f"ambiguous_{k}_values_ignored": v for k, v in sorted(ambiguous.items())},
    }


def connected_component_ids(n_nodes: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component id of nodes 0..n_nodes-1 = the smallest node id in its component."""
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n_nodes, n_nodes)).tocsr()
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1 if len(labels) else 0, n_nodes, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n_nodes, dtype=np.int64))
    return smallest[labels]


def cluster_records(conn: duckdb.DuckDBPyConnection, scratch: str, config: IdentityConfig) -> dict[str, int]:
    """Create `{scratch}.clusters` (record_id, cluster_id) and `{scratch}.guard_flags`."""
    n_records = conn.execute(f"SELECT coalesce(max(record_id), 0) FROM {scratch}.records").fetchall()[0][0]
    edges = conn.execute(f"SELECT record_id_l, record_id_r FROM {scratch}.links WHERE accepted").fetchnumpy()
    # record ids start at 1; node 0 is an unused placeholder.
    cluster_of = connected_component_ids(
        n_records + 1, edges["record_id_l"].astype(np.int64), edges["record_id_r"].astype(np.int64)
    )
    del edges
    table = pa.table({"record_id": np.arange(1, n_records + 1, dtype=np.int64), "cluster_id": cluster_of[1:]})
    arrow_to_table(conn, table, f"{scratch}.clusters")
    del table, cluster_of

    guard = _OverMergeGuard(conn, scratch, config)
    guarded = guard.run()
    n_clusters = conn.execute(f"SELECT count(DISTINCT cluster_id) FROM {scratch}.clusters").fetchall()[0][0]
    return {"clusters": n_clusters, **guarded}


@dataclass
class _Flag:
    cluster_id: int
    reason: str
    original_cluster_id: int
    original_size: int
    refused_links: int
    refused_link_types: str
    needs_review: bool


class _OverMergeGuard:
    """Rebuilds suspicious clusters strongest-edge-first under cannot-link constraints."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, scratch: str, config: IdentityConfig):
        self.conn = conn
        self.scratch = scratch
        self.cap = config.clustering.max_cluster_size
        self.check_birth_dates = "birth_date" in config.clustering.conflict_fields
        self.typo_edits = config.clustering.birth_date_typo_edits

    def run(self) -> dict[str, int]:
        s = self.scratch
        birth_condition = "OR count(DISTINCT r.birth_date) > 1" if self.check_birth_dates else ""
        self.conn.execute(
            f"""
            CREATE OR REPLACE TABLE {s}.suspicious AS
            SELECT c.cluster_id, count(*) AS n_records
            FROM {s}.clusters c JOIN {s}.records r USING (record_id)
            GROUP BY c.cluster_id
            HAVING count(*) > {self.cap} {birth_condition}
            """
        )
        members = self.conn.execute(
            f"""
            SELECT c.cluster_id, c.record_id, CAST(r.birth_date AS VARCHAR) AS birth_date
            FROM {s}.clusters c
            JOIN {s}.suspicious USING (cluster_id)
            JOIN {s}.records r USING (record_id)
            ORDER BY c.cluster_id, c.record_id
            """
        ).fetchall()
        edges = self.conn.execute(
            f"""
            SELECT c.cluster_id, l.record_id_l, l.record_id_r, l.link_type, {LINK_STRENGTH_SQL} AS strength,
                   l.match_probability
            FROM {s}.links l
            JOIN {s}.clusters c ON c.record_id = l.record_id_l
            JOIN {s}.suspicious USING (cluster_id)
            WHERE l.accepted
            ORDER BY c.cluster_id, strength, l.match_probability DESC, l.record_id_l, l.record_id_r, l.link_type
            """
        ).fetchall()
        by_cluster_members: dict[int, list[tuple[int, str | None]]] = {}
        for cluster_id, record_id, birth_date in members:
            by_cluster_members.setdefault(cluster_id, []).append((record_id, birth_date))
        by_cluster_edges: dict[int, list[tuple]] = {}
        for cluster_id, *edge in edges:
            by_cluster_edges.setdefault(cluster_id, []).append(tuple(edge))

        new_cluster: list[tuple[int, int]] = []
        refused: list[tuple[int, int, str]] = []
        flags: list[_Flag] = []
        for cluster_id, cluster_members in by_cluster_members.items():
            assignment, refused_edges, reasons = self._rebuild(
                cluster_members, by_cluster_edges.get(cluster_id, [])
            )
            if not refused_edges:
                continue
            refused.extend((e[0], e[1], e[2]) for e in refused_edges)
            new_cluster.extend(assignment.items())
            refused_types = sorted({e[2] for e in refused_edges})
            strong = any(e[3] < 4 for e in refused_edges)
            for part in sorted(set(assignment.values())):
                flags.append(
                    _Flag(
                        cluster_id=part,
                        reason=",".join(sorted(reasons)),
                        original_cluster_id=cluster_id,
                        original_size=len(cluster_members),
                        refused_links=len(refused_edges),
                        refused_link_types=",".join(refused_types),
                        needs_review=strong or "cluster_size_cap" in reasons,
                    )
                )
        self._apply(new_cluster, refused, flags)
        return {
            "guard_clusters_checked": len(by_cluster_members),
            "guard_clusters_split": len({f.original_cluster_id for f in flags}),
            "guard_links_refused": len(refused),
        }

    def _rebuild(self, members, edges):
        parent = {record_id: record_id for record_id, _ in members}
        size = dict.fromkeys(parent, 1)
        births: dict[int, set[str]] = {
            record_id: ({birth} if birth is not None and self.check_birth_dates else set())
            for record_id, birth in members
        }

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        refused_edges = []
        reasons: set[str] = set()
        for left, right, link_type, strength, _probability in edges:
            a, b = find(left), find(right)
            if a == b:
                continue
            if size[a] + size[b] > self.cap:
                refused_edges.append((left, right, link_type, strength))
                reasons.add("cluster_size_cap")
                continue
            if self._dates_conflict(births[a], births[b]):
                refused_edges.append((left, right, link_type, strength))
                reasons.add("conflicting_birth_dates")
                continue
            if size[a] < size[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
            births[a] |= births.pop(b)
        roots: dict[int, int] = {}
        for record_id, _ in members:  # members are sorted: first seen = smallest id
            roots.setdefault(find(record_id), record_id)
        assignment = {record_id: roots[find(record_id)] for record_id, _ in members}
        return assignment, refused_edges, reasons

    def _dates_conflict(self, left: set[str], right: set[str]) -> bool:
        return any(not _dates_compatible(x, y, self.typo_edits) for x in left for y in right)

    def _apply(self, new_cluster, refused, flags) -> None:
        s = self.scratch
        if new_cluster:
            moved = pa.table(
                {
                    "record_id": pa.array([r for r, _ in new_cluster], pa.int64()),
                    "cluster_id": pa.array([c for _, c in new_cluster], pa.int64()),
                }
            )
            arrow_to_table(self.conn, moved, f"{s}.guard_moves")
            self.conn.execute(
                f"UPDATE {s}.clusters c SET cluster_id = m.cluster_id FROM {s}.guard_moves m "
                "WHERE c.record_id = m.record_id"
            )
        if refused:
            refused_table = pa.table(
                {
                    "record_id_l": pa.array([r[0] for r in refused], pa.int64()),
                    "record_id_r": pa.array([r[1] for r in refused], pa.int64()),
                    "link_type": pa.array([r[2] for r in refused], pa.string()),
                }
            )
            arrow_to_table(self.conn, refused_table, f"{s}.guard_refused")
            self.conn.execute(
                f"UPDATE {s}.links l SET refused_by_guard = true FROM {s}.guard_refused g "
                "WHERE l.record_id_l = g.record_id_l AND l.record_id_r = g.record_id_r "
                "AND l.link_type = g.link_type"
            )
        flag_table = pa.table(
            {
                "cluster_id": pa.array([f.cluster_id for f in flags], pa.int64()),
                "reason": pa.array([f.reason for f in flags], pa.string()),
                "original_cluster_id": pa.array([f.original_cluster_id for f in flags], pa.int64()),
                "original_size": pa.array([f.original_size for f in flags], pa.int64()),
                "refused_links": pa.array([f.refused_links for f in flags], pa.int64()),
                "refused_link_types": pa.array([f.refused_link_types for f in flags], pa.string()),
                "needs_review": pa.array([f.needs_review for f in flags], pa.bool_()),
            }
        )
        arrow_to_table(self.conn, flag_table, f"{s}.guard_flags")


def _dates_compatible(a: str, b: str, typo_edits: int) -> bool:
    """Python twin of `dates_compatible_sql` over ISO strings."""
    if _edit_distance(a, b) <= typo_edits:
        return True
    return a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]


def _edit_distance(a: str, b: str) -> int:
    if a == b:
        return 0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
