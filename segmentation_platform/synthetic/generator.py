"""Synthetic landing data for the whole platform, with the truth that produced it kept apart.

`generate` simulates one population and writes what six business systems would have
exported, one CSV per source and day under `landing/`, plus `ground_truth/`: who every
source record really is, each person's latent buying and churn parameters, the population
parameters, every purchase, and every deliberately broken row. Downstream stages (identity
resolution, CLV, churn, quarantine) are tested against that truth.

The output is byte-identical for the same arguments.
"""

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from scipy.special import hyp2f1

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.synthetic import sources
from segmentation_platform.synthetic.corruption import (
    BROKEN_ROWS_SCHEMA,
    STRAY_DELIMITER,
    STRAY_MARK,
    add_broken_rows,
    break_plans,
    broken_rows_table,
)
from segmentation_platform.synthetic.names import REGIONS, STREET_TYPES
from segmentation_platform.synthetic.pii import (
    FIRST_NAME_VOCABULARY,
    LAST_NAME_VOCABULARY,
    STREET_NAME_VOCABULARY,
)
from segmentation_platform.synthetic.population import (
    CATEGORIES,
    CHANNELS,
    SECONDS_PER_DAY,
    TrueParameters,
    simulate_population,
    simulate_purchases,
)

# Build order matters: email subscriptions feed CRM consent, CRM contacts feed web orders.
SOURCE_BUILDERS: tuple[tuple[str, Callable[[sources.World], pl.DataFrame]], ...] = (
    ("email_events", sources.email_events),
    ("crm_contacts", sources.crm_contacts),
    ("web_orders", sources.web_orders),
    ("pos_transactions", sources.pos_transactions),
    ("support_tickets", sources.support_tickets),
    ("marketing_spend", sources.marketing_spend),
)
# A day file, or a campaign-response file of that day (synthetic.response): a new data set
# replaces both, since responses answer campaigns on the data they were simulated for.
DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}(_campaign-\d{4}-\d{2}-\d{2})?\.csv$")

# The identity key map's source_id per source, mirroring contracts' person_ref SQL.
PERSON_REF: dict[str, pl.Expr] = {
    "web_orders": pl.col("account_id"),
    "pos_transactions": pl.coalesce(
        pl.col("loyalty_id"),
        pl.when(pl.coalesce(pl.col("phone"), pl.col("email")).is_not_null()).then(
            "receipt:" + pl.col("receipt_id")
        ),
    ),
    "crm_contacts": pl.col("contact_id"),
    "support_tickets": pl.col("ticket_id"),
    "email_events": pl.coalesce(
        pl.col("subscriber_id"), "email:" + pl.col("email").str.strip_chars(" ").str.to_lowercase()
    ),
}


@dataclass(frozen=True)
class SourceSummary:
    rows: int  # data rows written, broken ones included
    broken_rows: int
    files: int


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    persons: int
    start: date
    end: date
    seed: int
    sources: dict[str, SourceSummary] = field(default_factory=dict)
    identity_records: int = 0
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.sources.values())

    @property
    def total_broken_rows(self) -> int:
        return sum(s.broken_rows for s in self.sources.values())

    def __str__(self) -> str:
        lines = [
            f"{self.persons:,} persons, {self.start} to {self.end}, seed {self.seed} -> {self.out_dir}",
            f"{'source':<18} {'rows':>12} {'broken':>8} {'files':>6}",
        ]
        for name, s in self.sources.items():
            lines.append(f"{name:<18} {s.rows:>12,} {s.broken_rows:>8,} {s.files:>6,}")
        lines.append(f"{'total':<18} {self.total_rows:>12,} {self.total_broken_rows:>8,}")
        lines.append(f"identity records: {self.identity_records:,}; {self.seconds:.1f} s")
        return "\n".join(lines)


def generate(
    out_dir: Path,
    persons: int,
    start: date,
    end: date,
    seed: int = 42,
    broken_share: float = 0.005,
    progress: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Write `landing/<source>/<day>.csv` and `ground_truth/` under `out_dir`.

    Day files of the six sources left by an earlier run are replaced, so the landing folder
    always matches the truth written next to it.
    """
    if persons < 1:
        raise ValueError("persons must be at least 1")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if not 0 <= broken_share < 0.5:
        raise ValueError("broken_share must be in [0, 0.5)")
    say = progress or (lambda _line: None)
    began = time.perf_counter()
    out_dir = Path(out_dir)
    landing, truth = out_dir / "landing", out_dir / "ground_truth"
    truth.mkdir(parents=True, exist_ok=True)
    (truth / "uplift.json").unlink(missing_ok=True)  # the simulated responses it described are gone

    params = TrueParameters()
    n_days = (end - start).days + 1
    population = simulate_population(persons, start, n_days, seed, params)
    purchases = simulate_purchases(population, seed, params)
    world = sources.World(start=start, n_days=n_days, seed=seed, population=population, purchases=purchases)
    sources.split_purchases(world)
    sources.create_accounts(world)
    sources.create_loyalty(world)
    sources.create_contacts(world)
    households = int(population.col("household").max()) + 1
    say(f"population: {persons:,} persons in {households:,} households, {len(purchases.person):,} purchases")

    day_labels = [(start + timedelta(days=d)).isoformat() for d in range(n_days)]
    plans = break_plans(world.start_epoch)
    summaries: dict[str, SourceSummary] = {}
    broken_tables, identity_tables, purchase_tables = [], [], []
    for name, build in SOURCE_BUILDERS:
        # The clean frame is not kept: only the written one (clean + broken) stays in memory.
        written = add_broken_rows(
            name,
            build(world).with_columns((pl.col("_ts") // SECONDS_PER_DAY).alias("_day")),
            plans[name],
            broken_share,
            world.rng(f"broken:{name}"),
        )
        files = _write_day_files(landing / name, written, CONTRACTS[name].column_names, day_labels)
        broken = broken_rows_table(name, written, day_labels)
        broken_tables.append(broken)
        if name in PERSON_REF:
            identity_tables.append(_identity_records(name, written, population.frame))
        if name in ("web_orders", "pos_transactions"):
            purchase_tables.append(_purchase_records(name, written, population.frame, world.start_epoch))
        summaries[name] = SourceSummary(rows=written.height, broken_rows=broken.height, files=files)
        say(f"{name}: {written.height:,} rows in {files:,} files ({broken.height:,} broken)")
        del written

    identity = pl.concat(identity_tables).sort(["source", "source_id"])
    duplicated = identity.filter(pl.struct("source", "source_id").is_duplicated())
    if duplicated.height:
        raise AssertionError(f"ground truth maps a source record to two persons: {duplicated.head(3)}")
    identity.write_parquet(truth / "identity.parquet")
    pl.concat(broken_tables).cast(BROKEN_ROWS_SCHEMA).sort(["source", "file", "line"]).write_parquet(
        truth / "broken_rows.parquet"
    )
    pl.concat(purchase_tables).sort(["purchased_at", "source", "transaction_id"]).write_parquet(
        truth / "purchases.parquet"
    )
    _persons_truth(world, params).write_parquet(truth / "persons.parquet")
    (truth / "params.json").write_text(
        json.dumps(
            _params_json(params, world, persons, start, end, seed, broken_share), indent=2, sort_keys=True
        )
        + "\n"
    )
    say(f"ground truth: {identity.height:,} identity records, {persons:,} persons -> {truth}")
    return GenerationSummary(
        out_dir=out_dir,
        persons=persons,
        start=start,
        end=end,
        seed=seed,
        sources=summaries,
        identity_records=identity.height,
        seconds=time.perf_counter() - began,
    )


def _write_day_files(folder: Path, written: pl.DataFrame, columns: list[str], day_labels: list[str]) -> int:
    """One CSV per day of the period, header-only on a day without rows (as a daily export
    job would write it, so a missing file means a missing delivery); a stray-delimiter mark
    becomes a bare, unquoted comma."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if DAY_FILE.match(stale.name):
            stale.unlink()
    header = ",".join(columns) + "\n"
    for label in day_labels:
        (folder / f"{label}.csv").write_text(header, encoding="utf-8")
    if written.height == 0:
        return len(day_labels)
    table = written.select(columns)
    day = written.get_column("_day").to_numpy()
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    lengths = np.diff(np.r_[starts, len(day)])
    stray_days = set(written.filter(pl.col("_kind") == STRAY_DELIMITER).get_column("_day").to_list())
    for offset, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        chunk = table.slice(offset, length)
        path = folder / f"{day_labels[day[offset]]}.csv"
        if day[offset] in stray_days:
            path.write_text(chunk.write_csv().replace(STRAY_MARK, ","), encoding="utf-8")
        else:
            chunk.write_csv(path)
    return len(day_labels)


def _identity_records(source: str, written: pl.DataFrame, persons: pl.DataFrame) -> pl.DataFrame:
    refs = (
        written.filter(pl.col("_person") >= 0)
        .select(PERSON_REF[source].alias("source_id"), "_person")
        .filter(pl.col("source_id").is_not_null())
        .unique(maintain_order=True)
    )
    return refs.select(
        pl.lit(source).alias("source"),
        "source_id",
        persons.get_column("person_id").gather(refs.get_column("_person")).alias("person_id"),
    )


def _purchase_records(
    source: str, written: pl.DataFrame, persons: pl.DataFrame, start_epoch: int
) -> pl.DataFrame:
    clean = written.filter(pl.col("_kind").is_null())
    person = clean.get_column("_person")
    id_column = "order_id" if source == "web_orders" else "receipt_id"
    return pl.DataFrame(
        {
            "source": pl.Series([source] * clean.height, dtype=pl.String),
            "transaction_id": clean.get_column(id_column),
            "person_id": pl.select(
                pl.when(person >= 0).then(persons.get_column("person_id").gather(person.clip(0)))
            ).to_series(),
            "purchased_at": pl.from_epoch(clean.get_column("_ts") + start_epoch, time_unit="s"),
            "amount": clean.get_column("amount_cents") / 100.0,
        }
    )


def _persons_truth(world: sources.World, params: TrueParameters) -> pl.DataFrame:
    """Everything about a person that no landing file states outright."""
    p, purchases = world.population, world.purchases
    frame = p.frame
    n = p.size
    start_epoch = world.start_epoch

    def as_timestamp(seconds: np.ndarray) -> pl.Series:
        return pl.from_epoch(pl.Series(seconds.astype(np.int64) + start_epoch), time_unit="s")

    def as_date(days: np.ndarray) -> pl.Series:
        return (pl.Series(np.floor(days).astype(np.int64)) + (world.start - date(1970, 1, 1)).days).cast(
            pl.Date
        )

    death_days = purchases.death_days
    dropped_inside = death_days < world.n_days
    purchase_count = np.bincount(purchases.person, minlength=n)
    revenue = np.bincount(purchases.person, weights=purchases.amount_cents, minlength=n) / 100.0
    last_ts = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_ts, purchases.person, world.purchase_ts)

    def per_person(table: pl.DataFrame, value: str) -> pl.Series:
        joined = pl.DataFrame({"person": np.arange(n)}).join(
            table.select("person", value), on="person", how="left"
        )
        return joined.sort("person").get_column(value)

    accounts = world.accounts.group_by("person").agg(pl.len().alias("web_accounts"))
    contacts = world.contacts.group_by("person").agg(pl.len().alias("crm_contacts"))
    subscriptions = world.subscriptions.select(
        "person",
        pl.from_epoch(pl.col("subscribed_ts") + start_epoch, time_unit="s").alias("subscribed_at"),
        pl.from_epoch(pl.col("unsubscribed_ts") + start_epoch, time_unit="s").alias("unsubscribed_at"),
    )
    area, exchange, line = (frame.get_column(c) for c in ("mobile_area", "mobile_exchange", "mobile_line"))
    landline = pl.concat_str(
        [
            pl.lit("+1"),
            frame.get_column("landline_area").cast(pl.String),
            frame.get_column("landline_exchange").cast(pl.String),
            frame.get_column("landline_line").cast(pl.String).str.zfill(4),
        ]
    )
    street_types = pl.Series([full for full, _ in STREET_TYPES], dtype=pl.String)
    canonical_address = pl.concat_str(
        [
            frame.get_column("house_number").cast(pl.String),
            pl.lit(" "),
            STREET_NAME_VOCABULARY.gather(frame.get_column("street")),
            pl.lit(" "),
            street_types.gather(frame.get_column("street_type")),
            pl.when(frame.get_column("unit") > 0)
            .then(pl.concat_str([pl.lit(" Apt "), frame.get_column("unit").cast(pl.String)]))
            .otherwise(pl.lit("")),
        ]
    )
    channel_names = pl.Series([c.name for c in CHANNELS], dtype=pl.String)
    truth = pl.DataFrame(
        {
            "person_id": frame.get_column("person_id"),
            "household_id": "H" + (frame.get_column("household") + 1).cast(pl.String).str.zfill(7),
            "sex": pl.Series(np.where(frame.get_column("female").to_numpy(), "female", "male")),
            "first_name": FIRST_NAME_VOCABULARY.gather(frame.get_column("given")),
            "last_name": LAST_NAME_VOCABULARY.gather(frame.get_column("last")),
            "birth_date": frame.get_column("birth_date"),
            "address": pl.select(canonical_address).to_series(),
            "postcode": frame.get_column("postcode"),
            "personal_email": frame.get_column("personal_email"),
            "work_email": frame.get_column("work_email"),
            "alternate_email": frame.get_column("alternate_email"),
            "mobile_phone": pl.select(
                pl.concat_str(
                    [
                        pl.lit("+1"),
                        area.cast(pl.String),
                        exchange.cast(pl.String),
                        line.cast(pl.String).str.zfill(4),
                    ]
                )
            ).to_series(),
            "landline_phone": pl.select(pl.when(frame.get_column("has_landline")).then(landline)).to_series(),
            "home_store_id": "S" + (frame.get_column("home_store") + 1).cast(pl.String).str.zfill(3),
            "acquisition_date": as_date(frame.get_column("acquisition_day").to_numpy().astype(float)),
            "acquired_at": as_timestamp(world.acquisition_ts),
            "acquisition_channel": channel_names.gather(frame.get_column("channel")),
            "purchase_rate_per_day": frame.get_column("purchase_rate"),
            "dropout_probability": frame.get_column("dropout_probability"),
            "repeat_purchases_until_dropout": pl.Series(purchases.repeat_limit.astype(np.int64)),
            "dropout_date": pl.select(
                pl.when(pl.Series(dropped_inside)).then(as_date(death_days))
            ).to_series(),
            "latent_dropout_date": as_date(death_days),
            "alive_at_end": pl.Series(~dropped_inside),
            "spend_rate_nu": frame.get_column("spend_rate"),
            # Gamma-Gamma: a person's true mean order value is p / nu.
            "expected_order_value": params.gg_p / frame.get_column("spend_rate"),
            "web_share": frame.get_column("web_share"),
            "purchases_in_period": pl.Series(purchase_count.astype(np.int64)),
            "revenue_in_period": pl.Series(np.round(revenue, 2)),
            "last_purchase_at": as_timestamp(last_ts),
            "web_accounts": per_person(accounts, "web_accounts").fill_null(0).cast(pl.Int64),
            "crm_contacts": per_person(contacts, "crm_contacts").fill_null(0).cast(pl.Int64),
            "loyalty_id": per_person(world.loyalty, "loyalty_id"),
            "subscribed_at": per_person(subscriptions, "subscribed_at"),
            "unsubscribed_at": per_person(subscriptions, "unsubscribed_at"),
        }
    )
    return truth.with_columns(pl.col("dropout_date").alias("churn_date"))


def expected_purchases_per_person(params: TrueParameters, n_days: int) -> float:
    """E[1 + X(T)] under BG/NBD with T the time from a uniform acquisition day to the end.

    E[X(t)] = (a+b-1)/(a-1) * [1 - (alpha/(alpha+t))^r * 2F1(r, b; a+b-1; t/(alpha+t))].
    """
    window_days = max(1, int(round(n_days * params.acquisition_window_share)))
    t = n_days - (np.arange(window_days) + 0.5)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = (
        (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    )
    return float(1 + repeat.mean())


def _params_json(
    params: TrueParameters,
    world: sources.World,
    persons: int,
    start: date,
    end: date,
    seed: int,
    share: float,
) -> dict:
    return {
        **params.as_json(),
        "seed": seed,
        "generation": {
            "persons": persons,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "seed": seed,
            "broken_share": share,
        },
        "expected_purchases_per_person": expected_purchases_per_person(params, world.n_days),
        "channels": {
            c.name: {
                "acquisition_share": c.share,
                "cac": c.cac,
                "online": c.online,
                "campaigns": list(c.campaigns),
            }
            for c in CHANNELS
        },
        "categories": {name: {"margin": margin, "basket_share": share} for name, margin, share in CATEGORIES},
        "churn": {
            "definition": "a person is churned at date d iff persons.dropout_date <= d; dropout happens right "
            "after the last purchase (BG/NBD). dropout_date is null for people still active at the end; "
            "latent_dropout_date continues the process beyond the period (capped at 50 years).",
            "email_engagement_drop_days_before_dropout": sources.PRE_DROPOUT_DAYS,
            "support_ticket_rise_days_before_dropout": sources.TICKET_PRE_DROPOUT_DAYS,
            "by_state": "active, in the days before dropout, after dropout",
            "email_open_factor_by_state": list(sources.EMAIL_OPEN_FACTOR),
            "email_click_share_of_opens_by_state": list(sources.EMAIL_CLICK_SHARE),
            "email_unsubscribe_rate_per_send_by_state": list(sources.EMAIL_UNSUBSCRIBE_RATE),
            "support_tickets_per_year_by_state": list(sources.TICKET_RATE_PER_YEAR),
        },
        "regions": len(REGIONS),
        "ground_truth_files": {
            "identity.parquet": "source, source_id (the contract's person_ref), person_id",
            "persons.parquet": "one row per person: latent parameters, dropout, contact details",
            "purchases.parquet": "every clean web order and store receipt with its person (null: walk-in)",
            "broken_rows.parquet": "every deliberately broken landing line: source, file, line, kind",
        },
    }
