"""The latent truth: who the people are and how they buy, before any system records them.

Purchases follow BG/NBD exactly (Fader, Hardie & Lee 2005): while alive a person buys as a
Poisson process with rate lambda ~ Gamma(r, alpha); after every repeat purchase they drop
out with probability p ~ Beta(a, b). Order values follow Gamma-Gamma: z ~ Gamma(p, nu) with
nu ~ Gamma(q, gamma). Models downstream can therefore be checked against known parameters.
"""

import zlib
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import polars as pl

from segmentation_platform.synthetic import pii
from segmentation_platform.synthetic.names import COMPANY_DOMAINS, EMAIL_DOMAINS, REGIONS
from segmentation_platform.synthetic.pii import (
    FIRST_NAME_VOCABULARY,
    LAST_NAME_VOCABULARY,
    N_FEMALE_NAMES,
    N_MALE_NAMES,
    STREET_NAME_VOCABULARY,
    STREET_TYPE_FULL,
    zipf_choice,
)

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class TrueParameters:
    """Population parameters; time unit is days, currency units for spend."""

    # BG/NBD: lambda ~ Gamma(shape=r, rate=alpha) per day; p ~ Beta(a, b).
    r: float = 0.6
    alpha: float = 45.0
    a: float = 1.2
    b: float = 4.0
    # Gamma-Gamma: nu ~ Gamma(shape=q, rate=gamma); order value z ~ Gamma(shape=p, rate=nu).
    gg_p: float = 6.0
    gg_q: float = 4.0
    gg_gamma: float = 40.0
    # Acquisitions are spread uniformly over this leading share of the period.
    acquisition_window_share: float = 0.8

    def as_json(self) -> dict:
        values = asdict(self)
        return {
            "time_unit": "days",
            "bgnbd": {k: values[k] for k in ("r", "alpha", "a", "b")},
            "gamma_gamma": {"p": self.gg_p, "q": self.gg_q, "gamma": self.gg_gamma},
            "acquisition_window_share": self.acquisition_window_share,
            "implied": {
                "mean_purchase_rate_per_year": self.r / self.alpha * 365.0,
                "mean_dropout_probability": self.a / (self.a + self.b),
                "mean_order_value": self.gg_p * self.gg_gamma / (self.gg_q - 1.0),
            },
        }


@dataclass(frozen=True)
class Channel:
    name: str
    share: float  # of acquisitions
    cac: float | None  # true cost per acquired customer; None: unpaid
    online: bool  # online channels bring customers who mostly buy on the web
    campaigns: tuple[str, ...] = ()
    cpm: float = 0.0  # cost per thousand impressions
    ctr: float = 0.0  # clicks per impression


CHANNELS: tuple[Channel, ...] = (
    Channel("paid_search", 0.24, 38.0, True, ("brand", "generic", "shopping"), 9.0, 0.045),
    Channel("social", 0.18, 52.0, True, ("prospecting", "retargeting"), 7.5, 0.012),
    Channel("display", 0.06, 85.0, True, ("awareness", "retargeting"), 3.0, 0.004),
    Channel("affiliate", 0.10, 30.0, True, ("partners",), 5.0, 0.02),
    Channel("email", 0.07, 9.0, True, ("lead_nurture",), 1.0, 0.03),
    Channel("referral", 0.10, 15.0, False, ("refer_a_friend",), 0.0, 0.0),
    Channel("organic", 0.25, None, False),
)

# (category, true gross margin rate, share of baskets)
CATEGORIES: tuple[tuple[str, float, float], ...] = (
    ("apparel", 0.55, 0.26),
    ("footwear", 0.45, 0.14),
    ("accessories", 0.62, 0.12),
    ("home", 0.40, 0.16),
    ("beauty", 0.58, 0.12),
    ("electronics", 0.18, 0.10),
    ("outdoor", 0.35, 0.10),
)

N_STORES = 24


def stream(seed: int, name: str) -> np.random.Generator:
    """One independent random stream per concern, so changing one part leaves the others' draws unchanged."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


@dataclass
class Population:
    """One row per person in `frame`; numpy views of the columns the simulators need."""

    frame: pl.DataFrame
    n_days: int

    def col(self, name: str) -> np.ndarray:
        return self.frame.get_column(name).to_numpy()

    @property
    def size(self) -> int:
        return self.frame.height


def simulate_population(
    persons: int, start: date, n_days: int, seed: int, params: TrueParameters
) -> Population:
    """People, households, contact details and latent buying parameters."""
    rng = stream(seed, "population")
    n = persons

    sizes = rng.choice([1, 2, 3, 4], size=n, p=[0.55, 0.27, 0.12, 0.06])
    household = np.repeat(np.arange(n), sizes)[:n]
    n_households = int(household[-1]) + 1
    first_member = np.r_[True, household[1:] != household[:-1]]

    female = rng.random(n) < 0.51
    given = np.where(
        female,
        zipf_choice(rng, N_FEMALE_NAMES, n),
        N_FEMALE_NAMES + zipf_choice(rng, N_MALE_NAMES, n),
    )
    household_last = zipf_choice(rng, LAST_NAME_VOCABULARY.len(), n_households, exponent=0.6)
    own_last = zipf_choice(rng, LAST_NAME_VOCABULARY.len(), n, exponent=0.6)
    # Most members share the family name: an over-merging trap together with the shared address.
    shares_name = first_member | (rng.random(n) < 0.75)
    last = np.where(shares_name, household_last[household], own_last)

    age_days = ((18 + 62 * rng.beta(2.0, 2.6, size=n)) * 365.25).astype(np.int64)
    birth_date = pl.Series(
        np.full(n, start.toordinal() - date(1970, 1, 1).toordinal(), dtype=np.int64) - age_days
    ).cast(pl.Date)

    region = rng.integers(0, len(REGIONS), size=n_households)
    house_number = np.maximum(1, rng.lognormal(6.0, 1.2, size=n_households).astype(np.int64) % 9_999)
    street = rng.integers(0, STREET_NAME_VOCABULARY.len(), size=n_households)
    street_type = rng.integers(0, STREET_TYPE_FULL.len(), size=n_households)
    unit = np.where(rng.random(n_households) < 0.25, rng.integers(1, 40, size=n_households), 0)
    postcode_suffix = rng.integers(0, 100, size=n_households)
    home_store = (region * 7 + rng.integers(0, 3, size=n_households)) % N_STORES
    has_landline = rng.random(n_households) < 0.3

    area_codes = np.array([a for a, _ in REGIONS])
    zip_prefixes = np.array([z for _, z in REGIONS])
    person_region = region[household]
    mobile_region = np.where(rng.random(n) < 0.85, person_region, rng.integers(0, len(REGIONS), size=n))
    mobile_area = area_codes[mobile_region]
    # Mobiles and landlines drawn together so that no two people share a number by accident.
    exchange, line = _unique_local_numbers(rng, np.concatenate([mobile_area, area_codes[region]]))
    mobile_exchange, mobile_line = exchange[:n], line[:n]
    landline_exchange, landline_line = exchange[n:], line[n:]

    birth_year = (start.year - age_days / 365.25).astype(np.int64)
    personal_email, work_email, alternate_email = _email_addresses(rng, given, last, birth_year, n)

    acquisition_days = max(1, int(round(n_days * params.acquisition_window_share)))
    acquisition_day = rng.integers(0, acquisition_days, size=n)
    channel_index = rng.choice(len(CHANNELS), size=n, p=_channel_shares())
    online = np.array([c.online for c in CHANNELS])[channel_index]

    # Latent buying behaviour (BG/NBD + Gamma-Gamma), drawn independently of everything else.
    behaviour = stream(seed, "behaviour")
    purchase_rate = behaviour.gamma(params.r, 1.0 / params.alpha, size=n)
    dropout_probability = behaviour.beta(params.a, params.b, size=n)
    spend_rate = behaviour.gamma(params.gg_q, 1.0 / params.gg_gamma, size=n)

    # Web share of purchases: online-acquired people lean to the web shop.
    u = rng.random(n)
    web_only = np.where(online, 0.45, 0.22)
    store_only = np.where(online, 0.18, 0.40)
    web_share = np.where(
        u < web_only, 1.0, np.where(u < web_only + store_only, 0.0, rng.beta(2.0, 2.0, size=n))
    )
    category_shares = np.array([share for _, _, share in CATEGORIES])
    favourite_category = rng.choice(len(CATEGORIES), size=n, p=category_shares / category_shares.sum())

    frame = pl.DataFrame(
        {
            "person": np.arange(n, dtype=np.int64),
            "person_id": "P" + pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(7),
            "household": household.astype(np.int64),
            "female": female,
            "given": given.astype(np.int64),
            "last": last.astype(np.int64),
            "birth_date": birth_date,
            "house_number": house_number[household],
            "street": street[household].astype(np.int64),
            "street_type": street_type[household].astype(np.int64),
            "unit": unit[household].astype(np.int64),
            "postcode": pl.Series(zip_prefixes[person_region]).cast(pl.String)
            + pl.Series(postcode_suffix[household]).cast(pl.String).str.zfill(2),
            "home_store": home_store[household].astype(np.int64),
            "mobile_area": mobile_area.astype(np.int64),
            "mobile_exchange": mobile_exchange,
            "mobile_line": mobile_line,
            "has_landline": has_landline[household],
            "landline_area": area_codes[region][household].astype(np.int64),
            "landline_exchange": landline_exchange[household],
            "landline_line": landline_line[household],
            "personal_email": personal_email,
            "work_email": work_email,
            "alternate_email": alternate_email,
            "acquisition_day": acquisition_day.astype(np.int64),
            "channel": channel_index.astype(np.int64),
            "purchase_rate": purchase_rate,
            "dropout_probability": dropout_probability,
            "spend_rate": spend_rate,
            "web_share": web_share,
            "favourite_category": favourite_category.astype(np.int64),
        }
    )
    return Population(frame=frame, n_days=n_days)


def _channel_shares() -> np.ndarray:
    shares = np.array([c.share for c in CHANNELS])
    return shares / shares.sum()


def _unique_local_numbers(rng: np.random.Generator, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exchange and line numbers valid for the US plan (no N11, no 555), unique within an area code."""
    n = len(area)
    exchange = rng.integers(201, 1000, size=n)
    bad = (exchange % 100 == 11) | (exchange == 555)
    exchange = np.where(bad, exchange - 1, exchange)
    line = rng.integers(0, 10_000, size=n)
    full = area.astype(np.int64) * 10_000_000 + exchange * 10_000 + line
    # Collisions are rare; move a repeated number to the next free line (s[i] >= s[i-1] + 1).
    order = np.argsort(full, kind="stable")
    steps = np.arange(n)
    full[order] = np.maximum.accumulate(full[order] - steps) + steps
    return (full // 10_000) % 1_000, full % 10_000


def _email_addresses(
    rng: np.random.Generator, given: np.ndarray, last: np.ndarray, birth_year: np.ndarray, n: int
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Personal address for everyone, work (30%) and an older alternate (20%); all globally unique."""
    domain_shares = np.array([share for _, share in EMAIL_DOMAINS])
    domains = pl.Series([d for d, _ in EMAIL_DOMAINS], dtype=pl.String)
    companies = pl.Series(COMPANY_DOMAINS, dtype=pl.String)
    frame = pl.DataFrame(
        {
            "f": FIRST_NAME_VOCABULARY.gather(given).str.to_lowercase().str.replace_all(r"[^a-z]", ""),
            "l": LAST_NAME_VOCABULARY.gather(last).str.to_lowercase().str.replace_all(r"[^a-z]", ""),
            "y": pl.Series(birth_year % 100).cast(pl.String).str.zfill(2),
            "pattern_personal": rng.integers(0, 6, size=n),
            "pattern_other": rng.integers(0, 3, size=n),
            "domain": domains.gather(rng.choice(len(domains), size=n, p=domain_shares / domain_shares.sum())),
            "alt_domain": domains.gather(rng.integers(0, len(domains), size=n)),
            "company": companies.gather(rng.integers(0, len(companies), size=n)),
        }
    )
    f, ln, y = pl.col("f"), pl.col("l"), pl.col("y")
    p = pl.col("pattern_personal")
    personal_local = (
        pl.when(p == 0)
        .then(pl.concat_str([f, pl.lit("."), ln]))
        .when(p == 1)
        .then(pl.concat_str([f, ln]))
        .when(p == 2)
        .then(pl.concat_str([f.str.slice(0, 1), ln]))
        .when(p == 3)
        .then(pl.concat_str([f, pl.lit("_"), ln]))
        .when(p == 4)
        .then(pl.concat_str([f, pl.lit("."), ln, y]))
        .otherwise(pl.concat_str([f, y]))
    )
    q = pl.col("pattern_other")
    work_local = (
        pl.when(q == 0)
        .then(pl.concat_str([f, pl.lit("."), ln]))
        .when(q == 1)
        .then(pl.concat_str([f.str.slice(0, 1), ln]))
        .otherwise(pl.concat_str([f, pl.lit("."), ln.str.slice(0, 1)]))
    )
    alternate_local = (
        pl.when(q == 0)
        .then(pl.concat_str([ln, f.str.slice(0, 1), y]))
        .when(q == 1)
        .then(pl.concat_str([f, ln, pl.lit("1")]))
        .otherwise(pl.concat_str([f, pl.lit("_"), y]))
    )
    built = frame.select(
        pl.concat_str([personal_local, pl.lit("@"), pl.col("domain")]).alias("personal"),
        pl.concat_str([work_local, pl.lit("@"), pl.col("company")]).alias("work"),
        pl.concat_str([alternate_local, pl.lit("@"), pl.col("alt_domain")]).alias("alternate"),
    )
    has_work = rng.random(n) < 0.30
    has_alternate = rng.random(n) < 0.20
    everything = pl.concat([built["personal"], built["work"], built["alternate"]]).alias("email")
    unique = _make_unique(everything, rng)
    personal = unique.slice(0, n)
    work = pii.mask(unique.slice(n, n), has_work)
    alternate = pii.mask(unique.slice(2 * n, n), has_alternate)
    return personal.alias("personal_email"), work.alias("work_email"), alternate.alias("alternate_email")


def _make_unique(addresses: pl.Series, rng: np.random.Generator) -> pl.Series:
    """Append digits to the local part of repeated addresses until every address is unique."""
    values = addresses
    while True:
        repeated = ~values.is_first_distinct()
        if not repeated.any():
            return values
        digits = pl.Series(rng.integers(0, 100, size=len(values))).cast(pl.String)
        parts = values.str.split_exact("@", 1).struct.unnest()
        extended = parts["field_0"] + digits + pl.lit("@") + parts["field_1"]
        values = pl.select(pl.when(repeated).then(extended).otherwise(values)).to_series().alias(values.name)


@dataclass
class Purchases:
    """Every purchase of every person plus each person's true dropout time."""

    person: np.ndarray
    time_days: np.ndarray  # continuous, days since the start of the period
    is_first: np.ndarray
    amount_cents: np.ndarray
    death_days: np.ndarray  # per person: when they became inactive (may lie beyond the period)
    repeat_limit: np.ndarray  # per person: the repeat purchase after which they drop out


def simulate_purchases(population: Population, seed: int, params: TrueParameters) -> Purchases:
    """BG/NBD purchase times and Gamma-Gamma order values, vectorised over all people.

    Given the Poisson count K in the window, the purchase times are sorted uniforms; the
    person buys min(K, J) repeats where J ~ Geometric(p) is the repeat after which they drop
    out. Someone still alive at the end dies at the J-th purchase of the continued process.
    """
    rng = stream(seed, "purchases")
    n, n_days = population.size, population.n_days
    rate = population.col("purchase_rate")
    dropout = population.col("dropout_probability")
    first_time = population.col("acquisition_day") + 0.5
    window = n_days - first_time

    poisson_count = rng.poisson(rate * window)
    repeat_limit = rng.geometric(dropout)
    owner = np.repeat(np.arange(n), poisson_count)
    offset = rng.random(len(owner)) * window[owner]
    order = np.lexsort((offset, owner))
    owner, offset = owner[order], offset[order]
    group_start = np.concatenate([[0], np.cumsum(poisson_count)[:-1]])
    rank = np.arange(len(owner)) - group_start[owner]
    kept = rank < repeat_limit[owner]

    died_inside = repeat_limit <= poisson_count
    death_days = np.empty(n)
    last_index = group_start + repeat_limit - 1
    death_days[died_inside] = first_time[died_inside] + offset[last_index[died_inside]]
    alive = ~died_inside
    beyond = rng.gamma(np.maximum(repeat_limit[alive] - poisson_count[alive], 1), 1.0 / rate[alive])
    death_days[alive] = n_days + np.minimum(beyond, 50 * 365.0)

    person = np.concatenate([np.arange(n), owner[kept]])
    time_days = np.concatenate([first_time, first_time[owner[kept]] + offset[kept]])
    is_first = np.concatenate([np.ones(n, dtype=bool), np.zeros(int(kept.sum()), dtype=bool)])
    order = np.lexsort((time_days, person))
    person, time_days, is_first = person[order], time_days[order], is_first[order]

    spend_rate = population.col("spend_rate")
    value = rng.gamma(params.gg_p, 1.0 / spend_rate[person])
    amount_cents = np.maximum(100, np.round(value * 100)).astype(np.int64)
    return Purchases(
        person=person,
        time_days=time_days,
        is_first=is_first,
        amount_cents=amount_cents,
        death_days=death_days,
        repeat_limit=repeat_limit,
    )
