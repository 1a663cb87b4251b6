"""The rule the ingestion asset's `reconciles_with_landing` check decides by."""

from dataclasses import dataclass
from datetime import date

import polars as pl


@dataclass(frozen=True)
class Reconciliation:
    """Per day: rows in the landing files vs rows accepted into raw and quarantined."""

    landing: dict[date, int]
    accepted: dict[date, int]
    quarantined: dict[date, int]

    @property
    def mismatches(self) -> dict[str, dict[str, int]]:
        """Days whose landing rows are not exactly accepted + quarantined: something was dropped."""
        return {
            day.isoformat(): {
                "landing": self.landing[day],
                "accepted": self.accepted[day],
                "quarantined": self.quarantined[day],
            }
            for day in self.landing
            if self.landing[day] != self.accepted[day] + self.quarantined[day]
        }

    @property
    def passed(self) -> bool:
        return not self.mismatches


def reconcile_with_landing(
    landing_counts: pl.DataFrame, accepted: dict[date, int], quarantined: dict[date, int], days: list[date]
) -> Reconciliation:
    """`landing_counts` is `ParsedBatch.landing_counts`; `accepted` / `quarantined` are the rows
    the warehouse holds per day after the load (`warehouse.count_by`)."""
    landing = dict.fromkeys(days, 0)
    for row in (
        landing_counts.group_by("_partition_date").agg(pl.col("landing_rows").sum()).iter_rows(named=True)
    ):
        landing[row["_partition_date"]] = row["landing_rows"]
    return Reconciliation(landing=landing, accepted=accepted, quarantined=quarantined)
