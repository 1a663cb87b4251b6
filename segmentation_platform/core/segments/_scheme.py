"""Segment scheme: axes -> ordered rules -> 3 to 7 action segments with playbooks.

The scheme (`config/segment_scheme.yaml`) is a governance artefact marketing signs off,
so it is validated strictly when the code location loads (`_parse`): an unknown field,
axis, value or segment fails with the file, the line and the reason, before any run.

Its version is `<declared version>+<content hash>`: the declared number is what people
talk about, the hash makes sure an edit that forgot the bump is still told apart. The
changelog (`_changelog`) gets one row per distinct content, with a readable diff against
the previous one; re-running with an unchanged scheme adds nothing.
"""

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from segmentation_platform.core.config import CONFIG_DIR
from segmentation_platform.core.warehouse import tables

SCHEME_PATH = CONFIG_DIR / "segment_scheme.yaml"
LOGIC_VERSION = "1"
# The tables a scheme's axes and profile metrics may read, by the name the YAML uses.
SOURCE_TABLES = {
    "features": tables.CUSTOMER_FEATURES,
    "rfm": tables.RFM_SCORES,
    "clv": tables.CLV_SCORES,
    "churn": tables.CHURN_SCORES,
    "clusters": tables.BEHAVIOUR_CLUSTERS,
}
AXIS_METHODS = ("category", "percentile", "threshold")
MIN_SEGMENTS, MAX_SEGMENTS = 3, 7
RESERVED_COLUMNS = ("customer_key", "snapshot_date", "action_segment", "rule", "scheme_version")
PLAYBOOK_FIELDS = (
    "objective",
    "recommended_action",
    "offer",
    "channel",
    "contact_frequency_cap",
    "owner",
    "approved_usage",
)
PROFILE_METRICS = ("revenue", "margin", "cltv", "churn_probability")


@dataclass(frozen=True)
class Bin:
    name: str
    minimum: float | None  # None: the last bin, takes the rest


@dataclass(frozen=True)
class Axis:
    name: str
    source: str
    column: str
    method: str
    description: str = ""
    values: tuple[str, ...] = ()  # declared values of a category axis (empty: any)
    bins: tuple[Bin, ...] = ()
    missing: str = "unknown"
    line: int = 0

    @property
    def labels(self) -> tuple[str, ...]:
        """Every value a rule may name, or () when any value goes."""
        if self.method == "category":
            return (*self.values, self.missing) if self.values else ()
        return (*(b.name for b in self.bins), self.missing)

    def compute(self, values: pd.Series) -> np.ndarray:
        """The axis label of every row; rows without a value get `missing`."""
        out = np.full(len(values), self.missing, dtype=object)
        present = values.notna().to_numpy()
        if self.method == "category":
            raw = values[present]
            if pd.api.types.is_float_dtype(raw) and (raw % 1 == 0).all():
                raw = raw.astype(np.int64)
            out[present] = raw.astype(str).to_numpy()
            return out
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        present = numbers.notna().to_numpy()
        measure = (
            numbers.rank(pct=True).to_numpy() * 100 if self.method == "percentile" else numbers.to_numpy()
        )
        open_rows = present.copy()
        for bin_ in self.bins:
            if bin_.minimum is None:
                hit = open_rows
            elif self.method == "percentile":
                hit = open_rows & (measure > bin_.minimum)
            else:
                hit = open_rows & (measure >= bin_.minimum)
            out[hit] = bin_.name
            open_rows = open_rows & ~hit
        return out


@dataclass(frozen=True)
class FrequencyCap:
    max_contacts: int
    per_days: int

    def __str__(self) -> str:
        return f"at most {self.max_contacts} contact{'s' if self.max_contacts != 1 else ''} per {self.per_days} days"


@dataclass(frozen=True)
class Playbook:
    objective: str
    recommended_action: str
    offer: str
    channel: str
    contact_frequency_cap: FrequencyCap
    owner: str
    approved_usage: tuple[str, ...]

    def as_columns(self) -> dict[str, str]:
        return {
            "objective": self.objective,
            "recommended_action": self.recommended_action,
            "offer": self.offer,
            "channel": self.channel,
            "contact_frequency_cap": str(self.contact_frequency_cap),
            "owner": self.owner,
            "approved_usage": ", ".join(self.approved_usage),
        }


@dataclass(frozen=True)
class Segment:
    name: str
    description: str
    playbook: Playbook
    line: int = 0


@dataclass(frozen=True)
class Rule:
    name: str
    segment: str
    conditions: tuple[tuple[str, tuple[str, ...]], ...]
    line: int = 0

    @property
    def is_catch_all(self) -> bool:
        return not self.conditions


@dataclass(frozen=True)
class ProfileSource:
    source: str
    column: str


@dataclass(frozen=True)
class SegmentScheme:
    declared_version: int
    author: str
    date: date
    description: str
    axes: tuple[Axis, ...]
    segments: tuple[Segment, ...]
    rules: tuple[Rule, ...]
    profile: tuple[tuple[str, ProfileSource], ...]
    content_hash: str
    canonical_json: str
    path: str = ""

    @property
    def version(self) -> str:
        return f"{self.declared_version}+{self.content_hash[:8]}"

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]

    def axis(self, name: str) -> Axis:
        return next(a for a in self.axes if a.name == name)

    def segment(self, name: str) -> Segment:
        return next(s for s in self.segments if s.name == name)

    def profile_source(self, metric: str) -> ProfileSource | None:
        return dict(self.profile).get(metric)

    def columns_needed(self) -> dict[str, list[str]]:
        """source -> the columns assignment and profiles read from it."""
        needed: dict[str, list[str]] = {source: [] for source in SOURCE_TABLES}
        for axis in self.axes:
            needed[axis.source].append(axis.column)
        for _, where in self.profile:
            needed[where.source].append(where.column)
        return {source: list(dict.fromkeys(columns)) for source, columns in needed.items() if columns}
