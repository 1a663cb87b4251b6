"""Render a person's true identity attributes the way each source system would have stored them.

Every renderer works on whole columns (one entry per record) so that noise costs the same
for a thousand or a million records. The noise is the kind identity resolution must
survive: nicknames, typos in names, mailboxes and street names, case and whitespace in
emails, many phone formats of one number, abbreviated street types.
"""

import numpy as np
import polars as pl

from segmentation_platform.synthetic.names import (
    FEMALE_NAMES,
    LAST_NAMES,
    MALE_NAMES,
    STREET_NAMES,
    STREET_TYPES,
)

# Given names first (females, then males), nicknames after them, so one index space covers both.
GIVEN_NAMES: list[str] = [name for name, _ in FEMALE_NAMES] + [name for name, _ in MALE_NAMES]
_NICKNAMES: list[tuple[str, ...]] = [nicks for _, nicks in FEMALE_NAMES] + [nicks for _, nicks in MALE_NAMES]
FIRST_NAME_VOCABULARY = pl.Series(
    "first_name", GIVEN_NAMES + [nick for nicks in _NICKNAMES for nick in nicks], dtype=pl.String
)
_NICK_COUNT = np.array([len(n) for n in _NICKNAMES], dtype=np.int64)
_NICK_OFFSET = len(GIVEN_NAMES) + np.concatenate([[0], np.cumsum(_NICK_COUNT)[:-1]])
N_FEMALE_NAMES = len(FEMALE_NAMES)
N_MALE_NAMES = len(MALE_NAMES)

LAST_NAME_VOCABULARY = pl.Series("last_name", LAST_NAMES, dtype=pl.String)
STREET_NAME_VOCABULARY = pl.Series("street", STREET_NAMES, dtype=pl.String)
STREET_TYPE_FULL = pl.Series("type", [full for full, _ in STREET_TYPES], dtype=pl.String)
STREET_TYPE_SHORT = pl.Series("type", [short for _, short in STREET_TYPES], dtype=pl.String)

# Phone formats as people and systems type the same US number.
PHONE_STYLE_SHARES = np.array([0.16, 0.20, 0.18, 0.14, 0.10, 0.08, 0.06, 0.08])


def zipf_choice(rng: np.random.Generator, n_values: int, size: int, exponent: float = 0.8) -> np.ndarray:
    """Popular values much more often than rare ones, like real name frequencies."""
    weights = 1.0 / np.arange(1, n_values + 1) ** exponent
    return rng.choice(n_values, size=size, p=weights / weights.sum())


def first_names(
    given_index: np.ndarray, rng: np.random.Generator, nickname_share: float, typo_share: float
) -> pl.Series:
    has_nick = _NICK_COUNT[given_index] > 0
    use_nick = has_nick & (rng.random(len(given_index)) < nickname_share)
    pick = _NICK_OFFSET[given_index] + (
        rng.random(len(given_index)) * np.maximum(_NICK_COUNT[given_index], 1)
    )
    vocabulary_index = np.where(use_nick, pick.astype(np.int64), given_index)
    names = FIRST_NAME_VOCABULARY.gather(vocabulary_index)
    return with_typos(names, rng, typo_share)


def last_names(
    last_index: np.ndarray, rng: np.random.Generator, typo_share: float, upper_share: float = 0.0
) -> pl.Series:
    names = with_typos(LAST_NAME_VOCABULARY.gather(last_index), rng, typo_share)
    upper = pl.Series(rng.random(len(last_index)) < upper_share)
    return pl.select(pl.when(upper).then(names.str.to_uppercase()).otherwise(names)).to_series()


def with_typos(values: pl.Series, rng: np.random.Generator, share: float | np.ndarray) -> pl.Series:
    """Replace a share of the values by a one-keystroke mistake (swap, drop, double, neighbour)."""
    chosen = np.flatnonzero(rng.random(len(values)) < share)
    if len(chosen) == 0:
        return values
    kinds = rng.integers(0, 4, size=len(chosen))
    positions = rng.random(len(chosen))
    originals = values.gather(chosen).to_list()
    typed = [
        _typo(text, kind, position)
        for text, kind, position in zip(originals, kinds.tolist(), positions.tolist(), strict=True)
    ]
    return values.scatter(chosen, pl.Series(typed, dtype=pl.String))


_KEYBOARD_NEIGHBOUR = dict(zip("abcdefghijklmnopqrstuvwxyz", "svxswdfgujklnbipwtaryciezt", strict=True))


def _typo(text: str | None, kind: int, position: float) -> str | None:
    if text is None or len(text) < 3:
        return text
    i = 1 + int(position * (len(text) - 2))  # never the first letter: people rarely miss that one
    if kind == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :] if i + 1 < len(text) else text[:-1]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    neighbour = _KEYBOARD_NEIGHBOUR.get(text[i].lower(), text[i])
    return text[:i] + neighbour + text[i + 1 :]


def phones(area: np.ndarray, exchange: np.ndarray, line: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """The same number in one of eight formats; all parse to one E.164 number with region US."""
    style = rng.choice(len(PHONE_STYLE_SHARES), size=len(area), p=PHONE_STYLE_SHARES)
    frame = pl.DataFrame(
        {"a": area, "e": exchange, "l": line, "s": style},
        schema={"a": pl.Int64, "e": pl.Int64, "l": pl.Int64, "s": pl.Int64},
    ).with_columns(
        pl.col("a").cast(pl.String),
        pl.col("e").cast(pl.String),
        pl.col("l").cast(pl.String).str.zfill(4),
    )
    a, e, ln, s = pl.col("a"), pl.col("e"), pl.col("l"), pl.col("s")
    formatted = (
        pl.when(s == 0)
        .then(pl.concat_str([pl.lit("+1 "), a, pl.lit("-"), e, pl.lit("-"), ln]))
        .when(s == 1)
        .then(pl.concat_str([pl.lit("("), a, pl.lit(") "), e, pl.lit("-"), ln]))
        .when(s == 2)
        .then(pl.concat_str([a, pl.lit("-"), e, pl.lit("-"), ln]))
        .when(s == 3)
        .then(pl.concat_str([a, e, ln]))
        .when(s == 4)
        .then(pl.concat_str([pl.lit("+1"), a, e, ln]))
        .when(s == 5)
        .then(pl.concat_str([a, pl.lit("."), e, pl.lit("."), ln]))
        .when(s == 6)
        .then(pl.concat_str([pl.lit("1 ("), a, pl.lit(") "), e, pl.lit(" "), ln]))
        .otherwise(pl.concat_str([pl.lit("("), a, pl.lit(") "), e, pl.lit(" "), ln]))
    )
    return frame.select(formatted.alias("phone")).to_series()


def emails(
    canonical: pl.Series,
    rng: np.random.Generator,
    capitalised_share: float = 0.07,
    upper_share: float = 0.02,
    padded_share: float = 0.03,
) -> pl.Series:
    """Case and whitespace variants of lower-case addresses; lower(trim()) restores them."""
    u = rng.random(len(canonical))
    style = np.select(
        [
            u < capitalised_share,
            u < capitalised_share + upper_share,
            u < capitalised_share + upper_share + padded_share / 2,
            u < capitalised_share + upper_share + padded_share,
        ],
        [1, 2, 3, 4],
        default=0,
    )
    e, s = pl.col("e"), pl.col("s")
    variant = (
        pl.when(s == 1)
        .then(e.str.to_titlecase())
        .when(s == 2)
        .then(e.str.to_uppercase())
        .when(s == 3)
        .then(pl.concat_str([pl.lit(" "), e]))
        .when(s == 4)
        .then(pl.concat_str([e, pl.lit("  ")]))
        .otherwise(e)
    )
    frame = pl.DataFrame({"e": canonical, "s": pl.Series(style, dtype=pl.Int64)})
    return frame.select(variant.alias("email")).to_series()


def mistyped_emails(canonical: pl.Series, rng: np.random.Generator, share: float | np.ndarray) -> pl.Series:
    """A one-keystroke slip in the mailbox name of a share of hand-typed addresses."""
    parts = canonical.str.split_exact("@", 1).struct.unnest()
    local = with_typos(parts["field_0"], rng, share)
    return pl.select(pl.concat_str([local, pl.lit("@"), parts["field_1"]])).to_series().alias(canonical.name)


def addresses(
    number: np.ndarray,
    street: np.ndarray,
    street_type: np.ndarray,
    unit: np.ndarray,
    rng: np.random.Generator,
    abbreviated_share: float = 0.45,
    typo_share: float = 0.0,
) -> pl.Series:
    """Street lines with abbreviated types, unit spellings ("Apt 4", "#4", ", Apt 4", "Unit 4")
    and, in a share of them, a one-keystroke slip in the street name."""
    n = len(number)
    abbreviated = rng.random(n) < abbreviated_share
    unit_style = rng.integers(0, 4, size=n)
    frame = pl.DataFrame(
        {
            "n": pl.Series(number, dtype=pl.Int64).cast(pl.String),
            "street": with_typos(STREET_NAME_VOCABULARY.gather(street), rng, typo_share),
            "type": pl.select(
                pl.when(pl.Series(abbreviated))
                .then(STREET_TYPE_SHORT.gather(street_type))
                .otherwise(STREET_TYPE_FULL.gather(street_type))
            ).to_series(),
            "unit": pl.Series(unit, dtype=pl.Int64),
            "us": pl.Series(unit_style, dtype=pl.Int64),
        }
    )
    u = pl.col("unit").cast(pl.String)
    unit_text = (
        pl.when(pl.col("unit") <= 0)
        .then(pl.lit(""))
        .when(pl.col("us") == 0)
        .then(pl.concat_str([pl.lit(" Apt "), u]))
        .when(pl.col("us") == 1)
        .then(pl.concat_str([pl.lit(" #"), u]))
        .when(pl.col("us") == 2)
        .then(pl.concat_str([pl.lit(", Apt "), u]))
        .otherwise(pl.concat_str([pl.lit(" Unit "), u]))
    )
    line = pl.concat_str([pl.col("n"), pl.lit(" "), pl.col("street"), pl.lit(" "), pl.col("type"), unit_text])
    return frame.select(line.alias("address")).to_series()


def mask(values: pl.Series, keep: np.ndarray) -> pl.Series:
    """Null where the source did not capture the value (keep is False)."""
    return pl.select(pl.when(pl.Series(keep)).then(values)).to_series().alias(values.name)
