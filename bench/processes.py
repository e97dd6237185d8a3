"""Case 9: `run.processes` on one machine: updates/s of 2 shard processes against 1.

A CPU-bound run: the sandbox adds no latency and has no rate limit, so one `etl` process
sends as fast as its one thread of Python can. The same rows are sent by `run.processes: 1`
and `run.processes: 2` (each to a fresh sandbox); reported: updates/s (the sandbox's, from
its first to its last API request), the client's CPU time (the parent and its shards)
and the sandbox's, and the ratio of the two runs' updates/s. Target: >= 1.6x on a 2-core
machine.

The sandbox is one Python process too, on the same machine: at full speed it needs about
as much CPU per request as a client does, so on 2 cores the two shards and the sandbox
share 2 cores and the sandbox can become the limit. The CPU shares printed say which it
was (a CPU use near 1.0 is one core busy), and the last line gives the best ratio the
cores allow: all of them busy, at the client's and the sandbox's CPU per update measured
with one process. The figure is the machine's, not the client's alone, and needs a
quiet machine.

    .venv/bin/python bench/processes.py [--quick] [--rows N] [--workers W] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import _common as c

TARGET = 1.6


def config_with_processes(directory: Path, processes: int) -> Path:
    """The shipped config, with ``run.processes`` set."""
    text = c.CONFIG.read_text(encoding="utf-8")
    assert "  workers: auto\n" in text
    path = directory / f"processes-{processes}.yaml"
    path.write_text(text.replace("  workers: auto\n", f"  workers: auto\n  processes: {processes}\n"), encoding="utf-8")
    return path


def measure_one(processes: int, *, rows: int, workers: int) -> dict[str, Any]:
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", rows)
        config = config_with_processes(wd, processes)
        args = ["run", str(config), "--log-format", "json", "--no-progress", "--workers", str(workers)]
        with c.Sandbox(seed_count=rows) as sandbox:
            cpu_before = sandbox.cpu_seconds()
            run = c.run_etl(args, cwd=wd, env=c.sandbox_env(sandbox, csv_path), timeout=60 + rows / 100)
            stats = sandbox.stats()
            cpu_after = sandbox.cpu_seconds()
    sandbox_cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
    goodput = c.api_rate(stats)
    sending_s = rows / goodput if goodput else None
    return {
        "processes": processes,
        "rows": rows,
        "exit_code": run.get("exit_code"),
        "applied": stats["applied"],
        "updates_per_s": goodput,
        "client_cpu_s": run.get("cpu_s"),
        "wall_s": run.get("wall_s"),
        "sandbox_cpu_s": sandbox_cpu,
        "client_cpu_us_per_update": 1e6 * run["cpu_s"] / stats["applied"] if stats["applied"] and "cpu_s" in run else None,
        "sandbox_cpu_us_per_update": 1e6 * sandbox_cpu / stats["applied"] if stats["applied"] and sandbox_cpu else None,
        # CPU seconds per second of sending (first to last request): 1.0 = one core busy.
        "sandbox_cpu_use": sandbox_cpu / sending_s if sandbox_cpu is not None and sending_s else None,
        "log_tail": run.get("log_tail"),
    }


def measure(*, quick: bool = False, rows: int | None = None, workers: int = 64) -> dict[str, Any]:
    rows = rows or (3_000 if quick else 30_000)
    runs = []
    for processes in (1, 2):
        result = measure_one(processes, rows=rows, workers=workers)
        runs.append(result)
        print(f"  case 9: processes {processes}: {c.fmt(result['updates_per_s'])} updates/s", file=sys.stderr, flush=True)
    one, two = runs[0]["updates_per_s"], runs[1]["updates_per_s"]
    # What the machine allows at best: every core busy with the client's and the sandbox's
    # CPU per update as measured with one process (start-up included).
    client, server = runs[0]["client_cpu_us_per_update"], runs[0]["sandbox_cpu_us_per_update"]
    cores = c.machine()["nproc"] or 1
    bound = cores * 1e6 / (client + server) / one if one and client and server else None
    return {"machine": c.machine(), "workers": workers, "runs": runs, "ratio": two / one if one and two else None, "ratio_bound": bound}


def table(result: dict[str, Any]) -> str:
    rows = [
        [
            r["processes"], r["rows"], r["applied"], r["exit_code"], c.fmt(r["updates_per_s"]), c.fmt(r["client_cpu_s"], 1),
            c.fmt(r["wall_s"], 1), c.fmt(r["sandbox_cpu_s"], 1), c.fmt(r["sandbox_cpu_use"], 2),
            c.fmt(r["client_cpu_us_per_update"]), c.fmt(r["sandbox_cpu_us_per_update"]),
        ]
        for r in result["runs"]
    ]
    header = [
        "processes", "rows", "applied", "exit", "updates/s", "client CPU s", "wall s", "sandbox CPU s", "sandbox CPU use",
        "client CPU us/update", "sandbox CPU us/update",
    ]
    ratio = result["ratio"]
    verdict = c.verdict(ratio >= TARGET if ratio is not None else None)
    return "\n".join([
        c.table(f"Case 9: run.processes 1 vs 2, CPU-bound (no latency, no rate limit), {result['workers']} workers each", header, rows),
        f"ratio (processes 2 / processes 1): {c.fmt(ratio, 2, 'x')}  target >= {TARGET}x: {verdict}",
        f"machine: {result['machine']['nproc']} CPUs, {result['machine']['cpu']}; the sandbox shares them: with the CPU per "
        f"update measured with 1 process, the cores allow at most {c.fmt(result['ratio_bound'], 2, 'x')}",
    ])


def main() -> None:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, help="rows per run (default 30,000; --quick 3,000)")
    p.add_argument("--workers", type=int, default=64, help="concurrent sends per process (default 64)")
    args = p.parse_args()
    result = measure(quick=args.quick, rows=args.rows, workers=args.workers)
    print(table(result))
    c.save_json(args.json, result)


if __name__ == "__main__":
    main()
