"""Case 2: a rate limit that moves during the run.

The sandbox starts at R = 200 requests/s (burst R/10, Retry-After in seconds); the
script changes it to 50 at 20 s and back to 200 at 40 s (POST /sandbox/settings), and
samples the sandbox's ``applied`` count once a second. Reported: the seconds from each
change until the goodput is back within 10 % of the new R (the end of the first of
three consecutive one-second samples within 10 %). Target: <= 10 s.

    .venv/bin/python bench/moving_limit.py [--quick]
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from typing import Any

import _common as c

TARGET_S = 10.0


def recovery(samples: list[float], change_at: int, rate: float, *, run: int = 3) -> float | None:
    """Seconds from ``change_at`` until ``run`` consecutive samples are within 10 % of ``rate``.

    ``samples[k]`` is the goodput of the second [k, k + 1) after the first request.
    """
    for k in range(change_at, len(samples) - run + 1):
        if all(abs(samples[j] / rate - 1) <= 0.10 for j in range(k, k + run)):
            return float(k + 1 - change_at)
    return None


def measure(*, quick: bool = False, workers: int = 64) -> dict[str, Any]:
    phases = [(0, 200.0), (4, 50.0), (8, 200.0)] if quick else [(0, 200.0), (20, 50.0), (40, 200.0)]
    end = 12 if quick else 62
    rows = int(sum(rate * ((phases[i + 1][0] if i + 1 < len(phases) else end + 5) - at) for i, (at, rate) in enumerate(phases)))
    result: dict[str, Any] = {"phases": phases, "rows": rows, "workers": workers}
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", rows)
        with c.Sandbox(rate_limit=phases[0][1], retry_after="seconds") as sandbox:
            run = c.Run(c.etl_command(*c.etl_run_args(workers=workers)), cwd=wd, env=c.sandbox_env(sandbox, csv_path))
            deadline = time.monotonic() + 60
            while sandbox.stats()["requests"] == 0:
                if not run.running() or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            t0 = time.monotonic()
            applied = [0]
            pending = list(phases[1:])
            for k in range(1, end + 1):
                time.sleep(max(0.0, t0 + k - time.monotonic()))
                applied.append(sandbox.stats()["applied"])
                if pending and k >= pending[0][0]:
                    sandbox.settings(rate_limit=pending.pop(0)[1])
                if not run.running():
                    break
            run.interrupt()
            outcome = run.wait(60)
        pauses = []
        for line in run.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "paused":
                pauses.append(event.get("rate_limit"))
    samples = [b - a for a, b in itertools.pairwise(applied)]
    result["samples"] = samples
    result["exit_code"] = outcome.get("exit_code")
    result["pauses"] = len(pauses)
    result["pause_rates"] = pauses
    result["recovery_s"] = [
        {"at": at, "rate": rate, "seconds": recovery(samples, at, rate)} for at, rate in phases[1:]
    ]
    return result


def table(result: dict[str, Any]) -> str:
    rows = []
    for r in result["recovery_s"]:
        rows.append([f"{r['at']} s", f"-> {r['rate']:g}/s", c.fmt(r["seconds"], 0, " s") if r["seconds"] is not None else "never",
                     f"<= {TARGET_S:g} s", c.verdict(r["seconds"] is not None and r["seconds"] <= TARGET_S)])
    text = c.table("Case 2: a limit that moves (64 workers, Retry-After seconds, burst R/10)",
                   ["change at", "new R", "back within 10 %", "target", "met"], rows)
    rates = " ".join(f"{r:.0f}" if r is not None else "-" for r in result["pause_rates"])
    return text + "\n  updates per second: " + " ".join(str(s) for s in result["samples"]) + f"\n  pauses: {result['pauses']} (rate limit after each: {rates})"


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=64)
    args = p.parse_args(argv)
    result = measure(quick=args.quick, workers=args.workers)
    print(table(result))
    c.save_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
