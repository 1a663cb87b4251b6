"""`config/features.yaml`: lifecycle thresholds and engagement windows, read with the
platform's one loader (`core.config.read_config`); a mistake is one `ConfigError`
`file:line: reason` naming the key. Every value changes results (feeds code_version)."""

from dataclasses import dataclass, fields
from pathlib import Path

from segmentation_platform.core.config import CONFIG_DIR, read_config

CONFIG_PATH = CONFIG_DIR / "features.yaml"


@dataclass(frozen=True)
class LifecycleThresholds:
    new_within_days: int = 30
    active_within_days: int = 90
    at_risk_within_days: int = 180
    dormant_within_days: int = 365


@dataclass(frozen=True)
class FeatureConfig:
    version: int = 1
    lifecycle: LifecycleThresholds = LifecycleThresholds()
    email_windows_days: tuple[int, ...] = (30, 90)
    support_window_days: int = 90

    @property
    def rate_window_days(self) -> int:
        return max(self.email_windows_days)


def load_feature_config(path: Path | str = CONFIG_PATH) -> FeatureConfig:
    """Parse and validate `features.yaml`; a bad value raises ConfigError naming file, line and key."""
    top = read_config(path)
    top.only(["version", "lifecycle", "engagement"], required=["version", "lifecycle", "engagement"])
    names = [f.name for f in fields(LifecycleThresholds)]
    lifecycle = top.section("lifecycle").only(names, required=names)
    thresholds = {name: lifecycle.number(name, integer=True, low=1) for name in names}
    ordered = ["active_within_days", "at_risk_within_days", "dormant_within_days"]
    for shorter, longer in zip(ordered, ordered[1:], strict=False):
        if thresholds[longer] <= thresholds[shorter]:
            raise lifecycle.error(
                longer,
                f"{lifecycle.key(longer)} must be greater than {shorter} ({thresholds[shorter]}), "
                f"got {thresholds[longer]}",
            )
    engagement = top.section("engagement").only(
        ["email_windows_days", "support_window_days"], required=["email_windows_days", "support_window_days"]
    )
    key = engagement.key("email_windows_days")
    windows = engagement.data["email_windows_days"]
    if not isinstance(windows, list) or not windows:
        raise engagement.error("email_windows_days", f"{key} must be a non-empty list, got {windows!r}")
    for window in windows:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise engagement.error(
                "email_windows_days", f"{key}: expected positive whole days, got {window!r}"
            )
    if len(set(windows)) != len(windows):
        raise engagement.error("email_windows_days", f"{key}: windows repeat: {list(windows)}")
    return FeatureConfig(
        version=top.number("version", integer=True, low=1),
        lifecycle=LifecycleThresholds(**thresholds),
        email_windows_days=tuple(sorted(windows)),
        support_window_days=engagement.number("support_window_days", integer=True, low=1),
    )
