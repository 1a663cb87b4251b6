"""The RFM segment map (config/rfm_segments.yaml): tie handling and the named segments of the
codes 111..555, rejected on load unless every code has exactly one segment."""

from dataclasses import dataclass
from itertools import product
from pathlib import Path

from segmentation_platform.core.config import Section, read_config
from segmentation_platform.core.config._paths import CONFIG_DIR

CONFIG_PATH = CONFIG_DIR / "rfm_segments.yaml"
SCORES = (1, 2, 3, 4, 5)
TIE_METHODS = ("by_customer_key", "shared")
RULE_SCORES = ("r", "f", "m", "fm")


@dataclass(frozen=True)
class SegmentRule:
    name: str
    description: str
    # score -> inclusive (low, high); omitted scores match 1-5.
    ranges: tuple[tuple[str, tuple[int, int]], ...]

    def matches(self, r: int, f: int, m: int) -> bool:
        values = {"r": r, "f": f, "m": m, "fm": fm_score(f, m)}
        return all(low <= values[score] <= high for score, (low, high) in self.ranges)


@dataclass(frozen=True)
class RfmConfig:
    version: int
    ties: str
    segments: tuple[SegmentRule, ...]

    def segment_of(self, code: str) -> str:
        r, f, m = (int(digit) for digit in code)
        return next(rule.name for rule in self.segments if rule.matches(r, f, m))

    def code_map(self) -> dict[str, str]:
        """Every code 111..555 -> its segment name."""
        return {code: self.segment_of(code) for code in all_codes()}


def fm_score(f: int, m: int) -> int:
    """Mean of F and M rounded half up (4 and 5 make 5), the convention of the R x FM grid."""
    return (f + m + 1) // 2


def all_codes() -> list[str]:
    return [f"{r}{f}{m}" for r, f, m in product(SCORES, SCORES, SCORES)]


def load_rfm_config(path: Path | str = CONFIG_PATH) -> RfmConfig:
    """Parse `rfm_segments.yaml`; reject it unless every code 111..555 has exactly one segment."""
    root = read_config(path).only(
        ["version", "scoring", "segments"], required=["version", "scoring", "segments"]
    )
    scoring = root.section("scoring").only(["ties"], required=["ties"])
    items = root.data["segments"]
    if not isinstance(items, list) or not items:
        raise root.error("segments", f"segments must be a non-empty list of segments, got {items!r}")
    rules = []
    for index, item in enumerate(items):
        section = Section(item, root.file, f"segments[{index}]", items.line_of(index))
        section.only(["name", "description", *RULE_SCORES], required=["name", "description"])
        ranges = tuple((score, _score_range(section, score)) for score in RULE_SCORES if section.has(score))
        rules.append(SegmentRule(section.text("name"), section.text("description"), ranges))
    names = [rule.name for rule in rules]
    for index, name in enumerate(names):
        if name in names[:index]:
            duplicate = Section(items[index], root.file, f"segments[{index}]", items.line_of(index))
            raise duplicate.error("name", f"segments[{index}].name: segment {name!r} is defined twice")
    _check_partition(root, rules)
    return RfmConfig(
        version=root.number("version", integer=True, low=1),
        ties=scoring.choice("ties", TIE_METHODS),
        segments=tuple(rules),
    )


def _score_range(section: Section, score: str) -> tuple[int, int]:
    value = section.data[score]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
    ):
        raise section.error(score, f"{section.key(score)} must be [low, high] whole scores, got {value!r}")
    low, high = value
    if not 1 <= low <= high <= 5:
        raise section.error(
            score, f"{section.key(score)} must have 1 <= low <= high <= 5, got [{low}, {high}]"
        )
    return low, high


def _check_partition(root: Section, rules: list[SegmentRule]) -> None:
    uncovered, doubled, used = [], [], set()
    for code in all_codes():
        r, f, m = (int(digit) for digit in code)
        hits = [rule.name for rule in rules if rule.matches(r, f, m)]
        used.update(hits)
        if not hits:
            uncovered.append(code)
        elif len(hits) > 1:
            doubled.append(f"{code} ({' and '.join(hits)})")
    if uncovered:
        raise root.error(
            "segments", f"segments: {len(uncovered)} code(s) match no segment: {_first(uncovered)}"
        )
    if doubled:
        raise root.error(
            "segments", f"segments: {len(doubled)} code(s) match several segments: {_first(doubled)}"
        )
    unused = [rule.name for rule in rules if rule.name not in used]
    if unused:
        raise root.error("segments", f"segments: segment(s) matching no code: {', '.join(unused)}")


def _first(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f", ... ({len(items) - shown} more)" if len(items) > shown else "")
