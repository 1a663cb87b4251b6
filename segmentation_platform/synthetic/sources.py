"""Turn the latent population into the rows each business system would have exported.

Each builder returns a frame with the contract's columns as text (what lands in the CSV)
plus hidden columns: `_ts` (seconds since the start of the period, orders rows within a
day) and `_person` (true person index, -1 for nobody) from which the ground truth is
derived. Everything is vectorised over rows; no Python loop touches a transaction.
"""

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from segmentation_platform.contracts import CONTRACTS
from segmentation_platform.synthetic import pii
from segmentation_platform.synthetic.population import (
    CATEGORIES,
    CHANNELS,
    N_STORES,
    SECONDS_PER_DAY,
    Population,
    Purchases,
    stream,
)

PRE_DROPOUT_DAYS = 42  # engagement and satisfaction fall in the weeks before dropout
TICKET_PRE_DROPOUT_DAYS = 60
# Hand-typed details carry one-keystroke slips: street names in CRM forms and checkouts, and
# emails a clerk edits into a contact or a second web account holds. A sign-up address is
# confirmed by a link sent to it, so it is never mistyped. A mistyped mailbox links nothing
# by itself: such records join their person only on the other evidence.
TYPED_EMAIL_TYPO_SHARE = 0.03
TYPED_ADDRESS_TYPO_SHARE = 0.03
# Per send, by state (active; the PRE_DROPOUT_DAYS before dropout; after dropout):
EMAIL_OPEN_FACTOR = (1.0, 0.5, 0.2)  # times the subscriber's own open propensity
EMAIL_CLICK_SHARE = (0.18, 0.108, 0.072)  # of opens
EMAIL_UNSUBSCRIBE_RATE = (0.002, 0.006, 0.012)
# Tickets per person-year: usually; in the TICKET_PRE_DROPOUT_DAYS before dropout; after it.
TICKET_RATE_PER_YEAR = (0.35, 1.8, 0.15)
CHANNEL_NAMES = pl.Series("channel", [c.name for c in CHANNELS], dtype=pl.String)
CATEGORY_NAMES = pl.Series("category", [c for c, _, _ in CATEGORIES], dtype=pl.String)
CATEGORY_MARGINS = np.array([m for _, m, _ in CATEGORIES])
CATEGORY_SHARES = np.array([s for _, _, s in CATEGORIES]) / sum(s for _, _, s in CATEGORIES)
EMAIL_EVENT_TYPES = ["send", "bounce", "open", "click", "unsubscribe"]  # also the order within a second
TICKET_TOPICS = pl.Series(
    "category", ["delivery", "returns", "billing", "product", "account"], dtype=pl.String
)


@dataclass
class World:
    """Shared state the builders read: the period, the people, and the entities systems created."""

    start: date
    n_days: int
    seed: int
    population: Population
    purchases: Purchases
    # Filled in while building sources (later builders cross-reference earlier ones).
    purchase_is_web: np.ndarray | None = None
    purchase_ts: np.ndarray | None = None  # seconds since the start, per purchase
    purchase_account_slot: np.ndarray | None = None  # 0 first web account, 1 second
    acquisition_ts: np.ndarray | None = None  # per person: time of the first purchase
    contacts: pl.DataFrame | None = None  # contact, person, slot, created_ts, contact_id
    accounts: pl.DataFrame | None = None  # person, slot, created_ts, account_id
    loyalty: pl.DataFrame | None = None  # person, issued_ts, loyalty_id
    subscriptions: pl.DataFrame | None = None  # person, subscribed_ts, unsubscribed_ts, ...

    @property
    def end_ts(self) -> int:
        return self.n_days * SECONDS_PER_DAY

    @property
    def start_epoch(self) -> int:
        return int((datetime.combine(self.start, datetime.min.time()) - datetime(1970, 1, 1)).total_seconds())

    @property
    def death_ts(self) -> np.ndarray:
        return self.purchases.death_days * SECONDS_PER_DAY

    def rng(self, name: str) -> np.random.Generator:
        return stream(self.seed, name)


def timestamp_text(seconds: pl.Expr, start_epoch: int) -> pl.Expr:
    return pl.from_epoch(seconds + start_epoch, time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")


def money_text(cents: pl.Expr) -> pl.Expr:
    return pl.concat_str(
        [(cents // 100).cast(pl.String), pl.lit("."), (cents % 100).cast(pl.String).str.zfill(2)]
    )


def sequential_ids(prefix: str, n: int, width: int) -> pl.Series:
    return prefix + pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(width)


def bool_text(values: np.ndarray) -> pl.Series:
    return pl.Series(np.where(values, "true", "false"), dtype=pl.String)


def _time_of_day(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Seconds after midnight: web orders peak in the evening, stores trade 9-21, offices 8-20,
    support lines 7-23."""
    if kind == "web":
        evening = (rng.normal(20.5, 2.2, size=n) * 3600) % SECONDS_PER_DAY
        anytime = rng.uniform(0, SECONDS_PER_DAY, size=n)
        return np.where(rng.random(n) < 0.7, evening, anytime).astype(np.int64)
    if kind == "store":
        lunch = rng.normal(12.8, 1.2, size=n)
        evening = rng.normal(17.6, 1.6, size=n)
        hours = np.clip(np.where(rng.random(n) < 0.45, lunch, evening), 9.0, 20.99)
        return (hours * 3600).astype(np.int64)
    if kind == "support":
        return rng.uniform(7 * 3600, 23 * 3600, size=n).astype(np.int64)
    return rng.uniform(8 * 3600, 20 * 3600, size=n).astype(np.int64)


def _during_hours(ts: np.ndarray, not_before: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """Keep the day of each moment but move it into the hours people do such things."""
    day = np.floor(ts / SECONDS_PER_DAY).astype(np.int64)
    moved = day * SECONDS_PER_DAY + _time_of_day(rng, len(day), kind)
    return np.maximum(moved, np.ceil(not_before).astype(np.int64))


def _first_per_person(frame: pl.DataFrame, by: list[str], ts: str = "_ts") -> pl.DataFrame:
    return frame.group_by(by).agg(pl.col(ts).min().alias("created_ts")).sort(["created_ts", *by])


def _basket_columns(rng: np.random.Generator, amount_cents: np.ndarray, favourite: np.ndarray) -> dict:
    """Category (favourite or any), cost at the category's margin, discounts, item counts."""
    n = len(amount_cents)
    category = np.where(
        rng.random(n) < 0.45, favourite, rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARES)
    )
    cost = np.round(amount_cents * (1 - CATEGORY_MARGINS[category]) * rng.uniform(0.9, 1.1, size=n))
    discount_rate = np.where(rng.random(n) < 0.28, rng.uniform(0.05, 0.30, size=n), 0.0)
    discount = np.round(amount_cents * discount_rate / (1 - discount_rate))
    items = 1 + rng.poisson(amount_cents / 4500.0)
    return {
        "category": CATEGORY_NAMES.gather(category),
        "cost": pl.Series(cost.astype(np.int64)),
        "discount": pl.Series(discount.astype(np.int64)),
        "items": pl.Series(items.astype(np.int64)).cast(pl.String),
    }


def _person_phone(
    world: World, person: np.ndarray, rng: np.random.Generator, landline_share: float
) -> pl.Series:
    """A mobile, or the household landline where there is one (shared by the household)."""
    p = world.population
    use_landline = p.col("has_landline")[person] & (rng.random(len(person)) < landline_share)
    area = np.where(use_landline, p.col("landline_area")[person], p.col("mobile_area")[person])
    exchange = np.where(use_landline, p.col("landline_exchange")[person], p.col("mobile_exchange")[person])
    line = np.where(use_landline, p.col("landline_line")[person], p.col("mobile_line")[person])
    return pii.phones(area, exchange, line, rng)


def _person_email(
    world: World,
    person: np.ndarray,
    rng: np.random.Generator,
    work_share: float,
    alternate_share: float = 0.0,
) -> pl.Series:
    """One of the person's addresses (canonical, lower case); the caller adds case/space noise."""
    frame = world.population.frame
    personal = frame.get_column("personal_email").gather(person)
    work = frame.get_column("work_email").gather(person)
    alternate = frame.get_column("alternate_email").gather(person)
    u = pl.Series(rng.random(len(person)))
    return pl.select(
        pl.when((u < work_share) & work.is_not_null())
        .then(work)
        .when((u >= work_share) & (u < work_share + alternate_share) & alternate.is_not_null())
        .then(alternate)
        .otherwise(personal)
    ).to_series()


def _person_address(
    world: World, person: np.ndarray, rng: np.random.Generator, typo_share: float = 0.0
) -> pl.Series:
    p = world.population
    return pii.addresses(
        p.col("house_number")[person],
        p.col("street")[person],
        p.col("street_type")[person],
        p.col("unit")[person],
        rng,
        typo_share=typo_share,
    )


def split_purchases(world: World) -> None:
    """Decide web or store and the clock time of every purchase; the first one is the acquisition."""
    rng = world.rng("channel_split")
    purchases = world.purchases
    person = purchases.person
    world.purchase_is_web = rng.random(len(person)) < world.population.col("web_share")[person]
    day = np.floor(purchases.time_days).astype(np.int64)
    web_time = _time_of_day(rng, len(person), "web")
    store_time = _time_of_day(rng, len(person), "store")
    world.purchase_ts = day * SECONDS_PER_DAY + np.where(world.purchase_is_web, web_time, store_time)
    world.acquisition_ts = world.purchase_ts[purchases.is_first][np.argsort(person[purchases.is_first])]


def create_accounts(world: World) -> None:
    """Web accounts: opened at the first web order; 8% of web buyers later open a second one."""
    rng = world.rng("accounts")
    person = world.purchases.person
    is_web = world.purchase_is_web
    web_person = person[is_web]
    two_accounts = rng.random(world.population.size) < 0.08
    first_web_order = np.r_[True, web_person[1:] != web_person[:-1]]
    slot = np.zeros(len(person), dtype=np.int64)
    slot[is_web] = two_accounts[web_person] & ~first_web_order & (rng.random(len(web_person)) < 0.4)
    world.purchase_account_slot = slot
    orders = pl.DataFrame({"person": web_person, "slot": slot[is_web], "_ts": world.purchase_ts[is_web]})
    accounts = _first_per_person(orders, ["person", "slot"])
    world.accounts = accounts.with_columns(sequential_ids("A", accounts.height, 7).alias("account_id"))


def create_loyalty(world: World) -> None:
    """Loyalty cards: 90% of store shoppers sign up at their first store purchase."""
    rng = world.rng("loyalty")
    store = ~world.purchase_is_web
    frame = pl.DataFrame({"person": world.purchases.person[store], "_ts": world.purchase_ts[store]})
    first = _first_per_person(frame, ["person"])
    joins = rng.random(first.height) < 0.9
    loyalty = first.filter(pl.Series(joins)).rename({"created_ts": "issued_ts"})
    world.loyalty = loyalty.with_columns(sequential_ids("L", loyalty.height, 9).alias("loyalty_id"))


def _loyalty_issued(world: World) -> np.ndarray:
    """Per person: when their loyalty card was issued (int64 max: never)."""
    issued = np.full(world.population.size, np.iinfo(np.int64).max, dtype=np.int64)
    issued[world.loyalty.get_column("person").to_numpy()] = world.loyalty.get_column("issued_ts").to_numpy()
    return issued


def create_contacts(world: World) -> None:
    """CRM contacts for 70% of people and every loyalty member; 6% get a second, duplicate one.

    Loyalty enrolment registers the member in the CRM (the card is issued against a contact),
    so a member's contact exists no later than a few minutes after the card.
    """
    rng = world.rng("contacts")
    n = world.population.size
    acquisition = world.acquisition_ts
    issued = _loyalty_issued(world)
    member = issued < world.end_ts
    has_contact = (rng.random(n) < 0.70) | member
    person = np.flatnonzero(has_contact)
    at_acquisition = rng.random(len(person)) < 0.6
    later = _during_hours(
        acquisition[person] + rng.random(len(person)) * (world.end_ts - acquisition[person]),
        acquisition[person] + 60,
        rng,
        "office",
    )
    created = np.where(
        at_acquisition, acquisition[person] + rng.integers(60, 7_200, size=len(person)), later
    ).astype(np.int64)
    enrolment = np.minimum(issued[person], world.end_ts) + rng.integers(60, 1_800, size=len(person))
    created = np.where(member[person], np.minimum(created, enrolment), created)
    duplicate = rng.random(len(person)) < 0.06
    duplicate_person = person[duplicate]
    duplicate_created = _during_hours(
        created[duplicate] + rng.random(len(duplicate_person)) * (world.end_ts - created[duplicate]),
        created[duplicate] + 60,
        rng,
        "office",
    )
    contacts = (
        pl.DataFrame(
            {
                "person": np.concatenate([person, duplicate_person]),
                "slot": np.concatenate([np.zeros(len(person)), np.ones(len(duplicate_person))]).astype(
                    np.int64
                ),
                "created_ts": np.concatenate([created, duplicate_created]),
            }
        )
        .filter(pl.col("created_ts") < world.end_ts)
        .sort(["created_ts", "person", "slot"])
    )
    world.contacts = contacts.with_columns(sequential_ids("C", contacts.height, 7).alias("contact_id"))


def _campaigns(world: World) -> pl.DataFrame:
    """A weekly newsletter (Tuesdays 10:00) and a promotion every four weeks (Fridays 15:00)."""
    first_tuesday = (1 - world.start.weekday()) % 7
    first_friday = (4 - world.start.weekday()) % 7
    newsletter_days = np.arange(first_tuesday, world.n_days, 7)
    promo_days = np.arange(first_friday + 7, world.n_days, 28)
    frame = pl.DataFrame(
        {
            "day": np.concatenate([newsletter_days, promo_days]).astype(np.int64),
            "prefix": ["NL-"] * len(newsletter_days) + ["PR-"] * len(promo_days),
            "hour": np.concatenate([np.full(len(newsletter_days), 10), np.full(len(promo_days), 15)]),
            "reach": np.concatenate([np.full(len(newsletter_days), 0.92), np.full(len(promo_days), 0.75)]),
        }
    )
    return frame.with_columns(
        (pl.col("day") * SECONDS_PER_DAY + pl.col("hour") * 3600).alias("send_ts"),
        pl.concat_str(
            [
                pl.col("prefix"),
                timestamp_text(pl.col("day") * SECONDS_PER_DAY, world.start_epoch).str.slice(0, 10),
            ]
        ).alias("campaign_id"),
    ).sort("send_ts")


def email_events(world: World) -> pl.DataFrame:
    """Newsletter sends to subscribers and their reactions, which fade around dropout.

    Open and click probabilities drop in the weeks before dropout and further after it;
    the unsubscribe hazard rises. Subscribers are half of all people; 8% of them come from
    a legacy import and carry only their email, no subscriber id.
    """
    rng = world.rng("email")
    n = world.population.size
    subscribed = np.flatnonzero(rng.random(n) < 0.5)
    subscribed_ts = world.acquisition_ts[subscribed] + rng.integers(
        0, 3 * SECONDS_PER_DAY, size=len(subscribed)
    )
    inside = subscribed_ts < world.end_ts
    subscribed, subscribed_ts = subscribed[inside], subscribed_ts[inside]
    order = np.lexsort((subscribed, subscribed_ts))
    subscribed, subscribed_ts = subscribed[order], subscribed_ts[order]
    n_subscribers = len(subscribed)
    legacy = rng.random(n_subscribers) < 0.08
    # People subscribe with the address they gave the shop (account, contact, loyalty form).
    canonical = _person_email(world, subscribed, rng, work_share=0.0)
    stored = pii.emails(canonical, rng, capitalised_share=0.05, upper_share=0.01, padded_share=0.0)
    subscriber_id = pii.mask(sequential_ids("SUB", n_subscribers, 7), ~legacy)
    open_propensity = rng.beta(2.0, 5.5, size=n_subscribers)

    campaigns = _campaigns(world)
    campaign_ts = campaigns.get_column("send_ts").to_numpy()
    reach = campaigns.get_column("reach").to_numpy()
    first_campaign = np.searchsorted(campaign_ts, subscribed_ts, side="right")
    count = len(campaign_ts) - first_campaign
    subscriber = np.repeat(np.arange(n_subscribers), count)
    group_start = np.repeat(np.cumsum(count) - count, count)
    campaign = first_campaign[subscriber] + np.arange(len(subscriber)) - group_start
    received = rng.random(len(subscriber)) < reach[campaign]
    subscriber, campaign = subscriber[received], campaign[received]
    send_ts = campaign_ts[campaign] + rng.integers(0, 3_600, size=len(subscriber))

    death = world.death_ts[subscribed][subscriber]
    state = np.where(send_ts < death - PRE_DROPOUT_DAYS * SECONDS_PER_DAY, 0, np.where(send_ts < death, 1, 2))
    unsubscribes = rng.random(len(subscriber)) < np.array(EMAIL_UNSUBSCRIBE_RATE)[state]
    # Nothing is sent after an unsubscribe: keep sends up to and including the first one.
    hits_before = np.cumsum(unsubscribes) - unsubscribes
    starts = np.r_[True, subscriber[1:] != subscriber[:-1]]
    group_first = np.maximum.accumulate(np.where(starts, np.arange(len(subscriber)), 0))
    still_subscribed = (hits_before - hits_before[group_first]) == 0
    subscriber, campaign, send_ts, state, unsubscribes = (
        a[still_subscribed] for a in (subscriber, campaign, send_ts, state, unsubscribes)
    )

    k = len(subscriber)
    bounced = rng.random(k) < 0.002
    opened = ~bounced & (rng.random(k) < open_propensity[subscriber] * np.array(EMAIL_OPEN_FACTOR)[state])
    clicked = opened & (rng.random(k) < np.array(EMAIL_CLICK_SHARE)[state])
    # Most opens come within hours, a long tail days later.
    open_delay = np.where(
        rng.random(k) < 0.75, rng.exponential(3 * 3600, size=k), rng.exponential(36 * 3600, size=k)
    )
    open_ts = send_ts + 60 + np.minimum(open_delay, 6 * SECONDS_PER_DAY).astype(np.int64)
    click_ts = open_ts + 20 + rng.exponential(120, size=k).astype(np.int64)
    unsubscribe_ts = send_ts + 60 + rng.exponential(8 * 3600, size=k).astype(np.int64)
    bounce_ts = send_ts + rng.integers(5, 300, size=k)

    masks = (np.ones(k, dtype=bool), bounced, opened, clicked, unsubscribes)
    times = (send_ts, bounce_ts, open_ts, click_ts, unsubscribe_ts)
    row = np.concatenate([np.flatnonzero(m) for m in masks])
    kind = np.concatenate([np.full(int(m.sum()), i, dtype=np.int64) for i, m in enumerate(masks)])
    ts = np.concatenate([t[m] for t, m in zip(times, masks, strict=True)])
    inside = ts < world.end_ts
    row, kind, ts = row[inside], kind[inside], ts[inside]
    order = np.lexsort((row, kind, ts))
    row, kind, ts = row[order], kind[order], ts[order]
    event_subscriber = subscriber[row]

    unsubscribed_ts = np.full(n_subscribers, -1, dtype=np.int64)
    is_unsubscribe = kind == EMAIL_EVENT_TYPES.index("unsubscribe")
    unsubscribed_ts[event_subscriber[is_unsubscribe]] = ts[is_unsubscribe]
    world.subscriptions = pl.DataFrame(
        {
            "person": subscribed,
            "subscribed_ts": subscribed_ts,
            "unsubscribed_ts": pl.Series(unsubscribed_ts).replace(-1, None),
            "subscriber_id": subscriber_id,
            "email": canonical,
        }
    )

    # Legacy subscribers' addresses were typed anew in each import: case and space vary per event.
    email = stored.gather(event_subscriber)
    legacy_rows = np.flatnonzero(legacy[event_subscriber])
    if len(legacy_rows):
        email = email.scatter(
            legacy_rows, pii.emails(canonical.gather(event_subscriber[legacy_rows]), rng, 0.05, 0.02, 0.03)
        )
    events = pl.DataFrame({"_ts": ts, "_person": subscribed[event_subscriber]})
    return events.select(
        sequential_ids("E", events.height, 10).alias("event_id"),
        timestamp_text(pl.col("_ts"), world.start_epoch).alias("occurred_at"),
        pl.Series(EMAIL_EVENT_TYPES, dtype=pl.String).gather(kind).alias("event_type"),
        email.alias("email"),
        subscriber_id.gather(event_subscriber).alias("subscriber_id"),
        campaigns.get_column("campaign_id").gather(campaign[row]).alias("campaign_id"),
        "_ts",
        "_person",
    )


def crm_contacts(world: World) -> pl.DataFrame:
    """Contact versions: the creation, later edits, and consent syncs after unsubscribes.

    Each version re-renders the person's details (a nickname here, a different phone format
    there); consent flags follow the email subscription; links to loyalty card and web account
    appear only once those exist.
    """
    rng = world.rng("crm")
    p = world.population
    contacts = world.contacts
    n_contacts = contacts.height
    contact_person = contacts.get_column("person").to_numpy()
    created = contacts.get_column("created_ts").to_numpy()
    is_primary = contacts.get_column("slot").to_numpy() == 0

    years = (world.end_ts - created) / (365.0 * SECONDS_PER_DAY)
    n_updates = rng.poisson(0.8 * years)
    update_contact = np.repeat(np.arange(n_contacts), n_updates)
    update_ts = _during_hours(
        created[update_contact] + rng.random(len(update_contact)) * (world.end_ts - created[update_contact]),
        created[update_contact] + 60,
        rng,
        "office",
    )

    subscriptions = world.subscriptions
    unsubscribed_by_person = np.full(p.size, np.iinfo(np.int64).max, dtype=np.int64)
    with_unsubscribe = subscriptions.filter(pl.col("unsubscribed_ts").is_not_null())
    unsubscribed_by_person[with_unsubscribe.get_column("person").to_numpy()] = with_unsubscribe.get_column(
        "unsubscribed_ts"
    ).to_numpy()
    subscriber_person = np.zeros(p.size, dtype=bool)
    subscriber_person[subscriptions.get_column("person").to_numpy()] = True
    sync_ts = unsubscribed_by_person[contact_person] + rng.integers(
        3_600, 3 * SECONDS_PER_DAY, size=n_contacts
    )
    syncs = (
        is_primary
        & (unsubscribed_by_person[contact_person] < world.end_ts)
        & (created <= unsubscribed_by_person[contact_person])
        & (rng.random(n_contacts) < 0.7)
        & (sync_ts < world.end_ts)
    )
    # Loyalty enrolment of a person who already was a contact writes the card to the contact.
    loyalty_issued = _loyalty_issued(world)
    enrol_ts = np.minimum(loyalty_issued[contact_person], world.end_ts) + rng.integers(
        60, 1_800, size=n_contacts
    )
    enrols = is_primary & (loyalty_issued[contact_person] > created) & (enrol_ts < world.end_ts)
    versions = (
        pl.DataFrame(
            {
                "contact": np.concatenate(
                    [np.arange(n_contacts), update_contact, np.flatnonzero(syncs), np.flatnonzero(enrols)]
                ),
                "_ts": np.concatenate([created, update_ts, sync_ts[syncs], enrol_ts[enrols]]),
            }
        )
        .filter(pl.col("_ts") < world.end_ts)
        .unique(["contact", "_ts"], keep="first", maintain_order=True)
        .sort(["_ts", "contact"])
    )
    contact = versions.get_column("contact").to_numpy()
    ts = versions.get_column("_ts").to_numpy()
    person = contact_person[contact]
    primary = is_primary[contact]
    m = len(contact)

    email_consent = np.where(
        subscriber_person[contact_person], rng.random(n_contacts) < 0.95, rng.random(n_contacts) < 0.12
    )[contact] & (ts < unsubscribed_by_person[person])
    sms_revoked_at_dropout = (rng.random(n_contacts) < 0.3)[contact] & (ts >= world.death_ts[person])
    sms_consent = (rng.random(n_contacts) < 0.3)[contact] & ~sms_revoked_at_dropout

    loyalty = world.loyalty
    loyalty_id = pl.Series([None] * p.size, dtype=pl.String).scatter(
        loyalty.get_column("person").to_numpy(), loyalty.get_column("loyalty_id")
    )
    # The member's own contact always shows the card once issued; a duplicate contact sometimes.
    records_loyalty = (is_primary | (rng.random(n_contacts) < 0.6))[contact] & (ts >= loyalty_issued[person])

    first_accounts = world.accounts.filter(pl.col("slot") == 0)
    account_id = pl.Series([None] * p.size, dtype=pl.String).scatter(
        first_accounts.get_column("person").to_numpy(), first_accounts.get_column("account_id")
    )
    account_created = np.full(p.size, np.iinfo(np.int64).max, dtype=np.int64)
    account_created[first_accounts.get_column("person").to_numpy()] = first_accounts.get_column(
        "created_ts"
    ).to_numpy()
    records_account = (rng.random(n_contacts) < 0.5)[contact] & (ts >= account_created[person])

    birth_known = (rng.random(n_contacts) < 0.75)[contact]
    birth = p.frame.get_column("birth_date").gather(person)
    swapped = pl.Series((rng.random(n_contacts) < 0.02)[contact])
    # A clerk sometimes swaps day and month (only where the result is still a valid date).
    swap = swapped & (birth.dt.day() <= 12) & (birth.dt.day() != birth.dt.month())
    birth_text = pl.select(
        pl.date(
            birth.dt.year(),
            pl.when(swap).then(birth.dt.day()).otherwise(birth.dt.month()),
            pl.when(swap).then(birth.dt.month()).otherwise(birth.dt.day()),
        ).dt.strftime("%Y-%m-%d")
    ).to_series()

    # The sign-up form that creates a contact asks for the person's own email and mobile;
    # later edits may switch to a work or older address, a household landline, or drop them.
    creation = primary & (ts == created[contact])
    canonical_email = _person_email(
        world,
        person,
        rng,
        work_share=np.where(creation, 0.0, np.where(primary, 0.2, 0.45)),
        alternate_share=np.where(creation, 0.0, 0.15),
    )
    email = pii.emails(pii.mistyped_emails(canonical_email, rng, TYPED_EMAIL_TYPO_SHARE * ~creation), rng)
    channel = pii.mask(CHANNEL_NAMES.gather(p.col("channel")[person]), primary | (rng.random(m) < 0.5))
    return versions.select(
        contacts.get_column("contact_id").gather(contact).alias("contact_id"),
        timestamp_text(pl.col("_ts"), world.start_epoch).alias("updated_at"),
        pii.first_names(p.col("given")[person], rng, 0.10, 0.02).alias("first_name"),
        pii.last_names(p.col("last")[person], rng, 0.02, 0.02).alias("last_name"),
        pii.mask(email, creation | (rng.random(m) < 0.92)).alias("email"),
        pii.mask(
            _person_phone(world, person, rng, np.where(creation, 0.0, 0.15)), creation | (rng.random(m) < 0.8)
        ).alias("phone"),
        _person_address(world, person, rng, TYPED_ADDRESS_TYPO_SHARE).alias("address"),
        pii.mask(p.frame.get_column("postcode").gather(person), rng.random(m) < 0.97).alias("postcode"),
        pii.mask(birth_text, birth_known).alias("birth_date"),
        pii.mask(loyalty_id.gather(person), records_loyalty).alias("loyalty_id"),
        pii.mask(account_id.gather(person), records_account).alias("web_account_id"),
        bool_text(email_consent).alias("email_consent"),
        bool_text(sms_consent).alias("sms_consent"),
        channel.alias("acquisition_channel"),
        "_ts",
        pl.Series("_person", person),
    )


def web_orders(world: World) -> pl.DataFrame:
    """Orders with the account's checkout details; accounts link to CRM once the shop knows the contact."""
    rng = world.rng("web_orders")
    p, purchases = world.population, world.purchases
    is_web = world.purchase_is_web
    orders = pl.DataFrame(
        {
            "_person": purchases.person[is_web],
            "slot": world.purchase_account_slot[is_web],
            "_ts": world.purchase_ts[is_web],
            "amount_cents": purchases.amount_cents[is_web],
            "_seq": np.flatnonzero(is_web),
        }
    )
    accounts = world.accounts
    n_accounts = accounts.height
    account_person = accounts.get_column("person").to_numpy()
    account_slot = accounts.get_column("slot").to_numpy()
    frame = p.frame
    second_email = pl.select(
        pl.coalesce(
            frame.get_column("work_email").gather(account_person),
            frame.get_column("alternate_email").gather(account_person),
            frame.get_column("personal_email").gather(account_person).str.to_titlecase(),
        )
    ).to_series()
    email = pl.select(
        pl.when(pl.Series(account_slot == 0))
        .then(frame.get_column("personal_email").gather(account_person))
        .otherwise(second_email)
    ).to_series()
    organic, email_channel = len(CHANNELS) - 1, [c.name for c in CHANNELS].index("email")
    account_channel = np.where(
        account_slot == 0,
        p.col("channel")[account_person],
        np.where(rng.random(n_accounts) < 0.6, organic, email_channel),
    )
    profile = accounts.select(
        pl.col("person").alias("_person"),
        "slot",
        "account_id",
        pii.first_names(p.col("given")[account_person], rng, 0.15, 0.02).alias("first_name"),
        pii.last_names(p.col("last")[account_person], rng, 0.015, 0.01).alias("last_name"),
        pii.emails(pii.mistyped_emails(email, rng, TYPED_EMAIL_TYPO_SHARE * (account_slot > 0)), rng).alias(
            "email"
        ),
        pii.mask(_person_phone(world, account_person, rng, 0.1), rng.random(n_accounts) < 0.7).alias("phone"),
        _person_address(world, account_person, rng, TYPED_ADDRESS_TYPO_SHARE).alias("address"),
        pii.mask(frame.get_column("postcode").gather(account_person), rng.random(n_accounts) < 0.97).alias(
            "postcode"
        ),
        CHANNEL_NAMES.gather(account_channel).alias("acquisition_channel"),
        pl.Series("linked", rng.random(n_accounts) < 0.45),
    )
    primary_contacts = world.contacts.filter(pl.col("slot") == 0).select(
        pl.col("person").alias("_person"), "contact_id", pl.col("created_ts").alias("contact_created_ts")
    )
    joined = (
        orders.join(profile, on=["_person", "slot"], how="left")
        .join(primary_contacts, on="_person", how="left")
        .sort(["_ts", "_seq"])
    )
    basket = _basket_columns(
        rng,
        joined.get_column("amount_cents").to_numpy(),
        p.col("favourite_category")[joined.get_column("_person").to_numpy()],
    )
    contact_known = pl.col("linked") & (pl.col("contact_created_ts") <= pl.col("_ts"))
    return joined.with_columns(**basket).select(
        sequential_ids("WO", joined.height, 9).alias("order_id"),
        "account_id",
        timestamp_text(pl.col("_ts"), world.start_epoch).alias("ordered_at"),
        money_text(pl.col("amount_cents")).alias("amount"),
        "first_name",
        "last_name",
        "email",
        "phone",
        "address",
        "postcode",
        pl.when(contact_known).then(pl.col("contact_id")).alias("crm_contact_id"),
        "category",
        money_text(pl.col("cost")).alias("cost"),
        money_text(pl.col("discount")).alias("discount"),
        "items",
        "acquisition_channel",
        "_ts",
        "_person",
        "amount_cents",
        "_seq",
    )


def pos_transactions(world: World) -> pl.DataFrame:
    """Store receipts: loyalty card when shown, else maybe a phone or e-receipt email, plus walk-ins."""
    rng = world.rng("pos")
    p, purchases = world.population, world.purchases
    store = ~world.purchase_is_web
    person = purchases.person[store]
    ts = world.purchase_ts[store]
    n = len(person)

    loyalty = world.loyalty
    loyalty_id = pl.Series([None] * p.size, dtype=pl.String).scatter(
        loyalty.get_column("person").to_numpy(), loyalty.get_column("loyalty_id")
    )
    has_card = np.zeros(p.size, dtype=bool)
    has_card[loyalty.get_column("person").to_numpy()] = True
    first_store_purchase = np.r_[True, person[1:] != person[:-1]]
    shows_card = has_card[person] & (first_store_purchase | (rng.random(n) < 0.9))
    # Without the card the till finds a customer by the mobile on their CRM contact: someone
    # the CRM does not know yet stays anonymous unless they ask for an e-receipt.
    primary = world.contacts.filter(pl.col("slot") == 0)
    contact_created = np.full(p.size, np.iinfo(np.int64).max, dtype=np.int64)
    contact_created[primary.get_column("person").to_numpy()] = primary.get_column("created_ts").to_numpy()
    registered = ts >= contact_created[person]
    gives_phone = ~shows_card & registered & (rng.random(n) < np.where(has_card[person], 0.10, 0.22))
    gives_email = rng.random(n) < np.where(shows_card, 0.05, 0.12)
    home = p.col("home_store")[person]
    store_index = np.where(rng.random(n) < 0.85, home, rng.integers(0, N_STORES, size=n))
    basket = _basket_columns(rng, purchases.amount_cents[store], p.col("favourite_category")[person])
    known = pl.DataFrame(
        {
            "_ts": ts,
            "store": store_index,
            "amount_cents": purchases.amount_cents[store],
            "loyalty_id": pii.mask(loyalty_id.gather(person), shows_card),
            # The till looks customers up by their own mobile and sends e-receipts to their own email.
            "phone": pii.mask(_person_phone(world, person, rng, 0.0), gives_phone),
            "email": pii.mask(pii.emails(_person_email(world, person, rng, 0.0), rng), gives_email),
            **basket,
            "_person": person,
            "_seq": np.flatnonzero(store),
        }
    )

    # Walk-ins: shoppers outside the simulated population, never identifiable.
    n_walk_ins = int(round(0.2 * n))
    weekday_weight = np.array([0.8, 0.8, 0.9, 1.0, 1.2, 1.5, 1.1])
    day_weight = weekday_weight[(np.arange(world.n_days) + world.start.weekday()) % 7]
    day = rng.choice(world.n_days, size=n_walk_ins, p=day_weight / day_weight.sum())
    walk_in_amount = np.maximum(100, np.round(rng.gamma(2.5, 2000, size=n_walk_ins))).astype(np.int64)
    walk_in_basket = _basket_columns(
        rng, walk_in_amount, rng.choice(len(CATEGORIES), size=n_walk_ins, p=CATEGORY_SHARES)
    )
    walk_ins = pl.DataFrame(
        {
            "_ts": day * SECONDS_PER_DAY + _time_of_day(rng, n_walk_ins, "store"),
            "store": rng.integers(0, N_STORES, size=n_walk_ins),
            "amount_cents": walk_in_amount,
            "loyalty_id": pl.Series([None] * n_walk_ins, dtype=pl.String),
            "phone": pl.Series([None] * n_walk_ins, dtype=pl.String),
            "email": pl.Series([None] * n_walk_ins, dtype=pl.String),
            **walk_in_basket,
            "_person": np.full(n_walk_ins, -1),
            "_seq": len(purchases.person) + np.arange(n_walk_ins),
        }
    )
    receipts = pl.concat([known, walk_ins], how="vertical_relaxed").sort(["_ts", "_seq"])
    return receipts.select(
        sequential_ids("R", receipts.height, 10).alias("receipt_id"),
        ("S" + (pl.col("store") + 1).cast(pl.String).str.zfill(3)).alias("store_id"),
        timestamp_text(pl.col("_ts"), world.start_epoch).alias("purchased_at"),
        money_text(pl.col("amount_cents")).alias("amount"),
        "loyalty_id",
        "phone",
        "email",
        "category",
        money_text(pl.col("cost")).alias("cost"),
        money_text(pl.col("discount")).alias("discount"),
        "items",
        "_ts",
        "_person",
        "amount_cents",
        "_seq",
    )


def support_tickets(world: World) -> pl.DataFrame:
    """Tickets come more often, about returns and products, and end less happily before dropout."""
    rng = world.rng("support")
    p = world.population
    n = p.size
    acquisition = world.acquisition_ts.astype(np.float64)
    death = world.death_ts
    end = float(world.end_ts)
    pre_start = death - TICKET_PRE_DROPOUT_DAYS * SECONDS_PER_DAY
    bounds = [
        (acquisition, np.minimum(np.maximum(pre_start, acquisition), end)),
        (np.maximum(pre_start, acquisition), np.minimum(np.maximum(death, acquisition), end)),
        (np.maximum(death, acquisition), np.full(n, end)),
    ]
    rates_per_day = [rate / 365 for rate in TICKET_RATE_PER_YEAR]
    pieces = []
    for state, ((lo, hi), rate) in enumerate(zip(bounds, rates_per_day, strict=True)):
        length = np.maximum(hi - lo, 0)
        count = rng.poisson(rate * length / SECONDS_PER_DAY)
        owner = np.repeat(np.arange(n), count)
        when = _during_hours(lo[owner] + rng.random(len(owner)) * length[owner], lo[owner], rng, "support")
        pieces.append(
            pl.DataFrame(
                {"_person": owner, "_ts": when.astype(np.int64), "state": np.full(len(owner), state)}
            )
        )
    tickets = pl.concat(pieces).filter(pl.col("_ts") < world.end_ts).sort(["_ts", "_person", "state"])
    person = tickets.get_column("_person").to_numpy()
    state = tickets.get_column("state").to_numpy()
    ts = tickets.get_column("_ts").to_numpy()
    m = len(person)

    topic_shares = np.array(
        [[0.35, 0.20, 0.10, 0.20, 0.15], [0.20, 0.35, 0.15, 0.25, 0.05], [0.25, 0.30, 0.20, 0.15, 0.10]]
    )
    satisfaction_shares = np.array(
        [[0.03, 0.05, 0.12, 0.35, 0.45], [0.22, 0.25, 0.25, 0.18, 0.10], [0.15, 0.20, 0.30, 0.20, 0.15]]
    )
    topic = _choice_by_row(rng, topic_shares[state])
    satisfaction = 1 + _choice_by_row(rng, satisfaction_shares[state])

    primary = world.contacts.filter(pl.col("slot") == 0)
    contact_id = pl.Series([None] * n, dtype=pl.String).scatter(
        primary.get_column("person").to_numpy(), primary.get_column("contact_id")
    )
    contact_created = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    contact_created[primary.get_column("person").to_numpy()] = primary.get_column("created_ts").to_numpy()
    uses_contact = (ts >= contact_created[person]) & (rng.random(m) < 0.6)
    uses_email = ~uses_contact | (rng.random(m) < 0.85)
    # Customers write from the address the shop knows; a work address only where the agent
    # also attached the contact.
    email = pii.emails(_person_email(world, person, rng, work_share=np.where(uses_contact, 0.25, 0.0)), rng)
    return tickets.select(
        sequential_ids("T", m, 8).alias("ticket_id"),
        timestamp_text(pl.col("_ts"), world.start_epoch).alias("created_at"),
        pii.mask(email, uses_email).alias("email"),
        pii.mask(contact_id.gather(person), uses_contact).alias("contact_id"),
        TICKET_TOPICS.gather(topic).alias("category"),
        pii.mask(pl.Series(satisfaction).cast(pl.String), rng.random(m) < 0.65).alias("satisfaction"),
        "_ts",
        "_person",
    )


def _choice_by_row(rng: np.random.Generator, shares: np.ndarray) -> np.ndarray:
    """One categorical draw per row, each row with its own probabilities."""
    cumulative = np.cumsum(shares, axis=1)
    u = rng.random(len(shares))[:, None] * cumulative[:, -1:]
    return (u >= cumulative).sum(axis=1)


def marketing_spend(world: World) -> pl.DataFrame:
    """Daily spend per paid channel and campaign: the channel's CAC times the customers it brings."""
    rng = world.rng("marketing")
    acquisition_day = world.acquisition_ts // SECONDS_PER_DAY
    channel = world.population.col("channel")
    last_day = int(acquisition_day.max()) + 1 if len(acquisition_day) else 0
    rows = []
    for index, spec in enumerate(CHANNELS):
        if spec.cac is None:
            continue
        acquired = np.bincount(acquisition_day[channel == index], minlength=last_day).astype(float)
        smoothed = np.convolve(acquired, np.ones(7) / 7, mode="full")[3 : 3 + last_day]  # centred week
        daily = spec.cac * smoothed * rng.lognormal(0.0, 0.2, size=last_day)
        weights = rng.dirichlet(np.full(len(spec.campaigns), 4.0))
        for campaign_index, campaign in enumerate(spec.campaigns):
            share = weights[campaign_index] * rng.lognormal(0.0, 0.1, size=last_day)
            spend_cents = np.round(daily * share * 100).astype(np.int64)
            impressions = (
                (spend_cents / 100 / spec.cpm * 1000 * rng.lognormal(0, 0.15, size=last_day)).astype(np.int64)
                if spec.cpm
                else np.zeros(last_day, dtype=np.int64)
            )
            clicks = rng.binomial(impressions, spec.ctr) if spec.ctr else np.zeros(last_day, dtype=np.int64)
            has_media = pl.Series(np.full(last_day, spec.cpm > 0))
            rows.append(
                pl.DataFrame(
                    {
                        "day": np.arange(last_day),
                        "channel": np.full(last_day, spec.name),
                        "campaign": np.full(last_day, f"{spec.name}_{campaign}"),
                        "spend_cents": spend_cents,
                        "impressions": pii.mask(pl.Series(impressions).cast(pl.String), has_media.to_numpy()),
                        "clicks": pii.mask(pl.Series(clicks).cast(pl.String), has_media.to_numpy()),
                    }
                )
            )
    if not rows:
        return _empty_spend()
    spend = pl.concat(rows).filter(pl.col("spend_cents") > 0).sort(["day", "channel", "campaign"])
    return spend.select(
        timestamp_text(pl.col("day") * SECONDS_PER_DAY, world.start_epoch).str.slice(0, 10).alias("date"),
        "channel",
        money_text(pl.col("spend_cents")).alias("spend"),
        "campaign",
        "impressions",
        "clicks",
        (pl.col("day") * SECONDS_PER_DAY).alias("_ts"),
        pl.lit(-1, dtype=pl.Int64).alias("_person"),
    )


def _empty_spend() -> pl.DataFrame:
    columns = CONTRACTS["marketing_spend"].column_names
    return pl.DataFrame(schema={**{c: pl.String for c in columns}, "_ts": pl.Int64, "_person": pl.Int64})
