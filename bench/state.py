"""The state layer's cost per record: checkpoint writes, duplicate detection, resume lookups.

Runs the real :class:`~etl_core.state.StateStore` and :class:`~etl_core.state.SeenKeys`
in this process the way a run uses them, and reports CPU microseconds per record
(process time, the writer thread included), and for ``write`` wall-clock microseconds:

- ``write``: ``--workers`` trio tasks each queue a checkpoint and wait for its commit
  before the next one (the runner's group commit), ``--records`` records in all; the
  same loop without a store is measured too and taken off.
- ``seen``: the keys of ``--records`` records through ``SeenKeys.add`` in batches of
  ``--batch`` (one in 20 a duplicate).
- ``lookup``: the same keys through ``StateStore.lookup`` in batches, against the
  state file the ``write`` case left (a rerun's skip-unchanged check).

``--baseline FILE`` also measures another copy of ``etl_core/state.py`` (e.g. the one
before a change) in the same run and prints the ratios.

    .venv/bin/python bench/state.py [--records 200000] [--workers 64] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from etl_core import state as current  # noqa: E402
from etl_core._outcome import Outcome  # noqa: E402


def load_baseline(path: str) -> ModuleType:
    """Import another copy of the state module, as a sibling of ``etl_core.state``."""
    spec = importlib.util.spec_from_file_location("etl_core._state_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def keys_of(records: int) -> list[str]:
    """Keys as a contacts file has them; one in 20 repeats an earlier one."""
    return [f"C-{(i // 2 if i % 20 == 19 else i) * 7919 % 10_000_019:09d}@example.com" for i in range(records)]


def cpu_us(start: float, records: int) -> float:
    return (time.process_time() - start) * 1e6 / records


class _NoStore:
    """Commits at once: the control run, to take the workers' own loop out of ``write``."""

    def __init__(self) -> None:
        self.recorded = 0
        self.committed = 0
        self.on_commit: Any = None

    def start(self) -> None:
        pass

    def record(self, checkpoint: Any) -> None:
        self.recorded += 1
        self.committed += 1

    def close(self) -> None:
        pass


def bench_write(module: ModuleType | None, path: str, keys: list[str], workers: int) -> tuple[float, float]:
    """Return CPU and wall-clock microseconds per record."""
    store = _NoStore() if module is None else module.StateStore(path, "bench", "run-1")
    checkpoint = current.Checkpoint if module is None else module.Checkpoint
    lot = trio.lowlevel.ParkingLot()

    async def main() -> None:
        token = trio.lowlevel.current_trio_token()
        store.on_commit = lambda: token.run_sync_soon(lot.unpark_all)
        store.start()
        todo = iter(enumerate(keys))

        async def worker() -> None:
            for line, key in todo:
                await trio.sleep(0)  # the request
                store.record(checkpoint(key, "0" * 32, Outcome.OK, False, 200, 1, None, line))
                target = store.recorded
                while store.committed < target:
                    await lot.park()

        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(worker)

    start, wall = time.process_time(), time.perf_counter()
    trio.run(main)
    store.close()
    return cpu_us(start, len(keys)), (time.perf_counter() - wall) * 1e6 / len(keys)


def bench_seen(module: ModuleType, keys: list[str], batch: int) -> tuple[float, int]:
    seen = module.SeenKeys()
    duplicates = 0
    start = time.process_time()
    for at in range(0, len(keys), batch):
        duplicates += len(seen.add([(key, at + i) for i, key in enumerate(keys[at : at + batch])]))
    took = cpu_us(start, len(keys))
    seen.close()
    return took, duplicates


def bench_lookup(module: ModuleType, path: str, keys: list[str], batch: int) -> tuple[float, int]:
    store = module.StateStore(path, "bench", "run-2", read_only=True)
    found = 0
    start = time.process_time()
    for at in range(0, len(keys), batch):
        found += len(store.lookup(keys[at : at + batch]))
    took = cpu_us(start, len(keys))
    store.close()
    return took, found


def measure(module: ModuleType, keys: list[str], args: argparse.Namespace, control: tuple[float, float]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "state.db")
        write, write_wall = (a - b for a, b in zip(bench_write(module, path, keys, args.workers), control, strict=True))
        seen, duplicates = bench_seen(module, keys, args.batch)
        lookup, found = bench_lookup(module, path, keys, args.batch)
    return {"write": write, "write wall": write_wall, "seen": seen, "lookup": lookup, "total": write + seen + lookup,
            "duplicates": duplicates, "found": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--batch", type=int, default=500, help="records per read batch (run.batch_size)")
    parser.add_argument("--baseline", help="another copy of etl_core/state.py to measure in the same run")
    args = parser.parse_args()
    keys = keys_of(args.records)
    control = bench_write(None, "", keys, args.workers)
    runs = {"current": measure(current, keys, args, control)}
    if args.baseline:
        runs["baseline"] = measure(load_baseline(args.baseline), keys, args, control)
    print(f"{args.records} records, {args.workers} workers, batches of {args.batch}: CPU us per record")
    print(f"(write: less {control[0]:.2f} us of CPU, {control[1]:.2f} us of wall time: the workers' own loop without a store)")
    parts = ("write", "seen", "lookup", "total", "write wall")
    print(f"{'':10}" + "".join(f"{part:>11}" for part in parts))
    for name, run in runs.items():
        print(f"{name:10}" + "".join(f"{run[part]:11.2f}" for part in parts))
        print(f"{'':10}duplicates found: {run['duplicates']}, earlier outcomes found: {run['found']}")
    if "baseline" in runs:
        ratios = "".join(f"{runs['baseline'][p] / runs['current'][p]:10.1f}x" for p in parts)
        print(f"{'speed-up':10}{ratios}")


if __name__ == "__main__":
    main()
