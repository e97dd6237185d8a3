"""Case 8: rate control end to end, etl and the naive client against the sandbox's quota shapes.

Each cell (a quota shape, a latency, a Retry-After form, the rows and the workers, as in
``tests.ratesim.Cell``) starts the CXone sandbox with that quota in a subprocess and
runs the real ``etl run configs/cxone-contacts.yaml`` against it, then the naive client
(``naive_client.py``: every worker sleeps on its own 429) against a fresh sandbox with
the same quota. Prints one markdown table row per cell: C (the quota, or what the
workers carry at this latency if less), etl's goodput (updates the sandbox applied,
from its first to its last API request) as a share of C and of the best a client can
do when learning the quota costs two pauses, its share of 429s, its throttle events
and pauses (from the run report), the quota it measured, its CPU per request, and the
naive client's goodput and 429s beside them.

A cell marked ``rerun`` is then run a second time, as a user would run the same
pipeline again: the same output directory (no ``--fresh``; the state file keeps the
measured quota), as many other contacts, and a fresh sandbox with the same quota on the
same port (the remembered quota belongs to the destination's URL).

``workers: auto`` cells (workers=0) pass no ``--workers``: the shipped config says
``auto``. The naive client has no such mode and runs them with 32 workers. The etl
process spends 1-4 ms of CPU per request, depending on the machine (the CPU column
gives it, and the cores it kept busy): a cell whose C needs about one core measures
the CPU rather than the rate control. So every cell with a C over 200/s is also run
with no quota at all, same latency and workers: what etl reaches then ("no quota") is
the most that cell can show on this machine.

    .venv/bin/python bench/rate_sandbox.py            # every cell, both clients (about 16 minutes on 2 cores)
    .venv/bin/python bench/rate_sandbox.py --quick    # three short cells: a smoke check
    .venv/bin/python bench/rate_sandbox.py --no-naive --json results.json
    .venv/bin/python bench/rate_sandbox.py --only '4 workers' --no-naive   # one cell
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import _common as c

sys.path.insert(0, str(c.ROOT))

from tests.ratesim import Cell, best_duration

#: Workers the naive client runs ``workers: auto`` cells with.
NAIVE_AUTO_WORKERS = 32
#: Cells whose C is over this are also run with no quota (what the machine allows).
CEILING_FROM = 200.0
#: Goals: goodput as a share of C (0.98 from this many rows on), and the share of 429s.
GOALS = {"goodput": 0.95, "long_goodput": 0.98, "long_rows": 20_000, "share_429": 0.01}


@dataclasses.dataclass(frozen=True)
class SandboxCell:
    """A cell of the matrix, and whether to run the pipeline a second time on it."""

    cell: Cell
    rerun: bool = False


def _bucket(rate: float, burst: float, *, workers: int = 32, rerun: bool = False, **more: Any) -> SandboxCell:
    return SandboxCell(Cell(rate=rate, burst=burst, workers=workers, **more), rerun)


#: The cases of a field report (20 ms latency and 2,000 rows unless said), a latency-bound
#: quota, and ``workers: auto`` (workers=0).
CELLS: tuple[SandboxCell, ...] = (
    _bucket(100, 20, workers=4),
    _bucket(100, 20, workers=16),
    _bucket(100, 20, workers=16, retry_after="http-date"),
    _bucket(100, 1, workers=32),
    _bucket(500, 50, workers=128, rows=10_000),
    _bucket(100, 20, retry_after="none"),
    _bucket(100, 20, retry_after="milliseconds"),
    _bucket(100, 20, retry_after="fractional"),
    _bucket(100, 1000, rows=10_000),
    _bucket(400, 40, latency=0.05, workers=32),
    _bucket(400, 40, latency=0.05, workers=64),
    _bucket(400, 40, latency=0.05, workers=0),
    _bucket(100, 10, workers=0, rerun=True),
    _bucket(500, 50, workers=0),
    _bucket(100, 10, workers=0, latency=0.1, jitter=0.05),
)

QUICK_CELLS: tuple[SandboxCell, ...] = (
    _bucket(100, 20, workers=16, rows=500),
    _bucket(100, 10, workers=0, rows=500, rerun=True),
    _bucket(400, 40, latency=0.05, workers=0, rows=1000),
)

HEADER = (
    "| cell | C/s | etl updates/s | etl / C | / best | etl 429s | throttle events | pauses | quota measured | slots "
    "| CPU ms/req (cores) | no quota/s | naive / C | naive 429s | goal met |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def sandbox_options(cell: Cell) -> tuple[dict[str, Any], list[str]]:
    """The :class:`_common.Sandbox` arguments that give the sandbox ``cell``'s quota."""
    options = ["--limit-shape", cell.shape, "--random-seed", str(cell.seed)]
    if cell.jitter:
        options += ["--latency-jitter", str(cell.jitter)]
    if cell.shape != "token_bucket":
        options += ["--window", str(cell.window)]
    if cell.penalty:
        options += ["--throttle-penalty", str(cell.penalty)]
    if cell.status != 429:
        options += ["--throttle-status", str(cell.status)]
    if cell.shape == "in_flight" or cell.moves:
        raise ValueError(f"the sandbox cells do not cover {cell.label()}")
    kwargs = {"rate_limit": cell.rate, "burst": cell.burst, "retry_after": cell.retry_after, "latency": cell.latency}
    return kwargs, options


def _figures(run: dict[str, Any], stats: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """What a client achieved on ``cell``: from its process (``run``) and the sandbox's ``stats``."""
    goodput = c.api_rate(stats)
    requests = stats["requests"]
    return {
        "exit_code": run.get("exit_code"),
        "timed_out": run.get("timed_out"),
        "applied": stats["applied"],
        "requests": requests,
        "goodput": goodput,
        "of_c": goodput / cell.capacity if goodput else None,
        "share_429": c.share_429(stats),
        "cpu_ms_per_request": 1e3 * run["cpu_s"] / requests if requests and "cpu_s" in run else None,
        "cpu_use": run["cpu_s"] / run["wall_s"] if run.get("wall_s") and "cpu_s" in run else None,
        "wall_s": run.get("wall_s"),
        "log_tail": run.get("log_tail"),
    }


def _etl_figures(run: dict[str, Any], stats: dict[str, Any], cell: Cell) -> dict[str, Any]:
    figures = _figures(run, stats, cell)
    report = run.get("report", {})
    requests = report.get("requests", {})
    quota = report.get("quota", {})
    goodput = figures["goodput"]
    return figures | {
        "ok": report.get("records", {}).get("ok"),
        "of_best": goodput / (cell.rows / best_duration(cell)) if goodput else None,
        "throttle_events": requests.get("throttle_events"),
        "pauses": requests.get("pauses"),
        "paused_s": requests.get("paused_s"),
        "concurrency": requests.get("concurrency"),
        "quota_rate": quota.get("rate_per_s"),
        "quota_burst": quota.get("burst"),
        "quota_remembered": quota.get("remembered"),
    }


def _naive_figures(cell: Cell, csv_path: Path, workdir: Path) -> dict[str, Any]:
    nominal = cell.rows / cell.capacity
    kwargs, options = sandbox_options(cell)
    with c.Sandbox(**kwargs, options=options) as sandbox:
        # It can take several times as long: stop it after a while, keep what it did until then.
        run = c.run_naive(csv_path, sandbox, workers=cell.workers or NAIVE_AUTO_WORKERS, cwd=workdir,
                          timeout=1.25 * nominal + 5)
        stats = sandbox.stats()
    return _figures(run, stats, cell) | {"finished": stats["applied"] >= cell.rows}


def measure_one(item: SandboxCell, *, naive: bool) -> list[dict[str, Any]]:
    """Run ``item`` (twice when it is a rerun cell) and return one result per run."""
    cell = item.cell
    nominal = cell.rows / cell.capacity
    kwargs, options = sandbox_options(cell)
    # Other work on the machine slows the client: keep the load average beside the figures.
    results = [{"cell": cell.label(), "capacity": cell.capacity, "rows": cell.rows, "workers": cell.workers or "auto",
                "load_before": os.getloadavg()[0]}]
    args = c.etl_run_args(workers=cell.workers or None)
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", cell.rows)
        with c.Sandbox(**kwargs, options=options) as sandbox:
            port = sandbox.port
            run = c.run_etl(args, cwd=wd, env=c.sandbox_env(sandbox, csv_path), timeout=3 * nominal + 60, name="etl")
            results[0]["etl"] = _etl_figures(run, sandbox.stats(), cell)
        if cell.capacity > CEILING_FROM:
            with c.Sandbox(**{**kwargs, "rate_limit": None, "burst": None}, options=options) as sandbox:
                c.run_etl([*args, "--fresh"], cwd=wd, env=c.sandbox_env(sandbox, csv_path), timeout=3 * nominal + 60,
                          name="etl-no-quota")
                results[0]["no_quota"] = c.api_rate(sandbox.stats())
        if naive:
            results[0]["naive"] = _naive_figures(cell, csv_path, wd)
        if item.rerun:
            # The same pipeline again, on other contacts, against the same quota and URL.
            csv_path = c.write_contacts_csv(wd / "contacts-2.csv", cell.rows, first=cell.rows)
            with c.Sandbox(**kwargs, options=options, port=port) as sandbox:
                run = c.run_etl(args, cwd=wd, env=c.sandbox_env(sandbox, csv_path), timeout=3 * nominal + 60, name="etl-2")
                second = {"cell": cell.label() + ", second run", "capacity": cell.capacity, "rows": cell.rows,
                          "workers": cell.workers or "auto", "etl": _etl_figures(run, sandbox.stats(), cell)}
            results.append(second)
    return results


def goal_met(result: dict[str, Any]) -> bool | None:
    etl = result["etl"]
    if etl["of_c"] is None or etl["share_429"] is None:
        return None
    goal = GOALS["long_goodput"] if result["rows"] >= GOALS["long_rows"] else GOALS["goodput"]
    return etl["of_c"] >= goal and etl["share_429"] <= GOALS["share_429"]


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def row(result: dict[str, Any]) -> str:
    """One markdown table row."""
    etl, naive = result["etl"], result.get("naive")
    quota = "-"
    if etl["quota_rate"] is not None:
        quota = f"{etl['quota_rate']:g}/s, burst {etl['quota_burst']:g}" + (" (remembered)" if etl["quota_remembered"] else "")
    pauses = f"{etl['pauses']} ({etl['paused_s']:.1f} s)" if etl["pauses"] is not None else "-"
    naive_of_c = "-"
    if naive:
        naive_of_c = c.fmt(naive["of_c"], 2) + ("" if naive["finished"] else "*")
    exit_note = "" if etl["exit_code"] == 0 else f" (exit {etl['exit_code']}{', timed out' if etl['timed_out'] else ''})"
    return (
        f"| {result['cell']} | {result['capacity']:.0f} | {c.fmt(etl['goodput'], 1)} | {c.fmt(etl['of_c'], 2)}{exit_note} "
        f"| {c.fmt(etl['of_best'], 2)} | {_percent(etl['share_429'])} | {c.fmt(etl['throttle_events'])} | {pauses} "
        f"| {quota} | {c.fmt(etl['concurrency'])} | {c.fmt(etl['cpu_ms_per_request'], 1)} ({c.fmt(etl['cpu_use'], 2)}) "
        f"| {c.fmt(result.get('no_quota'))} "
        f"| {naive_of_c} | {_percent(naive['share_429']) if naive else '-'} | {c.verdict(goal_met(result))} |"
    )


def measure(
    *, quick: bool = False, naive: bool = True, echo: bool = False, only: str | None = None
) -> list[dict[str, Any]]:
    """Run every cell (``quick``: three short ones; ``only``: those whose label holds it);
    with ``echo`` print each row as it comes."""
    results: list[dict[str, Any]] = []
    if echo:
        print(HEADER, flush=True)
    for item in QUICK_CELLS if quick else CELLS:
        if only is not None and only not in item.cell.label():
            continue
        for result in measure_one(item, naive=naive):
            results.append(result)
            if echo:
                print(row(result), flush=True)
            etl = result["etl"]
            print(f"  case 8: {result['cell']}: {c.fmt(etl['of_c'], 2)} C, 429 {_percent(etl['share_429'])}, "
                  f"etl {c.fmt(etl['wall_s'], 1)} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return results


def footnote(results: list[dict[str, Any]]) -> str:
    """The note on naive runs that were stopped, if any."""
    if any(r.get("naive") and not r["naive"]["finished"] for r in results):
        return "\\* the naive client was stopped after 1.25 times the nominal time plus 5 s; figures up to then"
    return ""


def table(results: list[dict[str, Any]]) -> str:
    note = footnote(results)
    rows = "\n".join([HEADER, *(row(r) for r in results)])
    return f"Case 8: rate control against the sandbox\n\n{rows}" + (f"\n\n{note}" if note else "")


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--no-naive", action="store_true", help="skip the naive client")
    p.add_argument("--only", metavar="TEXT", help="run only the cells whose label contains TEXT, e.g. '4 workers'")
    args = p.parse_args(argv)
    results = measure(quick=args.quick, naive=not args.no_naive, echo=True, only=args.only)
    if note := footnote(results):
        print(f"\n{note}")
    c.save_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
