"""Parse landing files against their source contract.

Every data row of a landing file ends up in exactly one of two places: the accepted
frame (typed per the contract) or the quarantine frame (one reason per row: which
column, what was wrong, the raw line). Problems with the file as a whole (missing,
not UTF-8, a required column absent) raise `LandingFileError` naming the file.
"""

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

from segmentation_platform.contracts import Column, SourceContract
from segmentation_platform.core.ingestion._tables import quarantine_schema, raw_schema

LANDING_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[._-][^/]*)?\.(csv|parquet)$")

TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f")
TRUE_WORDS = ("true", "t", "yes", "y", "1")
FALSE_WORDS = ("false", "f", "no", "n", "0")

_POLARS_TYPES = {
    "string": pl.String,
    "integer": pl.Int64,
    "decimal": pl.Float64,
    "timestamp": pl.Datetime("us"),
    "date": pl.Date,
    "boolean": pl.Boolean,
}


class LandingFileError(ValueError):
    """A landing file that cannot be read at all; the message names the file and the fix."""


@dataclass
class ParsedBatch:
    accepted: pl.DataFrame
    quarantined: pl.DataFrame
    # One row per file: partition date, file name, number of data rows it held.
    landing_counts: pl.DataFrame
    ignored_columns: list[str]


def landing_files(landing_dir: Path, source: str, day: date) -> list[Path]:
    """The files of one source and day: `<day>.csv`, `<day>_part2.csv`, `<day>.parquet`, ..."""
    folder = Path(landing_dir) / source
    if not folder.is_dir():
        return []
    wanted = day.isoformat()
    return sorted(
        p
        for p in folder.iterdir()
        if (m := LANDING_FILE.match(p.name)) and m.group(1) == wanted and p.is_file()
    )


def landing_days(landing_dir: Path, source: str) -> list[date]:
    folder = Path(landing_dir) / source
    if not folder.is_dir():
        return []
    days = {m.group(1) for p in folder.iterdir() if (m := LANDING_FILE.match(p.name))}
    return sorted(date.fromisoformat(d) for d in days)


def parse_landing_files(
    contract: SourceContract, files_by_day: dict[date, list[Path]], loaded_at: datetime, relative_to: Path
) -> ParsedBatch:
    """Parse the files of several days into one accepted and one quarantine frame."""
    accepted, quarantined, counts, ignored = [], [], [], set()
    for day, files in sorted(files_by_day.items()):
        if not files:
            raise LandingFileError(
                f"{contract.name}: no landing file for {day.isoformat()} in "
                f"{Path(relative_to) / contract.name}/ (expected {day.isoformat()}.csv or .parquet)"
            )
        for path in files:
            name = _display_name(path, relative_to)
            frame, shape_rejects, extra = _read_file(contract, path, name)
            ignored.update(extra)
            good, bad = validate(contract, frame)
            counts.append(
                {
                    "_partition_date": day,
                    "_source_file": name,
                    "landing_rows": len(frame) + len(shape_rejects),
                }
            )
            accepted.append(
                good.with_columns(pl.lit(day).alias("_partition_date"), pl.lit(name).alias("_source_file"))
            )
            quarantined.append(
                pl.concat([bad, shape_rejects], how="vertical")
                .with_columns(pl.lit(day).alias("_partition_date"), pl.lit(name).alias("_source_file"))
                .select([c for c in quarantine_schema(contract.name).names if c != "_loaded_at"])
            )
    loaded = pl.lit(loaded_at).cast(pl.Datetime("us")).alias("_loaded_at")
    accepted_frame = (
        pl.concat(accepted, how="vertical").with_columns(loaded) if accepted else _empty_accepted(contract)
    )
    quarantine_frame = (
        pl.concat(quarantined, how="vertical").with_columns(loaded) if quarantined else _empty_quarantine()
    )
    accepted_frame, duplicates = _split_duplicates(contract, accepted_frame)
    quarantine_frame = pl.concat(
        [quarantine_frame, duplicates.select(quarantine_frame.columns)], how="vertical"
    )
    landing = pl.DataFrame(
        counts, schema={"_partition_date": pl.Date, "_source_file": pl.String, "landing_rows": pl.Int64}
    )
    return ParsedBatch(
        accepted=accepted_frame.select(raw_schema(contract).names),
        quarantined=quarantine_frame.select(quarantine_schema(contract.name).names),
        landing_counts=landing,
        ignored_columns=sorted(ignored),
    )


def _display_name(path: Path, relative_to: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(relative_to).resolve()))
    except ValueError:
        return str(path)


def _read_file(
    contract: SourceContract, path: Path, name: str
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Rows as strings (plus `_line` and `raw_record`), rows of the wrong shape, ignored columns."""
    if not Path(path).is_file():
        raise LandingFileError(f"{name}: landing file not found")
    try:
        payload = Path(path).read_bytes()
    except OSError as error:
        raise LandingFileError(f"{name}: cannot read landing file ({error.strerror})") from error
    if path.suffix == ".parquet":
        return _read_parquet(contract, payload, name)
    return _read_csv(contract, payload, name)


def _check_header(contract: SourceContract, header: list[str], name: str) -> list[str]:
    missing = [c for c in contract.required_columns if c not in header]
    if missing:
        raise LandingFileError(
            f"{name}: missing required column(s) {', '.join(missing)} for source {contract.name} "
            f"(header has: {', '.join(header) or 'nothing'})"
        )
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise LandingFileError(
            f"{name}: column(s) {', '.join(duplicated)} appear more than once in the header"
        )
    return [h for h in header if h not in contract.column_names]


def _read_csv(contract: SourceContract, payload: bytes, name: str):
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = payload[: error.start].count(b"\n") + 1
        raise LandingFileError(
            f"{name}: not UTF-8 text (byte 0x{payload[error.start]:02x} at line {line}); "
            "landing files must be UTF-8 CSV with a header row, or Parquet"
        ) from error
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise LandingFileError(f"{name}: binary data (NUL byte at line {line}); expected UTF-8 CSV")
    lines = text.splitlines()
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise LandingFileError(f"{name}: empty file (no header row)") from None
    except csv.Error as error:
        raise LandingFileError(f"{name}: unreadable header row ({error})") from None
    ignored = _check_header(contract, header, name)
    width = len(header)
    values: list[list[str]] = []
    line_numbers: list[int] = []
    raws: list[str] = []
    rejects: list[dict] = []
    previous_end = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            rejects.append(_shape_reject(previous_end + 1, lines[previous_end], f"unparseable CSV ({error})"))
            previous_end = reader.line_num
            continue
        start, previous_end = previous_end + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        raw = "\n".join(lines[start - 1 : previous_end])
        if len(row) != width:
            rejects.append(
                _shape_reject(
                    start, raw, f"expected {width} fields, found {len(row)} (stray or unquoted delimiter?)"
                )
            )
            continue
        values.append(row)
        line_numbers.append(start)
        raws.append(raw)
    columns = list(zip(*values, strict=True)) if values else [()] * width
    frame = pl.DataFrame(
        {
            h: pl.Series(h, col, dtype=pl.String)
            for h, col in zip(header, columns, strict=True)
            if h in contract.column_names
        }
    )
    frame = frame.with_columns(
        pl.Series("_line", line_numbers, dtype=pl.Int64), pl.Series("raw_record", raws, dtype=pl.String)
    )
    return frame, _shape_rejects_frame(rejects), ignored


def _read_parquet(contract: SourceContract, payload: bytes, name: str):
    try:
        frame = pl.read_parquet(io.BytesIO(payload))
    except Exception as error:  # polars raises several error types for corrupt files
        raise LandingFileError(f"{name}: not a readable Parquet file ({error})") from error
    ignored = _check_header(contract, frame.columns, name)
    kept = [c for c in frame.columns if c in contract.column_names]
    as_text = frame.select(
        [
            (pl.col(c).dt.strftime("%Y-%m-%d %H:%M:%S") if frame.schema[c].is_temporal() else pl.col(c))
            .cast(pl.String)
            .alias(c)
            for c in kept
        ]
    )
    raws = [json.dumps(row, default=str) for row in frame.select(kept).rows(named=True)]
    as_text = as_text.with_columns(
        pl.int_range(1, len(as_text) + 1, dtype=pl.Int64).alias("_line"),
        pl.Series("raw_record", raws, dtype=pl.String),
    )
    return as_text, _shape_rejects_frame([]), ignored


def _shape_reject(line: int, raw: str, reason: str) -> dict:
    return {"_line": line, "column_name": None, "reason": reason, "raw_record": raw}


def _shape_rejects_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"_line": pl.Int64, "column_name": pl.String, "reason": pl.String, "raw_record": pl.String},
    )


def _parsed(column: Column, text: pl.Expr) -> pl.Expr:
    if column.type == "string":
        return text
    if column.type == "decimal":
        value = text.cast(pl.Float64, strict=False)
        return pl.when(value.is_finite()).then(value)
    if column.type == "integer":
        return text.cast(pl.Int64, strict=False)
    if column.type == "timestamp":
        cleaned = text.str.strip_suffix("Z")
        return pl.coalesce(
            [cleaned.str.strptime(pl.Datetime("us"), f, strict=False) for f in TIMESTAMP_FORMATS]
            + [cleaned.str.strptime(pl.Date, "%Y-%m-%d", strict=False).cast(pl.Datetime("us"))]
        )
    if column.type == "date":
        return text.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    if column.type == "boolean":
        lowered = text.str.to_lowercase()
        return pl.when(lowered.is_in(TRUE_WORDS)).then(True).when(lowered.is_in(FALSE_WORDS)).then(False)
    raise AssertionError(column.type)


def validate(contract: SourceContract, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split string rows into typed accepted rows and quarantined rows with their first problem."""
    missing_optional = [c.name for c in contract.columns if c.name not in frame.columns]
    frame = frame.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in missing_optional])
    text = {c.name: pl.col(c.name).str.strip_chars().replace("", None) for c in contract.columns}
    typed = frame.with_columns(
        [_parsed(c, text[c.name]).alias(c.name) for c in contract.columns]
        + [text[c.name].alias(f"__text_{c.name}") for c in contract.columns]
    )
    problems: list[tuple[str, pl.Expr, pl.Expr]] = []
    for column in contract.columns:
        raw, value = pl.col(f"__text_{column.name}"), pl.col(column.name)
        if column.required:
            problems.append((column.name, raw.is_null(), pl.lit("required value is missing")))
        if column.type != "string":
            problems.append(
                (
                    column.name,
                    raw.is_not_null() & value.is_null(),
                    pl.format("'{}' is not a valid {}", raw, pl.lit(column.type)),
                )
            )
        if column.min_value is not None:
            problems.append(
                (
                    column.name,
                    value < column.min_value,
                    pl.format("{} is below the minimum {}", raw, pl.lit(column.min_value)),
                )
            )
        if column.max_value is not None:
            problems.append(
                (
                    column.name,
                    value > column.max_value,
                    pl.format("{} is above the maximum {}", raw, pl.lit(column.max_value)),
                )
            )
        if column.allowed_values:
            allowed = ", ".join(column.allowed_values)
            problems.append(
                (
                    column.name,
                    raw.is_not_null() & ~raw.is_in(column.allowed_values),
                    pl.format("'{}' is not one of {}", raw, pl.lit(allowed)),
                )
            )
    for group in contract.require_any:
        problems.append(
            (
                ", ".join(group),
                pl.all_horizontal([pl.col(f"__text_{c}").is_null() for c in group]),
                pl.lit(f"one of {', '.join(group)} is required"),
            )
        )
    column_name = pl.coalesce([pl.when(failed).then(pl.lit(name)) for name, failed, _ in problems])
    reason = pl.coalesce([pl.when(failed).then(message) for _, failed, message in problems])
    judged = typed.with_columns(column_name.alias("column_name"), reason.alias("reason"))
    good = judged.filter(pl.col("reason").is_null()).select(contract.column_names + ["_line", "raw_record"])
    bad = judged.filter(pl.col("reason").is_not_null()).select(
        ["_line", "column_name", "reason", "raw_record"]
    )
    return good, bad


def _split_duplicates(contract: SourceContract, accepted: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row of each contract key within a day; later repeats go to quarantine."""
    key = [*contract.key, "_partition_date"]
    ordered = accepted.with_row_index("__order")
    firsts = ordered.unique(subset=key, keep="first", maintain_order=True)
    if len(firsts) == len(ordered):
        return accepted, _empty_quarantine()
    first_seen = firsts.select(
        *key, pl.col("_source_file").alias("__first_file"), pl.col("_line").alias("__first_line")
    )
    repeats = ordered.join(firsts.select("__order"), on="__order", how="anti").join(
        first_seen, on=key, how="left", nulls_equal=True
    )
    key_text = pl.concat_str(
        [pl.lit(f"{k}=") + pl.col(k).cast(pl.String).fill_null("") for k in contract.key], separator=", "
    )
    reason = pl.concat_str(
        [
            pl.lit("duplicate key "),
            key_text,
            pl.lit(" (first seen at "),
            pl.col("__first_file"),
            pl.lit(" line "),
            pl.col("__first_line").cast(pl.String),
            pl.lit(")"),
        ]
    )
    duplicates = repeats.sort("__order").select(
        "_partition_date",
        "_source_file",
        "_line",
        pl.lit(", ".join(contract.key)).alias("column_name"),
        reason.alias("reason"),
        "raw_record",
        "_loaded_at",
    )
    return firsts.drop("__order"), duplicates


def _empty_accepted(contract: SourceContract) -> pl.DataFrame:
    schema = {c.name: _POLARS_TYPES[c.type] for c in contract.columns} | {
        "_partition_date": pl.Date,
        "_source_file": pl.String,
        "_line": pl.Int64,
        "raw_record": pl.String,
        "_loaded_at": pl.Datetime("us"),
    }
    return pl.DataFrame(schema=schema)


def _empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "_partition_date": pl.Date,
            "_source_file": pl.String,
            "_line": pl.Int64,
            "column_name": pl.String,
            "reason": pl.String,
            "raw_record": pl.String,
            "_loaded_at": pl.Datetime("us"),
        }
    )
