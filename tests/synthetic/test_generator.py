"""The synthetic generator: contract-shaped landing files, and ground truth that really describes them.

Downstream tests (identity resolution, CLV, quarantine) trust the ground truth; these
tests make sure that trust is deserved.
"""

import csv
import hashlib
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import phonenumbers
import polars as pl
import pytest

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.synthetic.generator import expected_purchases_per_person, generate
from segmentation_platform.synthetic.population import (
    CHANNELS,
    TrueParameters,
    simulate_population,
    simulate_purchases,
)

START, END = date(2024, 1, 1), date(2024, 9, 30)
BROKEN_SHARE = 0.02
ALL_KINDS = {
    "bad_date",
    "negative_amount",
    "non_numeric_amount",
    "missing_id",
    "duplicate",
    "stray_delimiter",
}


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, persons=1500, start=START, end=END, seed=7, broken_share=BROKEN_SHARE)
    return out


@pytest.fixture(scope="module")
def landing_lines(medium) -> dict[str, list[str]]:
    """Every landing file's lines, keyed by its path relative to landing/."""
    landing = medium / "landing"
    return {
        str(path.relative_to(landing)): path.read_text(encoding="utf-8").splitlines()
        for path in sorted(landing.glob("*/*.csv"))
    }


@pytest.fixture(scope="module")
def broken(medium) -> pl.DataFrame:
    return pl.read_parquet(medium / "ground_truth" / "broken_rows.parquet")


@pytest.fixture(scope="module")
def persons(medium) -> pl.DataFrame:
    return pl.read_parquet(medium / "ground_truth" / "persons.parquet")


def _broken_lines(broken: pl.DataFrame) -> set[tuple[str, int]]:
    return set(zip(broken["file"].to_list(), broken["line"].to_list(), strict=True))


def _clean_records(landing_lines, broken, source: str):
    """Rows of one source that are not deliberately broken, as dicts with ingestion's trimming."""
    skip = _broken_lines(broken)
    header = CONTRACTS[source].column_names
    for file, lines in landing_lines.items():
        if not file.startswith(source + "/"):
            continue
        for number, fields in enumerate(csv.reader(lines[1:]), start=2):
            if (file, number) in skip:
                continue
            yield file, number, {h: (v.strip() or None) for h, v in zip(header, fields, strict=True)}


def _clean_frame(landing_lines, broken, source: str) -> pl.DataFrame:
    columns = CONTRACTS[source].column_names
    rows = [record for _, _, record in _clean_records(landing_lines, broken, source)]
    return pl.DataFrame(rows, schema={c: pl.String for c in columns}, orient="row")


def _parses_as_time(text: str) -> bool:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            datetime.strptime(text, fmt)
            return True
        except ValueError:
            pass
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    args = {"persons": 150, "start": date(2024, 3, 1), "end": date(2024, 3, 28)}
    generate(tmp_path / "a", seed=3, **args)
    generate(tmp_path / "b", seed=3, **args)
    generate(tmp_path / "c", seed=4, **args)
    first, second, other = (_hash_tree(tmp_path / name) for name in "abc")
    assert first == second
    assert len(first) > 50
    landing_only = {k: v for k, v in first.items() if k.startswith("landing")}
    assert landing_only != {k: v for k, v in other.items() if k.startswith("landing")}


def test_rerun_replaces_day_files_and_campaign_responses_of_a_previous_run(tmp_path):
    generate(tmp_path, persons=60, start=date(2024, 1, 1), end=date(2024, 2, 15))
    # What `segmentation-platform respond` leaves: responses to a campaign on the old data.
    (tmp_path / "landing" / "web_orders" / "2024-01-05_campaign-2024-01-01.csv").write_text("x\n")
    (tmp_path / "ground_truth" / "uplift.json").write_text("{}")
    (tmp_path / "landing" / "web_orders" / "notes.txt").write_text("not ours")
    generate(tmp_path, persons=60, start=date(2024, 1, 1), end=date(2024, 1, 10))
    days = {p.stem for p in (tmp_path / "landing").glob("*/*.csv")}
    assert max(days) <= "2024-01-10"
    assert not any("campaign" in day for day in days)
    assert not (tmp_path / "ground_truth" / "uplift.json").exists()
    assert (tmp_path / "landing" / "web_orders" / "notes.txt").exists()


def test_summary_counts_match_the_files(medium, landing_lines, broken):
    summary = generate(medium.parent / "summary", persons=100, start=START, end=date(2024, 1, 31), seed=1)
    text = str(summary)
    for name in CONTRACTS:
        assert name in text
    assert summary.total_rows == sum(s.rows for s in summary.sources.values())
    files = list((medium.parent / "summary" / "landing" / "web_orders").glob("*.csv"))
    assert summary.sources["web_orders"].files == len(files)


def test_every_source_has_a_file_per_day_with_exactly_the_contract_columns(landing_lines):
    sources_seen = {file.split("/")[0] for file in landing_lines}
    assert sources_seen == set(CONTRACTS)
    for source in CONTRACTS:
        days = sorted(f.split("/")[1] for f in landing_lines if f.startswith(source + "/"))
        assert len(days) == len(set(days)) and len(days) > 1
        assert date.fromisoformat(days[-1].removesuffix(".csv")) - date.fromisoformat(
            days[0].removesuffix(".csv")
        ) == timedelta(days=len(days) - 1)
    for file, lines in landing_lines.items():
        header = next(csv.reader([lines[0]]))
        assert header == CONTRACTS[file.split("/")[0]].column_names, file
    assert sum(len(lines) > 1 for lines in landing_lines.values()) > len(landing_lines) / 2


def test_clean_rows_are_valid_and_belong_to_their_file_day(landing_lines, broken):
    for source, contract in CONTRACTS.items():
        keys = {}
        for file, line, record in _clean_records(landing_lines, broken, source):
            day = file.split("/")[1].removesuffix(".csv")
            assert record[contract.event_time][:10] == day, (file, line)
            for column in contract.columns:
                value = record[column.name]
                if column.required:
                    assert value is not None, (file, line, column.name)
                if value is None:
                    continue
                if column.type in ("timestamp", "date"):
                    assert _parses_as_time(value), (file, line, column.name, value)
                if column.type in ("decimal", "integer"):
                    assert _is_number(value) and float(value) >= (column.min_value or 0), (file, line, value)
                if column.max_value is not None:
                    assert float(value) <= column.max_value
                if column.allowed_values:
                    assert value in column.allowed_values
                if column.type == "boolean":
                    assert value in ("true", "false")
            for group in contract.require_any:
                assert any(record[c] is not None for c in group), (file, line, group)
            key = (file, tuple(record[k] for k in contract.key))
            assert key not in keys, f"clean rows {keys.get(key)} and {line} of {file} share a key"
            keys[key] = line


def test_broken_rows_point_at_lines_that_are_broken_in_the_recorded_way(landing_lines, broken):
    assert set(broken["kind"].unique()) == ALL_KINDS
    for row in broken.iter_rows(named=True):
        lines = landing_lines[row["file"]]
        text = lines[row["line"] - 1]
        header = next(csv.reader([lines[0]]))
        fields = next(csv.reader([text]))
        kind = row["kind"]
        assert row["file"].startswith(row["source"] + "/")
        assert row["partition_date"].isoformat() in row["file"]
        if kind == "stray_delimiter":
            assert len(fields) == len(header) + 1, text
            continue
        record = dict(zip(header, fields, strict=True))
        if kind == "bad_date":
            assert not _parses_as_time(record[row["column"]]), text
        elif kind == "negative_amount":
            assert float(record[row["column"]]) < 0, text
        elif kind == "non_numeric_amount":
            assert not _is_number(record[row["column"]]), text
        elif kind == "missing_id":
            assert all(record[c].strip() == "" for c in row["column"].split(", ")), text
        elif kind == "duplicate":
            assert row["duplicate_of_line"] < row["line"]
            assert lines[row["duplicate_of_line"] - 1] == text


def test_broken_share_is_close_to_the_requested_share(landing_lines, broken):
    data_rows = sum(len(lines) - 1 for lines in landing_lines.values())
    share = broken.height / data_rows
    assert abs(share - BROKEN_SHARE) < 0.25 * BROKEN_SHARE
    assert broken.select(pl.struct("file", "line").is_unique().all()).item()


def test_identity_truth_covers_every_person_ref_in_landing(medium, landing_lines, broken, persons):
    """Evaluate the contract's own person_ref SQL on the landing rows, as ingestion will."""
    identity = pl.read_parquet(medium / "ground_truth" / "identity.parquet")
    assert identity.columns == ["source", "source_id", "person_id"]
    assert identity.select(pl.struct("source", "source_id").is_unique().all()).item()
    assert set(identity["person_id"].unique()) <= set(persons["person_id"])
    known = set(zip(identity["source"].to_list(), identity["source_id"].to_list(), strict=True))
    stray = set(
        zip(
            *broken.filter(pl.col("kind") == "stray_delimiter").select("file", "line").to_dict().values(),
            strict=True,
        )
    )
    connection = duckdb.connect()
    for source, contract in CONTRACTS.items():
        if contract.person_ref is None:
            continue
        records = [
            {h: (v.strip() or None) for h, v in zip(contract.column_names, fields, strict=True)}
            for file, lines in landing_lines.items()
            if file.startswith(source + "/")
            for number, fields in enumerate(csv.reader(lines[1:]), start=2)
            if (file, number) not in stray
        ]
        frame = pd.DataFrame(records, columns=contract.column_names).astype(object)
        connection.register("landing_rows", frame)
        refs = connection.execute(
            f"SELECT DISTINCT ref FROM (SELECT {contract.person_ref} AS ref FROM landing_rows) WHERE ref IS NOT NULL"
        ).fetchall()
        connection.unregister("landing_rows")
        assert refs, source
        missing = [ref for (ref,) in refs if (source, ref) not in known]
        assert not missing, f"{source}: {len(missing)} person refs without truth, e.g. {missing[:3]}"


def test_anonymous_receipts_exist_and_are_not_in_identity(landing_lines, broken):
    anonymous = sum(
        1
        for _, _, r in _clean_records(landing_lines, broken, "pos_transactions")
        if r["loyalty_id"] is None and r["phone"] is None and r["email"] is None
    )
    assert anonymous > 0


def test_phones_and_emails_are_noisy_spellings_of_the_true_ones(landing_lines, broken, persons):
    true_phones = set(persons["mobile_phone"].to_list()) | set(
        persons["landline_phone"].drop_nulls().to_list()
    )
    true_emails = set()
    for column in ("personal_email", "work_email", "alternate_email"):
        true_emails |= set(persons[column].drop_nulls().to_list())
    phone_styles, raw_emails, mistyped = set(), set(), []
    n_emails = 0
    for source in ("web_orders", "pos_transactions", "crm_contacts", "support_tickets", "email_events"):
        for _, _, record in _clean_records(landing_lines, broken, source):
            phone, email = record.get("phone"), record.get("email")
            if phone:
                number = phonenumbers.parse(phone, "US")
                assert phonenumbers.is_valid_number(number), phone
                assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) in true_phones
                phone_styles.add("".join("9" if c.isdigit() else c for c in phone))
            if email:
                n_emails += 1
                raw_emails.add(email)
                if email.lower() not in true_emails:
                    mistyped.append((source, email.lower()))
    assert len(phone_styles) >= 6
    assert any(e != e.lower() for e in raw_emails)
    # Hand-typed mailboxes (CRM edits, second web accounts) carry a few one-keystroke slips;
    # sign-up addresses, subscriptions, receipts and tickets do not.
    assert mistyped and len(mistyped) < 0.02 * n_emails
    assert {source for source, _ in mistyped} <= {"crm_contacts", "web_orders"}
    near = (
        duckdb.connect()
        .execute(
            "SELECT count(DISTINCT m.email) FROM (SELECT unnest(?) AS email) m, (SELECT unnest(?) AS email) t "
            "WHERE split_part(m.email, '@', 2) = split_part(t.email, '@', 2) "
            "AND damerau_levenshtein(m.email, t.email) = 1",
            [[e for _, e in mistyped], sorted(true_emails)],
        )
        .fetchall()[0][0]
    )
    assert near == len({e for _, e in mistyped})


def test_some_emails_carry_the_whitespace_ingestion_must_trim(landing_lines):
    padded = []
    for lines in landing_lines.values():
        header = next(csv.reader([lines[0]]))
        if "email" not in header:
            continue
        position = header.index("email")
        padded += [
            f[position]
            for f in csv.reader(lines[1:])
            if len(f) > position and f[position] != f[position].strip()
        ]
    assert padded


def test_identity_noise_people_have_several_ids_and_households_share_addresses(medium, persons):
    identity = pl.read_parquet(medium / "ground_truth" / "identity.parquet")
    per_person = identity.group_by("person_id", "source").len()
    assert per_person.filter(pl.col("source") == "web_orders", pl.col("len") > 1).height > 0
    assert per_person.filter(pl.col("source") == "crm_contacts", pl.col("len") > 1).height > 0
    shared = persons.group_by("address", "postcode").agg(
        pl.len(), pl.col("last_name").n_unique().alias("names")
    )
    assert shared.filter(pl.col("len") >= 2, pl.col("names") == 1).height > 0
    # 70% of people plus every loyalty member have a CRM contact.
    assert 0.75 < (persons["crm_contacts"] > 0).mean() < 0.95
    members = persons.filter(pl.col("loyalty_id").is_not_null())
    assert members.height > 0 and (members["crm_contacts"] > 0).all()


def test_bgnbd_purchase_counts_match_the_true_parameters():
    params = TrueParameters()
    population = simulate_population(30_000, date(2024, 1, 1), 730, 11, params)
    purchases = simulate_purchases(population, 11, params)
    mean_purchases = len(purchases.person) / population.size
    expected = expected_purchases_per_person(params, 730)
    assert mean_purchases == pytest.approx(expected, rel=0.03)

    # The closed form itself, against a Monte Carlo of E[1 + (1 - exp(-lambda p t)) / p].
    rng = np.random.default_rng(0)
    n = 400_000
    rate = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    t = 730 - (rng.integers(0, 584, n) + 0.5)
    assert np.mean(1 + (1 - np.exp(-rate * p * t)) / p) == pytest.approx(expected, rel=0.02)

    order_value = purchases.amount_cents.mean() / 100
    assert order_value == pytest.approx(params.gg_p * params.gg_gamma / (params.gg_q - 1), rel=0.05)


def test_ground_truth_params_and_persons_describe_the_run(medium, persons):
    params = json.loads((medium / "ground_truth" / "params.json").read_text())
    assert params["time_unit"] == "days"
    assert set(params["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(params["gamma_gamma"]) == {"p", "q", "gamma"}
    assert params["generation"] == {
        "persons": 1500,
        "start": START.isoformat(),
        "end": END.isoformat(),
        "seed": 7,
        "broken_share": BROKEN_SHARE,
    }
    assert persons.height == 1500
    assert persons["purchases_in_period"].mean() == pytest.approx(
        params["expected_purchases_per_person"], rel=0.25
    )
    churned = persons.filter(pl.col("dropout_date").is_not_null())
    assert churned.height > 0
    assert (churned["dropout_date"] <= END).all()
    assert (churned["dropout_date"] == churned["last_purchase_at"].dt.date()).mean() > 0.95
    alive = persons.filter(pl.col("dropout_date").is_null())
    assert (alive["latent_dropout_date"] > END).all()
    assert (persons["acquisition_date"] <= persons["last_purchase_at"].dt.date()).all()


def test_engagement_fades_and_tickets_rise_around_dropout(medium, landing_lines, broken, persons):
    identity = pl.read_parquet(medium / "ground_truth" / "identity.parquet")
    events = _clean_frame(landing_lines, broken, "email_events")
    events = events.with_columns(
        pl.coalesce("subscriber_id", "email:" + pl.col("email").str.strip_chars().str.to_lowercase()).alias(
            "ref"
        )
    ).join(
        identity.filter(pl.col("source") == "email_events").select(
            pl.col("source_id").alias("ref"), "person_id"
        ),
        on="ref",
    )
    events = events.join(persons.select("person_id", "dropout_date"), on="person_id").with_columns(
        (pl.col("occurred_at").str.slice(0, 10).str.to_date() >= pl.col("dropout_date"))
        .fill_null(False)
        .alias("after_dropout")
    )
    rates = events.group_by("after_dropout").agg(
        ((pl.col("event_type") == "open").sum() / (pl.col("event_type") == "send").sum()).alias("open_rate"),
        ((pl.col("event_type") == "unsubscribe").sum() / (pl.col("event_type") == "send").sum()).alias(
            "unsub"
        ),
    )
    before = rates.filter(~pl.col("after_dropout")).row(0, named=True)
    after = rates.filter(pl.col("after_dropout")).row(0, named=True)
    assert after["open_rate"] < 0.6 * before["open_rate"]
    assert after["unsub"] > before["unsub"]

    tickets = _clean_frame(landing_lines, broken, "support_tickets")
    tickets = tickets.join(
        identity.filter(pl.col("source") == "support_tickets").select(
            pl.col("source_id").alias("ticket_id"), "person_id"
        ),
        on="ticket_id",
    ).join(persons.select("person_id", "latent_dropout_date"), on="person_id")
    days_before = (
        pl.col("latent_dropout_date") - pl.col("created_at").str.slice(0, 10).str.to_date(strict=False)
    ).dt.total_days()
    satisfaction = (
        tickets.with_columns(
            days_before.is_between(0, 60).alias("pre_dropout"),
            pl.col("satisfaction").cast(pl.Int64, strict=False),
        )
        .group_by("pre_dropout")
        .agg(pl.col("satisfaction").mean())
    )
    pre = satisfaction.filter(pl.col("pre_dropout"))["satisfaction"].item()
    other = satisfaction.filter(~pl.col("pre_dropout"))["satisfaction"].item()
    assert pre < other - 0.5


def test_marketing_spend_follows_each_channels_cac(landing_lines, broken, persons):
    spend = _clean_frame(landing_lines, broken, "marketing_spend").with_columns(
        pl.col("spend").cast(pl.Float64)
    )
    per_channel = spend.group_by("channel").agg(pl.col("spend").sum())
    acquired = persons.group_by("acquisition_channel").len()
    for channel in CHANNELS:
        if channel.cac is None:
            assert channel.name not in per_channel["channel"].to_list()
            continue
        total = per_channel.filter(pl.col("channel") == channel.name)["spend"].item()
        count = acquired.filter(pl.col("acquisition_channel") == channel.name)["len"].item()
        assert total / count == pytest.approx(channel.cac, rel=0.25), channel.name


def test_cross_references_between_systems_point_at_the_same_person(medium, landing_lines, broken):
    """CRM's loyalty and web-account links and the shop's CRM link agree with the identity truth."""
    identity = pl.read_parquet(medium / "ground_truth" / "identity.parquet")
    person_of = dict(
        zip(
            zip(identity["source"].to_list(), identity["source_id"].to_list(), strict=True),
            identity["person_id"].to_list(),
            strict=True,
        )
    )
    links = 0
    for _, _, row in _clean_records(landing_lines, broken, "crm_contacts"):
        contact = person_of[("crm_contacts", row["contact_id"])]
        if row["web_account_id"]:
            assert person_of[("web_orders", row["web_account_id"])] == contact
            links += 1
        if row["loyalty_id"]:
            assert person_of[("pos_transactions", row["loyalty_id"])] == contact
            links += 1
    for _, _, row in _clean_records(landing_lines, broken, "web_orders"):
        if row["crm_contact_id"]:
            assert (
                person_of[("crm_contacts", row["crm_contact_id"])]
                == person_of[("web_orders", row["account_id"])]
            )
            links += 1
    assert links > 100


def test_every_identifying_record_carries_evidence_of_its_person(medium, landing_lines, broken):
    """As in real systems, a record that names a person shares an identifier or a stated
    cross-reference with another record of that person: receipts' loyalty cards are on the
    member's CRM contact, the till looks customers up by the phone the CRM holds, subscribers
    and ticket writers use an address the shop knows. (Name-only matches are the matcher's
    job; rows lost to breakage may leave a few records without their partner.)"""
    identity = pl.read_parquet(medium / "ground_truth" / "identity.parquet")
    person_of = dict(
        zip(
            zip(identity["source"].to_list(), identity["source_id"].to_list(), strict=True),
            identity["person_id"].to_list(),
            strict=True,
        )
    )
    refs = {
        "web_orders": lambda r: r["account_id"],
        "crm_contacts": lambda r: r["contact_id"],
        "support_tickets": lambda r: r["ticket_id"],
        "pos_transactions": lambda r: (
            r["loyalty_id"] or (f"receipt:{r['receipt_id']}" if r["phone"] or r["email"] else None)
        ),
        "email_events": lambda r: r["subscriber_id"] or f"email:{r['email'].lower()}",
    }
    xrefs = {
        "web_orders": [("crm_contact_id", "crm_contacts")],
        "crm_contacts": [("web_account_id", "web_orders"), ("loyalty_id", "pos_transactions")],
        "support_tickets": [("contact_id", "crm_contacts")],
    }
    holders: dict[tuple[str, str, str], set] = {}  # (person, kind, value) -> records
    records_of: dict[str, set] = {}
    for source, ref_of in refs.items():
        for _, _, row in _clean_records(landing_lines, broken, source):
            ref = ref_of(row)
            if ref is None:
                continue  # an anonymous receipt
            record = (source, ref)
            person = person_of[record]
            records_of.setdefault(person, set()).add(record)
            for field in ("loyalty_id", "email", "phone"):
                if row.get(field):
                    value = _e164(row[field]) if field == "phone" else row[field].lower()
                    holders.setdefault((person, field, value), set()).add(record)
            for column, target in xrefs.get(source, []):
                if row.get(column):
                    pair = tuple(sorted([record, (target, row[column])]))
                    holders.setdefault((person, "xref", str(pair)), set()).update(pair)
    linked = {record for group in holders.values() if len(group) > 1 for record in group}
    several = [r for records in records_of.values() if len(records) > 1 for r in records]
    unlinked = [r for r in several if r not in linked and r[0] not in ("web_orders", "crm_contacts")]
    assert len(several) > 2000
    assert len(unlinked) <= 0.005 * len(several), unlinked[:5]


def _e164(phone: str) -> str:
    return phonenumbers.format_number(phonenumbers.parse(phone, "US"), phonenumbers.PhoneNumberFormat.E164)
