"""Generate a sample contacts CSV that matches the sandbox's seeded contacts.

Most rows are valid updates of seeded contacts (``contact_id(i)``). A few rows are wrong on
purpose, to show how a run reports them: invalid email addresses, well-formed ids that do not
exist, malformed ids (``not-a-uuid``, ``../admin``), blank optional fields, and a quoted value
containing a comma. The output depends only on ``rows`` and ``seed``.

Usage::

    python -m etl_cxone.sample_data contacts.csv [--rows 300] [--seed 20240501]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import uuid
from pathlib import Path

from .sandbox import NAMESPACE, contact_id

__all__ = ["BAD_EMAIL", "BAD_PHONE", "DEFAULT_SEED", "HEADER", "bulk_rows", "main", "sample_rows", "unknown_id", "write_sample_csv"]

#: Columns of the sample file.
HEADER = ("contact_id", "first_name", "last_name", "email", "phone", "city")
#: Seed used for the sample file shipped as ``data/contacts.csv``.
DEFAULT_SEED = 20240501

_INVALID_EMAILS = (
    "john.smith@",
    "no-at-sign.example.com",
    "@example.com",
    "maria@@example.com",
    "li wei@example.com",
    "sam@example",
    "olga@example..com",
    "pat.o'neil@exa_mple.com",
)
_MALFORMED_IDS = ("not-a-uuid", "../admin")
_UNKNOWN_COUNT = 6

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Isla", "James",
    "Ava", "William", "Mia", "Lucas", "Charlotte", "Henry", "Harper", "Theodore", "Evelyn",
    "Jack", "Grace", "Leo", "Freya", "Arthur", "Chloe", "Mateo", "Priya", "Arjun", "Aisha",
    "Omar", "Fatima", "Yusuf", "Mei", "Hiroshi", "Sofia", "Diego", "Lucía", "Zoë", "Seán",
    "Chiara", "Katarzyna", "Jonas", "Ingrid", "Kwame", "Amara", "Nia", "Ravi", "Hannah",
)
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "Evans",
    "Roberts", "Patel", "Khan", "Singh", "Nguyen", "Kim", "Tanaka", "O'Brien", "MacDonald",
    "Murphy", "Kowalski", "Müller", "Rossi", "Dubois", "Okafor", "Mensah", "Hughes", "Wright",
)
_DOMAINS = (
    "example.com", "example.org", "example.net", "mail.example.com", "corp.example.co.uk",
    "example.io",
)
_US_CITIES = (
    "New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio",
    "San Diego", "Dallas", "Austin", "Seattle", "Denver", "Boston", "Atlanta", "Portland",
    "Minneapolis", "Salt Lake City",
)
_UK_CITIES = (
    "London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Edinburgh", "Bristol",
    "Liverpool", "Cardiff", "Belfast",
)
_US_AREA_CODES = (
    "212", "213", "312", "713", "602", "215", "210", "619", "214", "512", "206", "303", "617",
    "404", "503", "612", "801",
)
_COMMA_CITY = "Washington, D.C."


def unknown_id(i: int) -> str:
    """Return a well-formed contact id that the sandbox does not know.

    Args:
        i: Index, from 0.

    Returns:
        ``str(uuid.uuid5(NAMESPACE, f"unknown-{i}"))``.
    """
    return str(uuid.uuid5(NAMESPACE, f"unknown-{i}"))


def _ascii(name: str) -> str:
    table = str.maketrans({"ü": "ue", "í": "i", "ë": "e", "é": "e", "á": "a", "'": ""})
    return name.translate(table).lower()


def _phone(rng: random.Random, uk: bool) -> str:
    if uk:
        return "+447" + "".join(str(rng.randrange(10)) for _ in range(9))
    exchange = f"{rng.randrange(2, 10)}{rng.randrange(10)}{rng.randrange(10)}"
    line = f"{rng.randrange(10000):04d}"
    return f"+1{rng.choice(_US_AREA_CODES)}{exchange}{line}"


def sample_rows(rows: int = 300, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """Build the sample rows (without writing them).

    Args:
        rows: Total number of data rows (at least 17, to fit every kind of bad row).
        seed: Random seed; the same arguments always give the same rows.

    Returns:
        Rows keyed by the names in :data:`HEADER`.

    Raises:
        ValueError: ``rows`` is too small.
    """
    special = len(_INVALID_EMAILS) + _UNKNOWN_COUNT + len(_MALFORMED_IDS) + 1
    if rows < special:
        raise ValueError(f"rows must be at least {special}")
    rng = random.Random(seed)

    result: list[dict[str, str]] = []
    for i in range(rows):
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        uk = rng.random() < 0.3
        local = rng.choice(
            (
                f"{_ascii(first)}.{_ascii(last)}",
                f"{_ascii(first)[0]}{_ascii(last)}",
                f"{_ascii(first)}{rng.randrange(1, 100)}",
                f"{_ascii(first)}_{_ascii(last)}",
            )
        )
        result.append(
            {
                "contact_id": contact_id(i),
                "first_name": first,
                "last_name": last,
                "email": f"{local}@{rng.choice(_DOMAINS)}",
                "phone": _phone(rng, uk),
                "city": rng.choice(_UK_CITIES if uk else _US_CITIES),
            }
        )

    # Spread the deliberate problems over the file, each on its own row.
    positions = rng.sample(range(1, rows), special)
    cursor = iter(positions)
    for email in _INVALID_EMAILS:
        result[next(cursor)]["email"] = email
    for i in range(_UNKNOWN_COUNT):
        result[next(cursor)]["contact_id"] = unknown_id(i)
    for bad in _MALFORMED_IDS:
        result[next(cursor)]["contact_id"] = bad
    comma_row = result[next(cursor)]
    comma_row["city"] = _COMMA_CITY
    comma_row["phone"] = _phone(rng, False)

    # A few blank optional fields (never on the rows above, so each row has one problem).
    taken = set(positions) | {0}
    blanks = [p for p in rng.sample(range(rows), min(rows, 40)) if p not in taken][:6]
    for n, p in enumerate(blanks):
        result[p][("phone", "city")[n % 2]] = ""
    return result


def write_sample_csv(
    path: str | os.PathLike[str], rows: int = 300, seed: int = DEFAULT_SEED
) -> Path:
    """Write the sample CSV.

    Args:
        path: Output file (overwritten).
        rows: Total number of data rows.
        seed: Random seed; the same arguments always give the same bytes.

    Returns:
        The path written.
    """
    out = Path(path)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sample_rows(rows, seed))
    return out


#: The email address of :func:`bulk_rows`' rows with a bad email (no ``@``).
BAD_EMAIL = "no-at-sign.example.com"
#: The phone number of :func:`bulk_rows`' rows with a bad phone number.
BAD_PHONE = "call me"


def bulk_rows(rows: int, *, bad_share: float = 0.02, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """Build rows for bulk runs: row ``i`` updates seeded contact ``i``, a few are wrong.

    ``bad_share`` of the rows, scattered at random, are wrong in one field: every other
    one has :data:`BAD_EMAIL` (an address-book API refuses that entry alone), the others
    :data:`BAD_PHONE` (the sandbox refuses a whole address-book request holding one).

    Args:
        rows: Number of data rows.
        bad_share: Share of wrong rows, from 0 to 1.
        seed: Random seed; the same arguments always give the same rows.

    Returns:
        Rows keyed by the names in :data:`HEADER`.
    """
    rng = random.Random(seed)
    result = [
        {
            "contact_id": contact_id(i),
            "first_name": rng.choice(_FIRST_NAMES),
            "last_name": rng.choice(_LAST_NAMES),
            "email": f"user{i}@{rng.choice(_DOMAINS)}",
            "phone": _phone(rng, rng.random() < 0.3),
            "city": rng.choice(_US_CITIES),
        }
        for i in range(rows)
    ]
    for n, position in enumerate(rng.sample(range(rows), round(rows * bad_share))):
        if n % 2:
            result[position]["phone"] = BAD_PHONE
        else:
            result[position]["email"] = BAD_EMAIL
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m etl_cxone.sample_data``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        prog="python -m etl_cxone.sample_data",
        description="Write a sample contacts CSV matching the CXone sandbox.",
    )
    parser.add_argument("path", help="output CSV file")
    parser.add_argument("--rows", type=int, default=300, help="data rows (default: %(default)s)")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)"
    )
    ns = parser.parse_args(argv)
    try:
        write_sample_csv(ns.path, ns.rows, ns.seed)
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
