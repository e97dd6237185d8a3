"""The rate-control matrix in virtual time: etl's limiter and a naive client on every cell.

Each cell of ``tests.ratesim.MATRIX`` (a quota shape, a latency, a Retry-After form, the
rows and the workers) is run twice on a virtual clock: through the runner's real
``Delivery`` (pause, adaptive limiter, retry budget, ``workers: auto``), and by a naive
client whose workers each sleep on their own 429s. Prints one markdown table row per
cell: goodput as a share of C (the quota, or what the workers carry if less) and of the
best a client can do when learning a quota costs two pauses, the share of 429s, throttle
events and pauses, and the naive client's goodput and 429s beside them.

Usage::

    python bench/rate_matrix.py            # every cell, both clients (a few minutes on 2 cores)
    python bench/rate_matrix.py --quick    # the 2,000-row cells only
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ratesim import MATRIX, best_duration, simulate  # noqa: E402

HEADER = (
    "| cell | C/s | etl goodput / C | / best | 429s | throttle events | pauses | naive goodput / C | naive 429s | note |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def row(index: int) -> str:
    cell, shortfall = MATRIX[index]
    etl = simulate("etl", cell)
    naive = simulate("naive", cell)
    best = cell.rows / best_duration(cell)
    note = shortfall.why if shortfall is not None else ""
    return (
        f"| {cell.label()} | {cell.capacity:.0f} | {etl.goodput / cell.capacity:.2f} | {etl.goodput / best:.2f} "
        f"| {etl.throttled_share:.1%} | {etl.throttle_events} | {etl.pauses} ({etl.paused_s:.1f} s) "
        f"| {naive.goodput / cell.capacity:.2f} | {naive.throttled_share:.1%} | {note} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 2,000-row cells")
    args = parser.parse_args()
    cells = [i for i, (cell, _) in enumerate(MATRIX) if not args.quick or cell.rows <= 2000]
    print(HEADER)
    with multiprocessing.Pool(2) as pool:
        for line in pool.imap(row, cells):
            print(line, flush=True)


if __name__ == "__main__":
    main()
