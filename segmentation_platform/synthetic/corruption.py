"""Deliberately broken landing rows, each one recorded so tests can follow it into quarantine.

Broken rows are always extra rows: a corrupted copy of a clean row under a fresh key, or an
exact duplicate placed after its original in the same day file. The clean rows therefore
stay exactly consistent with the ground truth, and ingestion that keeps the first row of a
key and quarantines the rest never loses a clean row.

A stray delimiter is written as an unquoted comma, which the CSV writer would otherwise
quote; the value carries STRAY_MARK until the file text is produced, then the mark becomes
a bare comma.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

STRAY_MARK = "\x1f"  # ASCII unit separator: never in clean data, never quoted by the writer

BAD_DATE = "bad_date"
NEGATIVE_AMOUNT = "negative_amount"
NON_NUMERIC_AMOUNT = "non_numeric_amount"
MISSING_ID = "missing_id"
DUPLICATE = "duplicate"
STRAY_DELIMITER = "stray_delimiter"

BROKEN_ROWS_SCHEMA = {
    "source": pl.String,
    "file": pl.String,
    "partition_date": pl.Date,
    "line": pl.Int64,
    "kind": pl.String,
    "column": pl.String,
    "duplicate_of_line": pl.Int64,
}


@dataclass(frozen=True)
class BreakPlan:
    """Where a source can break: its timestamp, its money column, its ids, a text to split."""

    time_column: str
    amount_column: str | None
    missing_groups: tuple[tuple[str, ...], ...]
    stray_column: str
    stray_suffix: str | None  # None: the value is a decimal whose point becomes a comma
    # Gives a corrupted copy its own key so it never collides with its clean original.
    refresh_key: Callable[[pl.DataFrame, int, np.random.Generator], pl.DataFrame]

    @property
    def kinds(self) -> list[str]:
        kinds = [BAD_DATE]
        if self.amount_column:
            kinds += [NEGATIVE_AMOUNT, NON_NUMERIC_AMOUNT]
        if self.missing_groups:
            kinds.append(MISSING_ID)
        return kinds + [STRAY_DELIMITER, DUPLICATE]


def fresh_ids(column: str, prefix: str, width: int) -> Callable:
    """Continue the source's own id sequence past its last clean id."""

    def refresh(copies: pl.DataFrame, n_clean: int, rng: np.random.Generator) -> pl.DataFrame:
        numbers = (
            pl.Series(np.arange(n_clean + 1, n_clean + 1 + copies.height)).cast(pl.String).str.zfill(width)
        )
        return copies.with_columns((prefix + numbers).alias(column))

    return refresh


def shifted_time(column: str, start_epoch: int) -> Callable:
    """Composite keys with a timestamp (CRM versions): save the copy a few seconds later."""

    def refresh(copies: pl.DataFrame, n_clean: int, rng: np.random.Generator) -> pl.DataFrame:
        ts = copies.get_column("_ts")
        shift = pl.Series(rng.integers(1, 300, size=copies.height))
        later = ts + shift
        # Stay on the same day so the copy still belongs to the original's day file.
        shifted = pl.select(
            pl.when(later // 86_400 == ts // 86_400).then(later).otherwise(ts - shift)
        ).to_series()
        text = pl.from_epoch(shifted + start_epoch, time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        return copies.with_columns(shifted.alias("_ts"), text.alias(column))

    return refresh


def adjustment_campaign(copies: pl.DataFrame, n_clean: int, rng: np.random.Generator) -> pl.DataFrame:
    """Marketing keys are (date, channel, campaign): a broken copy is a separate adjustment line."""
    suffix = pl.Series(np.arange(1, copies.height + 1)).cast(pl.String)
    return copies.with_columns((pl.col("campaign") + "_adjustment_" + suffix).alias("campaign"))


def break_plans(start_epoch: int) -> dict[str, BreakPlan]:
    return {
        "web_orders": BreakPlan(
            "ordered_at",
            "amount",
            (("order_id",), ("account_id",)),
            "amount",
            None,
            fresh_ids("order_id", "WO", 9),
        ),
        "pos_transactions": BreakPlan(
            "purchased_at",
            "amount",
            (("receipt_id",), ("store_id",)),
            "amount",
            None,
            fresh_ids("receipt_id", "R", 10),
        ),
        "crm_contacts": BreakPlan(
            "updated_at",
            None,
            (("contact_id",),),
            "address",
            " Apt 2",
            shifted_time("updated_at", start_epoch),
        ),
        "support_tickets": BreakPlan(
            "created_at",
            None,
            (("ticket_id",), ("email", "contact_id")),
            "category",
            " returns",
            fresh_ids("ticket_id", "T", 8),
        ),
        "email_events": BreakPlan(
            "occurred_at",
            None,
            (("event_id",), ("email", "subscriber_id")),
            "campaign_id",
            " resend",
            fresh_ids("event_id", "E", 10),
        ),
        "marketing_spend": BreakPlan("date", "spend", (), "spend", None, adjustment_campaign),
    }


def add_broken_rows(
    source: str, clean: pl.DataFrame, plan: BreakPlan, share: float, rng: np.random.Generator
) -> pl.DataFrame:
    """Clean rows plus broken copies, ordered as they will be written, with `_line` and `_kind`.

    `clean` must be in chronological order with `_ts` (seconds) and `_day` columns; the
    result keeps that order and slots each broken row in after its original.
    """
    n_clean = clean.height
    clean = clean.with_columns(
        pl.int_range(n_clean, dtype=pl.Int64).alias("_order"),
        pl.lit(None, dtype=pl.String).alias("_kind"),
        pl.lit(None, dtype=pl.String).alias("_column"),
        pl.lit(None, dtype=pl.Int64).alias("_origin"),
    )
    n_broken = int(round(share * n_clean))
    if n_broken == 0:
        return _with_lines(clean)

    kinds = plan.kinds
    weights = np.array([0.3 if k == DUPLICATE else 0.7 / (len(kinds) - 1) for k in kinds])
    drawn = rng.choice(len(kinds), size=n_broken, p=weights)
    origin = np.sort(rng.choice(n_clean, size=n_broken, replace=False))
    copies = clean[origin].with_columns(
        pl.Series("_kind", [kinds[k] for k in drawn], dtype=pl.String),
        pl.Series("_origin", origin, dtype=pl.Int64),
        pl.Series("_order", n_clean + np.arange(n_broken), dtype=pl.Int64),
    )
    duplicates = copies.filter(pl.col("_kind") == DUPLICATE)
    duplicates = duplicates.with_columns(
        pl.col("_ts") + pl.Series(rng.integers(0, 3_600, size=duplicates.height))
    )
    corrupted = plan.refresh_key(copies.filter(pl.col("_kind") != DUPLICATE), n_clean, rng)
    corrupted = corrupted.with_columns(pl.col("_ts") + pl.Series(rng.integers(1, 600, size=corrupted.height)))
    parts = [duplicates.with_columns(pl.lit(None, dtype=pl.String).alias("_column"))]
    for kind in kinds:
        if kind == DUPLICATE:
            continue
        subset = corrupted.filter(pl.col("_kind") == kind)
        if subset.height:
            parts.append(_corrupt(subset, kind, plan, rng))
    broken = pl.concat(parts, how="vertical").select(clean.columns)
    return _with_lines(_merge(clean, broken))


def _corrupt(rows: pl.DataFrame, kind: str, plan: BreakPlan, rng: np.random.Generator) -> pl.DataFrame:
    n = rows.height
    if kind == BAD_DATE:
        return rows.with_columns(
            _bad_dates(
                pl.col(plan.time_column), rng.integers(0, 4, size=n), rng.integers(3, 10, size=n)
            ).alias(plan.time_column),
            pl.lit(plan.time_column).alias("_column"),
        )
    if kind == NEGATIVE_AMOUNT:
        return rows.with_columns(
            ("-" + pl.col(plan.amount_column)).alias(plan.amount_column),
            pl.lit(plan.amount_column).alias("_column"),
        )
    if kind == NON_NUMERIC_AMOUNT:
        style = pl.Series(rng.integers(0, 3, size=n))
        value = pl.col(plan.amount_column)
        text = (
            pl.when(style == 0)
            .then("$" + value)
            .when(style == 1)
            .then(value + " USD")
            .otherwise("EUR " + value)
        )
        return rows.with_columns(text.alias(plan.amount_column), pl.lit(plan.amount_column).alias("_column"))
    if kind == MISSING_ID:
        group = rng.integers(0, len(plan.missing_groups), size=n)
        pieces = []
        for g, columns in enumerate(plan.missing_groups):
            subset = rows.filter(pl.Series(group == g))
            pieces.append(
                subset.with_columns(
                    *[pl.lit(None, dtype=pl.String).alias(c) for c in columns],
                    pl.lit(", ".join(columns)).alias("_column"),
                )
            )
        return pl.concat(pieces, how="vertical")
    if kind == STRAY_DELIMITER:
        value = pl.col(plan.stray_column)
        if plan.stray_suffix is None:
            text = value.str.replace(".", STRAY_MARK, literal=True)
        else:
            cleaned = (
                value.fill_null("")
                .str.replace_all(",", "", literal=True)
                .str.replace_all('"', "", literal=True)
            )
            text = cleaned + STRAY_MARK + plan.stray_suffix
        return rows.with_columns(text.alias(plan.stray_column), pl.lit(plan.stray_column).alias("_column"))
    raise ValueError(f"unknown kind {kind}")


def _bad_dates(text: pl.Expr, style: np.ndarray, digit: np.ndarray) -> pl.Expr:
    """Dates no calendar has: month 13-19, day 32-39, February 30th, or all zeros."""
    s = pl.Series(style)
    d = pl.Series(digit).cast(pl.String)
    return (
        pl.when(s == 0)
        .then(pl.concat_str([text.str.slice(0, 5), pl.lit("1"), d, text.str.slice(7)]))
        .when(s == 1)
        .then(pl.concat_str([text.str.slice(0, 8), pl.lit("3"), d, text.str.slice(10)]))
        .when(s == 2)
        .then(pl.concat_str([text.str.slice(0, 5), pl.lit("02-30"), text.str.slice(10)]))
        .otherwise(pl.concat_str([text.str.slice(0, 4), pl.lit("-00-00"), text.str.slice(10)]))
    )


def _file_order_key(frame: pl.DataFrame) -> np.ndarray:
    return frame.get_column("_day").to_numpy() * (1 << 40) + frame.get_column("_ts").to_numpy()


def _merge(clean: pl.DataFrame, broken: pl.DataFrame) -> pl.DataFrame:
    """Slot broken rows into the clean rows' file order: by day and time, after equal clean rows.

    The clean rows are already in order, so a search places the few broken rows and a single
    gather interleaves them, instead of sorting millions of rows again.
    """
    clean_key = _file_order_key(clean)
    if np.any(np.diff(clean_key) < 0):
        raise ValueError("clean rows must be in day and time order")
    broken_key = _file_order_key(broken)
    order = np.lexsort((broken.get_column("_order").to_numpy(), broken_key))
    broken = broken[order]
    n_clean, n_broken = clean.height, broken.height
    broken_position = np.searchsorted(clean_key, broken_key[order], side="right") + np.arange(n_broken)
    taken = np.empty(n_clean + n_broken, dtype=np.int64)
    is_broken = np.zeros(n_clean + n_broken, dtype=bool)
    is_broken[broken_position] = True
    taken[broken_position] = n_clean + np.arange(n_broken)
    taken[~is_broken] = np.arange(n_clean)
    return pl.concat([clean, broken], how="vertical").gather(taken)


def _with_lines(frame: pl.DataFrame) -> pl.DataFrame:
    """The 1-based line of each row in its day file (the header is line 1)."""
    day = frame.get_column("_day").to_numpy()
    starts = np.r_[True, day[1:] != day[:-1]]
    first_of_day = np.maximum.accumulate(np.where(starts, np.arange(len(day)), 0))
    return frame.with_columns(pl.Series("_line", np.arange(len(day)) - first_of_day + 2, dtype=pl.Int64))


def broken_rows_table(source: str, written: pl.DataFrame, day_labels: list[str]) -> pl.DataFrame:
    """One row per broken line: file relative to the landing folder, line (1 = header), kind."""
    broken = written.filter(pl.col("_kind").is_not_null())
    lines_of_clean = written.filter(pl.col("_kind").is_null()).select(
        pl.col("_order").alias("_origin"), pl.col("_line").alias("_origin_line")
    )
    broken = broken.join(lines_of_clean, on="_origin", how="left")
    labels = pl.Series(day_labels, dtype=pl.String)
    day_text = labels.gather(broken.get_column("_day"))
    return pl.DataFrame(
        {
            "source": pl.Series([source] * broken.height, dtype=pl.String),
            "file": source + "/" + day_text + ".csv",
            "partition_date": day_text.str.to_date("%Y-%m-%d"),
            "line": broken.get_column("_line"),
            "kind": broken.get_column("_kind"),
            "column": broken.get_column("_column"),
            "duplicate_of_line": broken.select(
                pl.when(pl.col("_kind") == DUPLICATE).then(pl.col("_origin_line"))
            ).to_series(),
        },
        schema=BROKEN_ROWS_SCHEMA,
    )
