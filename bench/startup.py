"""Case 7: start-up time of ``etl validate configs/cxone-contacts.yaml``.

Wall time of the whole command (interpreter start, imports, plugin discovery, config
loading and validation), median of 5 runs (first run not discarded). Target: < 0.8 s.

    .venv/bin/python bench/startup.py [--quick] [--runs 5]
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import _common as c

TARGET_S = 0.8


def measure(*, quick: bool = False, runs: int = 5) -> dict[str, Any]:
    runs = 3 if quick else runs
    times = []
    codes = []
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", 10)
        env = c.dummy_env(csv_path)
        for _ in range(runs):
            started = time.perf_counter()
            done = subprocess.run(c.etl_command("validate", str(c.CONFIG)), cwd=wd, env=env, capture_output=True, timeout=60)
            times.append(time.perf_counter() - started)
            codes.append(done.returncode)
    bare = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([c.PYTHON, "-c", "pass"], timeout=60)
        bare.append(time.perf_counter() - started)
    return {"runs": runs, "times_s": times, "median_s": c.median(times), "exit_codes": codes, "python_median_s": c.median(bare)}


def table(result: dict[str, Any]) -> str:
    return c.table(
        f"Case 7: start-up (etl validate, median of {result['runs']})",
        ["median", "all runs", "bare python", "target", "met"],
        [[c.fmt(result["median_s"], 3, " s"), " ".join(f"{t:.3f}" for t in result["times_s"]),
          c.fmt(result["python_median_s"], 3, " s"), f"< {TARGET_S} s", c.verdict(result["median_s"] < TARGET_S and set(result["exit_codes"]) == {0})]],
    )


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    result = measure(quick=args.quick, runs=args.runs)
    print(table(result))
    c.save_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
