"""The rate-control matrix in virtual time: etl's limiter and a naive client on every cell.

Each cell of ``tests.ratesim.MATRIX`` (a quota shape, a latency, a Retry-After form, the
rows and the workers) is run twice on a virtual clock: through the runner's real
``Delivery`` (pause, adaptive limiter, retry budget, ``workers: auto``), and by a naive
client whose workers each sleep on their own 429s. Prints one markdown table row per
cell: goodput as a share of C (the quota, or what the workers carry if less) and of the
best a client can do when learning a quota costs two pauses, the share of 429s, throttle
events and pauses, and the naive client's goodput and 429s beside them.

With ``--seeds N`` it runs etl's client alone on every cell with N seeds of the cell's
random draws (latency jitter, arrival blur, connection set-up; ``Cell.seed`` 0 to N-1)
and prints, per cell, the mean and the lowest goodput over the best and over C, the mean
throttle events and 429 share, and the mean over all cells: a change to the limiter is
judged on every cell and more than one draw.

Usage::

    python bench/rate_matrix.py            # every cell, both clients (a few minutes on 2 cores)
    python bench/rate_matrix.py --quick    # the 2,000-row cells only
    python bench/rate_matrix.py --seeds 4  # etl only, four draws of every cell (about 2 minutes)
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import statistics
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


def seeded(job: tuple[int, int]) -> tuple[int, tuple[float, float, float, float]]:
    """etl's client on cell ``index`` with ``seed``: goodput / best, goodput / C, throttle events, 429 share."""
    index, seed = job
    cell = dataclasses.replace(MATRIX[index][0], seed=seed)
    etl = simulate("etl", cell)
    best = cell.rows / best_duration(cell)
    return index, (etl.goodput / best, etl.goodput / cell.capacity, etl.throttle_events, etl.throttled_share)


def print_seeds(cells: list[int], seeds: int) -> None:
    print("| cell | / best (mean) | / best (lowest) | / C (mean) | throttle events (mean) | 429s (mean) |")
    print("|---|---|---|---|---|---|")
    runs: dict[int, list[tuple[float, float, float, float]]] = {index: [] for index in cells}
    with multiprocessing.Pool(2) as pool:
        for index, figures in pool.imap(seeded, [(index, seed) for index in cells for seed in range(seeds)]):
            runs[index].append(figures)
    for index, draws in runs.items():
        of_best, of_c, events, share = (statistics.mean(column) for column in zip(*draws, strict=True))
        lowest = min(draw[0] for draw in draws)
        print(f"| {MATRIX[index][0].label()} | {of_best:.3f} | {lowest:.3f} | {of_c:.3f} | {events:.1f} | {share:.1%} |")
    print(f"mean of / best over every cell: {statistics.mean(statistics.mean(f[0] for f in v) for v in runs.values()):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 2,000-row cells")
    parser.add_argument("--seeds", type=int, default=0, help="etl only, this many draws of every cell")
    args = parser.parse_args()
    cells = [i for i, (cell, _) in enumerate(MATRIX) if not args.quick or cell.rows <= 2000]
    if args.seeds:
        print_seeds(cells, args.seeds)
        return
    print(HEADER)
    with multiprocessing.Pool(2) as pool:
        for line in pool.imap(row, cells):
            print(line, flush=True)


if __name__ == "__main__":
    main()
