"""Cases 5 and 6: engine speed and memory on dry runs (nothing is sent).

Case 5: ``etl run --dry-run`` of 1,000,000 rows through the shipped config's map and
validate transforms, against a bare ``csv.reader`` loop over the same file in the same
run. Reported: rows/s of both (the dry run's from its report duration, start-up
excluded, and from wall time) and the ratio. Target: >= 150,000 rows/s.

Case 6: peak RSS (RUSAGE_CHILDREN ru_maxrss) of dry runs of 1,000,000 and 10,000,000
rows; the 10M-row CSV is written to a temporary directory and deleted afterwards.
Target: < 150 MB, and within 15 % of each other.

    .venv/bin/python bench/engine.py [--quick] [--no-10m]
"""

from __future__ import annotations

import sys
from typing import Any

import _common as c

SPEED_TARGET = 150_000
RSS_TARGET_MB = 150.0
RSS_SPREAD = 0.15


def dry_run(rows: int, *, timeout: float) -> dict[str, Any]:
    with c.workdir() as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", rows, unique=True)
        size = csv_path.stat().st_size
        bare_rows, bare_s = c.bare_csv_rate(csv_path)
        run = c.run_etl(c.etl_run_args("--dry-run"), cwd=wd, env=c.dummy_env(csv_path), timeout=timeout)
    report = run.get("report", {})
    duration = report.get("duration_s")
    done = report.get("records", {}).get("ok")
    return {
        "rows": rows,
        "file_mb": size / 1e6,
        "exit_code": run.get("exit_code"),
        "timed_out": run.get("timed_out"),
        "ok": done,
        "rows_per_s": done / duration if done and duration else None,
        "rows_per_s_wall": done / run["wall_s"] if done and run.get("wall_s") else None,
        "cpu_s": run.get("cpu_s"),
        "wall_s": run.get("wall_s"),
        "maxrss_mb": run["maxrss_kb"] / 1024 if "maxrss_kb" in run else None,
        "bare_rows_per_s": bare_rows / bare_s if bare_s else None,
        "log_tail": run.get("log_tail"),
    }


def measure(*, quick: bool = False, big: bool = True) -> dict[str, Any]:
    small_rows, big_rows = (20_000, 200_000) if quick else (1_000_000, 10_000_000)
    result = {"small": dry_run(small_rows, timeout=600)}
    print(f"  case 5: {c.fmt(result['small']['rows_per_s'])} rows/s", file=sys.stderr, flush=True)
    if big:
        result["big"] = dry_run(big_rows, timeout=3600)
        print(f"  case 6: {c.fmt(result['big']['maxrss_mb'], 1)} MB at {big_rows:,} rows", file=sys.stderr, flush=True)
    return result


def table(result: dict[str, Any]) -> str:
    small = result["small"]
    ratio = small["rows_per_s"] / small["bare_rows_per_s"] if small["rows_per_s"] and small["bare_rows_per_s"] else None
    speed = c.table(
        "Case 5: engine speed (dry run through map + validate, vs a bare csv.reader loop)",
        ["rows", "etl rows/s", "etl rows/s (wall)", "CPU µs/row (start-up included)", "csv.reader rows/s", "etl / bare", "target", "met"],
        [[f"{small['rows']:,}", c.fmt(small["rows_per_s"]), c.fmt(small["rows_per_s_wall"]),
          c.fmt(1e6 * small["cpu_s"] / small["rows"] if small["cpu_s"] else None, 1), c.fmt(small["bare_rows_per_s"]),
          c.fmt(100 * ratio if ratio else None, 1, " %"), f">= {SPEED_TARGET:,}/s",
          c.verdict(small["rows_per_s"] is not None and small["rows_per_s"] >= SPEED_TARGET)]],
    )
    rows = []
    runs = [small] + ([result["big"]] if "big" in result else [])
    for r in runs:
        rows.append([f"{r['rows']:,}", c.fmt(r["file_mb"], 0, " MB"), c.fmt(r["maxrss_mb"], 1, " MB"), c.fmt(r["wall_s"], 1, " s"),
                     f"< {RSS_TARGET_MB:g} MB", c.verdict(r["maxrss_mb"] is not None and r["maxrss_mb"] < RSS_TARGET_MB)])
    memory = c.table("Case 6: peak memory of a dry run (ru_maxrss)", ["rows", "CSV", "peak RSS", "wall", "target", "met"], rows)
    if "big" in result and small["maxrss_mb"] and result["big"]["maxrss_mb"]:
        spread = result["big"]["maxrss_mb"] / small["maxrss_mb"] - 1
        memory += f"\n  growth from {small['rows']:,} to {result['big']['rows']:,} rows: {spread:+.1%} (target within {RSS_SPREAD:.0%}: {c.verdict(abs(spread) <= RSS_SPREAD)})"
    return speed + "\n\n" + memory


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__.splitlines()[0])
    p.add_argument("--no-10m", action="store_true", help="skip the 10M-row run (case 6 then has one point)")
    args = p.parse_args(argv)
    result = measure(quick=args.quick, big=not args.no_10m)
    print(table(result))
    c.save_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
