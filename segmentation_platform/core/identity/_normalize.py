"""Normalizers of person details: one value at a time, their SQL twins, and phones in bulk.

These rules decide which records can match, so there is one implementation of each: the
bulk record building in `_records` applies exactly these (in SQL where DuckDB can, over
distinct raw values in Python where a library is needed), and other domains (activation's
exports) import them from `core.identity`.
"""

import os
import re
import subprocess
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import phonenumbers

# Above this many distinct phone numbers, normalization runs in worker processes.
PARALLEL_PHONE_THRESHOLD = 50_000
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"

# Letters NFKD does not decompose into a base letter plus accents.
_SPECIAL_LETTERS = str.maketrans(
    {"ø": "o", "đ": "d", "ð": "d", "ł": "l", "æ": "ae", "œ": "oe", "þ": "th", "ı": "i", "ß": "ss"}
)
_NAME_DROPPED = re.compile(r"['’`.]")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_email(value: str | None) -> str | None:
    """Trimmed, lower-cased; None unless it looks like an address."""
    if value is None:
        return None
    email = value.strip().lower()
    return email if re.match(EMAIL_PATTERN, email) else None


def email_local_part(email: str | None) -> str | None:
    """The mailbox name without a `+tag`: what people keep when they change provider."""
    if email is None:
        return None
    local = email.split("@", 1)[0].split("+", 1)[0]
    return local or None


def normalize_phone(value: str | None, default_region: str = "US", validation: str = "valid") -> str | None:
    """E.164 (`+12125550100`), or None when phonenumbers cannot read a real number."""
    if value is None or not value.strip():
        return None
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    ok = (
        phonenumbers.is_valid_number(number)
        if validation == "valid"
        else phonenumbers.is_possible_number(number)
    )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if ok else None


def normalize_name(value: str | None) -> str | None:
    """Unicode-folded: NFKD, accents stripped, case-folded, punctuation dropped, spaces collapsed."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKD", value)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.translate(_SPECIAL_LETTERS)
    text = _NAME_DROPPED.sub("", text)
    text = _NON_ALNUM.sub(" ", text).strip()
    return text or None


def first_name_forms(name: str | None, nicknames: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The normalized name, the formal names it may be a nickname of (kate -> katherine,
    kathleen, ...) and, for a formal name, its own nicknames (robert -> bob, rob, ...).

    Two first names may be the same person's when their forms intersect (bob ~ robbie via
    robert). Nicknames of a nickname's formal names are not added: chris would otherwise
    make tina (christina) and topher (christopher) look alike.
    """
    if name is None:
        return None
    forms = {name, *nicknames.get(name, ())}
    forms.update(nick for nick, formals in nicknames.items() if name in formals)
    return sorted(forms)


def normalize_address(value: str | None, abbreviations: dict[str, str]) -> str | None:
    """Folded like a name, street words abbreviated one way (street -> st), unit spellings
    ("#4", "Unit 4", "Apt 4") made one."""
    if value is None:
        return None
    text = normalize_name(value.replace("#", " apt "))
    if text is None:
        return None
    words: list[str] = []
    for word in text.split(" "):
        word = abbreviations.get(word, word)
        if not words or words[-1] != word:
            words.append(word)
    return " ".join(words)


def normalize_postcode(value: str | None) -> str | None:
    if value is None:
        return None
    code = re.sub(r"\s+", "", value).upper()
    return code or None


# --- SQL twins -------------------------------------------------------------------------


def email_sql(expr: str) -> str:
    """SQL twin of `normalize_email`."""
    return f"CASE WHEN regexp_matches(lower(trim({expr})), '{EMAIL_PATTERN}') THEN lower(trim({expr})) END"


def email_local_sql(email_expr: str) -> str:
    """SQL twin of `email_local_part` over an already normalized email."""
    return f"nullif(split_part(split_part({email_expr}, '@', 1), '+', 1), '')"


def postcode_sql(expr: str) -> str:
    """SQL twin of `normalize_postcode`."""
    return f"nullif(upper(regexp_replace({expr}, '\\s+', '', 'g')), '')"


# --- phones in bulk --------------------------------------------------------------------


def normalize_phones(
    values: list[str], default_region: str = "US", validation: str = "valid"
) -> list[str | None]:
    """`normalize_phone` over many values; large batches are spread over the CPU cores.

    phonenumbers costs ~30 µs a number in pure Python: 400k distinct numbers (a million
    records) take 12 s on one core. The workers are plain `python -c` subprocesses fed
    through pipes: forking a process that runs DuckDB threads can deadlock, and
    multiprocessing's spawn would re-run the caller's unguarded `__main__` script.
    """
    workers = min(os.cpu_count() or 1, 4)
    if len(values) < PARALLEL_PHONE_THRESHOLD or workers < 2:
        return [normalize_phone(v, default_region, validation) for v in values]
    size = -(-len(values) // workers)
    chunks = [values[i : i + size] for i in range(0, len(values), size)]
    code = "from segmentation_platform.core.identity._normalize import phone_worker_main; phone_worker_main()"

    def run(chunk: list[str]) -> list[str | None]:
        payload = "\n".join(v.replace("\n", " ").replace("\r", " ") for v in chunk) + "\n"
        done = subprocess.run(
            [sys.executable, "-c", code, default_region, validation],
            input=payload,
            capture_output=True,
            text=True,
            check=True,
        )
        lines = done.stdout.split("\n")[: len(chunk)]
        if len(lines) != len(chunk):
            raise RuntimeError(f"phone worker returned {len(lines)} values for {len(chunk)}")
        return [line or None for line in lines]

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        return [number for part in pool.map(run, chunks) for number in part]


def phone_worker_main() -> None:
    """Entry point of a phone worker: raw numbers on stdin, E.164 (or empty) on stdout."""
    default_region, validation = sys.argv[1], sys.argv[2]
    out = [
        normalize_phone(line, default_region, validation) or "" for line in sys.stdin.read().split("\n")[:-1]
    ]
    sys.stdout.write("\n".join(out) + "\n")
