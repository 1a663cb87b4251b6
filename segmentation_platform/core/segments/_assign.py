"""Assignment (every customer of a features snapshot gets exactly one action segment, by the
first matching rule) and segment profiles (size, economics, what sets a segment apart)."""

import json
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from segmentation_platform.core import warehouse
from segmentation_platform.core.segments._scheme import PROFILE_METRICS, SOURCE_TABLES, SegmentScheme
from segmentation_platform.core.segments._tables import SEGMENT_PROFILES_SCHEMA


def load_sources(conn, snapshot: date, scheme: SegmentScheme, notes: list[str]) -> dict:
    """Each source's rows at the snapshot (customer_key + the columns the scheme reads);
    None for a table not built yet. Features come whole: profiles describe segments by them."""
    needed = scheme.columns_needed()
    sources: dict[str, pd.DataFrame | None] = {}
    for source, table in SOURCE_TABLES.items():
        if not warehouse.table_exists(conn, table):
            sources[source] = None
            continue
        present = warehouse.table_columns(conn, table)
        # A needed column the table lacks is left out: assign_segments then names the axis and line.
        wanted = present if source == "features" else ["customer_key", *needed.get(source, [])]
        select = ", ".join(warehouse.quote(c) for c in dict.fromkeys(wanted) if c in present)
        frame = conn.execute(
            f"SELECT {select} FROM {warehouse.table_ref(table)} WHERE snapshot_date = ?", [snapshot]
        ).df()
        if frame.empty and source != "features":
            notes.append(f"{table} has no rows for {snapshot}")
        sources[source] = frame
    return sources


class SchemeDataError(ValueError):
    """A source lacks a column the scheme reads; names the axis and its line."""


@dataclass
class Assignment:
    assignments: pd.DataFrame  # customer_key, snapshot_date, <axes>, action_segment, rule, scheme_version
    notes: list[str] = field(default_factory=list)


class _Lookup:
    """Source columns aligned to the customers being assigned: one hash lookup per source,
    not a merge per column (at 1M customers that is the difference between 1 s and 10 s)."""

    def __init__(self, scheme: SegmentScheme, sources: dict, keys: pd.Series, notes: list[str]):
        self.scheme, self.sources, self.keys, self.notes = scheme, sources, keys, notes
        self.positions: dict[str, np.ndarray] = {}

    def column(self, source: str, column: str, what: str) -> pd.Series:
        frame = self.sources.get(source)
        if frame is None:
            self.notes.append(
                f"{SOURCE_TABLES[source]} is not available: {what} is missing for every customer"
            )
            return pd.Series([None] * len(self.keys), index=self.keys.index, dtype=object)
        if column not in frame.columns:
            raise SchemeDataError(
                f"{self.scheme.path}: {what} reads {source}.{column}, but {SOURCE_TABLES[source]} has no "
                f"column {column!r} (it has: {', '.join(map(str, frame.columns))})"
            )
        if source not in self.positions:
            first = ~frame["customer_key"].duplicated().to_numpy()
            if not first.all():
                self.notes.append(f"{SOURCE_TABLES[source]} repeats customers; the first row of each is used")
            found = pd.Index(frame["customer_key"].to_numpy()[first]).get_indexer(self.keys.to_numpy())
            rows = np.flatnonzero(first)
            self.positions[source] = np.where(found >= 0, rows[np.maximum(found, 0)] if len(rows) else -1, -1)
        # reindex by position: -1 is no row, so it reads as missing, keeping the column's dtype
        values = frame[column].reset_index(drop=True).reindex(self.positions[source])
        return values.set_axis(self.keys.index)


def assign_segments(
    scheme: SegmentScheme, sources: dict[str, pd.DataFrame | None], snapshot_date
) -> Assignment:
    """Every customer of the features snapshot gets its axis values and exactly one segment.

    `sources` maps source name (features, rfm, clv, churn, clusters) to that snapshot's
    rows (customer_key plus the columns the scheme reads); None = not available yet.
    """
    base = sources.get("features")
    if base is None:
        raise SchemeDataError("assignment needs the features snapshot: it defines who the customers are")
    first = ~base["customer_key"].duplicated().to_numpy()
    keys = pd.Series(base["customer_key"].to_numpy()[first], name="customer_key")
    notes: list[str] = []
    n = len(keys)
    out = {
        "customer_key": keys.to_numpy(),
        "snapshot_date": np.full(n, pd.Timestamp(snapshot_date).to_datetime64()),
    }
    lookup = _Lookup(scheme, sources, keys, notes)
    lookup.positions["features"] = np.flatnonzero(first)  # the customers are the features' rows
    for axis in scheme.axes:
        values = lookup.column(axis.source, axis.column, f"axis {axis.name} (line {axis.line})")
        out[axis.name] = axis.compute(values)
        if axis.method == "category" and axis.values:
            undeclared = sorted(set(out[axis.name]) - set(axis.labels))
            if undeclared:
                notes.append(
                    f"axis {axis.name}: values not declared in the scheme: {', '.join(undeclared[:5])}"
                )
    segment = np.full(n, None, dtype=object)
    fired = np.full(n, None, dtype=object)
    open_rows = np.ones(n, dtype=bool)
    # Each axis factorized once; a condition is then an integer lookup, not a string scan.
    codes = {axis.name: pd.factorize(out[axis.name]) for axis in scheme.axes}
    for rule in scheme.rules:
        hit = open_rows.copy()
        for axis_name, wanted in rule.conditions:
            axis_codes, uniques = codes[axis_name]
            hit &= np.isin(axis_codes, np.flatnonzero(pd.Index(uniques).isin(wanted)))
        segment[hit], fired[hit] = rule.segment, rule.name
        open_rows &= ~hit
    out |= {"action_segment": segment, "rule": fired, "scheme_version": scheme.version}
    return Assignment(pd.DataFrame(out), notes)


def segment_profiles(
    scheme: SegmentScheme, assignments: pd.DataFrame, sources: dict[str, pd.DataFrame | None], snapshot_date
) -> pd.DataFrame:
    """One row per defined segment (empty ones too): size, economics, what sets it apart, playbook."""
    keys = assignments["customer_key"].reset_index(drop=True)
    segment = assignments["action_segment"].to_numpy()
    lookup = _Lookup(scheme, sources, keys, [])
    metrics = pd.DataFrame(index=keys.index)
    for metric in PROFILE_METRICS:
        where = scheme.profile_source(metric)
        frame = sources.get(where.source) if where else None
        if frame is None or where.column not in frame.columns:
            metrics[metric] = np.nan
        else:
            values = lookup.column(where.source, where.column, f"profile.{metric}")
            metrics[metric] = pd.to_numeric(values, errors="coerce").astype(float)
    grouped = metrics.groupby(segment)
    sums, means, counts = grouped.sum(min_count=1), grouped.mean(), grouped.size()
    total_customers = len(keys)
    total_revenue = metrics["revenue"].sum(min_count=1)
    describe = _describable(sources.get("features"), lookup)
    segment_means = describe.groupby(segment).mean()
    base_mean, base_std = describe.mean(), describe.std().replace(0, np.nan)
    axis_mix = {
        axis.name: assignments.groupby("action_segment")[axis.name].value_counts(normalize=True)
        for axis in scheme.axes
    }
    rows = []
    for order, definition in enumerate(scheme.segments):
        name = definition.name
        count = int(counts.get(name, 0))
        top, mix = [], {}
        if count:
            z = ((segment_means.loc[name] - base_mean) / base_std).dropna()
            for column in z.abs().sort_values(ascending=False).index[:5]:
                top.append(
                    {
                        "feature": column,
                        "z": round(float(z[column]), 3),
                        "segment_mean": round(float(segment_means.loc[name, column]), 4),
                        "base_mean": round(float(base_mean[column]), 4),
                    }
                )
            for axis, shares in axis_mix.items():
                mix[axis] = {str(k): round(float(v), 4) for k, v in shares.loc[name].head(3).items()}
        revenue = float(sums.loc[name, "revenue"]) if count else np.nan
        rows.append(
            {
                "snapshot_date": pd.Timestamp(snapshot_date),
                "scheme_version": scheme.version,
                "action_segment": name,
                "segment_order": order,
                "customers": count,
                "share": count / total_customers if total_customers else 0.0,
                "revenue": revenue,
                "revenue_share": revenue / total_revenue if count and total_revenue else np.nan,
                "margin": float(sums.loc[name, "margin"]) if count else np.nan,
                "mean_cltv": float(means.loc[name, "cltv"]) if count else np.nan,
                "mean_churn_probability": float(means.loc[name, "churn_probability"]) if count else np.nan,
                "top_features": json.dumps(top),
                "axis_mix": json.dumps(mix),
                "description": definition.description,
                **definition.playbook.as_columns(),
            }
        )
    return pd.DataFrame(rows, columns=SEGMENT_PROFILES_SCHEMA.names)


def _describable(features: pd.DataFrame | None, lookup: _Lookup) -> pd.DataFrame:
    """Numeric feature columns aligned to the assignment rows, for "what sets a segment apart"."""
    if features is None:
        return pd.DataFrame(index=lookup.keys.index)
    numeric = [
        c
        for c in features.columns
        if c not in ("customer_key", "snapshot_date")
        and (pd.api.types.is_numeric_dtype(features[c]) or pd.api.types.is_bool_dtype(features[c]))
    ]
    return pd.DataFrame(
        {
            c: pd.to_numeric(lookup.column("features", c, "profile"), errors="coerce").astype(float)
            for c in numeric
        }
    )
