"""Profile ``etl run configs/cxone-contacts.yaml`` against the sandbox and print the top entries.

Starts the CXone sandbox (``--latency`` seconds per API request, 50 ms by default) on a
free 127.0.0.1 port, writes ``--rows`` valid contact rows, and runs the shipped config
with ``--workers`` concurrent sends under a sampling profiler:

- ``py-spy`` (default): samples the etl process from outside, at ``--rate`` Hz, so
  the run itself is barely slowed. Prints the functions with the most samples, by
  self time and by total time (the function or anything it calls), as a share of all
  samples; ``--out FILE`` also keeps the collapsed stacks (one line per stack, which
  speedscope.app or flamegraph.pl turn into a flame graph).
- ``pyinstrument``: runs inside the etl process (slower, but shows the call tree);
  prints its text report; ``--out FILE.html`` writes the interactive one instead.

Also printed: the CPU time per API request, as ``bench/latency.py`` measures it but
with the profiler's own CPU included (``bench/latency.py`` gives the clean figure), and
updates/s.

    .venv/bin/python bench/profile.py [--rows 20000] [--workers 64] [--tool py-spy|pyinstrument]
        [--top 25] [--filter httpx] [--latency 0.05] [--rate 250] [--out FILE]

The CPU figure includes start-up (about half a second) and reading, mapping and
validating the rows: use enough rows (10,000 or more) for the sends to dominate.

Both profilers come with the ``bench`` extra (``pip install -e '.[bench]'``). py-spy
needs to be allowed to read the child's memory (it is, for a process it starts itself,
unless ptrace is forbidden altogether, as in some containers: then use pyinstrument).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
from pathlib import Path

import _common as c

_VENV_BIN = Path(c.PYTHON).parent


def _tool_path(name: str) -> str:
    found = shutil.which(name, path=str(_VENV_BIN)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"profile: error: {name} is not installed (pip install -e '.[bench]')")
    return found


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def _tops(collapsed: Path, top: int, only: str | None) -> str:
    """The functions with the most samples in a py-spy ``raw`` (collapsed stacks) file."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame_name(frame) for frame in stack.split(";") if frame and not frame.startswith("process ")]
        if not frames:
            continue
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return "no samples (did the run fail? see the log above)"
    lines = [f"{samples:,} samples"]
    for title, counter in (("self", own), ("total (self + callees)", total)):
        lines.append(f"\ntop {top} by {title}:")
        entries = [(name, n) for name, n in counter.most_common() if only is None or only in name]
        for name, n in entries[:top]:
            lines.append(f"  {100 * n / samples:5.1f} %  {name}")
    modules: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if count_text.isdigit() and stack:
            seen = {_package(frame) for frame in stack.split(";")}
            for package in seen - {""}:
                modules[package] += int(count_text)
    lines.append("\nshare of samples with a frame in:")
    for package, n in modules.most_common(12):
        lines.append(f"  {100 * n / samples:5.1f} %  {package}")
    return "\n".join(lines)


def _package(frame: str) -> str:
    where = frame.partition(" (")[2]
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            rest = where.split(marker, 1)[1]
            if marker == "lib/python3":
                rest = rest.split("/", 1)[1] if "/" in rest else rest
            return rest.split("/", 1)[0].split(":")[0].removesuffix(".py")
    for package in ("etl_core", "etl_cxone", "plugins"):
        if f"/{package}/" in where:
            return package
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="rows to send (default 20,000)")
    p.add_argument("--workers", type=int, default=64, help="concurrent sends (default 64)")
    p.add_argument("--tool", choices=("py-spy", "pyinstrument"), default="py-spy")
    p.add_argument("--top", type=int, default=25, help="entries to print (default 25)")
    p.add_argument("--filter", help="py-spy: print only functions whose name or file contains this text")
    p.add_argument("--latency", type=float, default=0.05, help="sandbox seconds per API request (default 0.05)")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    p.add_argument("--out", help="keep the collapsed stacks (py-spy) or write the HTML report (pyinstrument) to FILE")
    args = p.parse_args(argv)

    with c.workdir("etl-profile-") as wd:
        csv_path = c.write_contacts_csv(wd / "contacts.csv", args.rows)
        etl = c.etl_command(*c.etl_run_args(workers=args.workers))
        with c.Sandbox(latency=args.latency) as sandbox:
            env = c.sandbox_env(sandbox, csv_path)
            if args.tool == "py-spy":
                raw = wd / "stacks.txt"
                command = [
                    _tool_path("py-spy"),
                    "record",
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--full-filenames",
                    "--output",
                    str(raw),
                    "--nonblocking",
                    "--",
                    *etl,
                ]
            else:
                report = Path(args.out).resolve() if args.out else wd / "report.txt"
                renderer = "html" if args.out else "text"
                command = [c.PYTHON, "-m", "pyinstrument", "-r", renderer, "-o", str(report), *etl[1:]]
            measured = c.Run(command, cwd=wd, env=env)
            run = measured.wait(timeout=max(120.0, args.rows / 50))
            stats = sandbox.stats()
        if run.get("exit_code"):
            print(measured.tail(), file=sys.stderr)
        requests = stats.get("requests") or 0
        rate = c.api_rate(stats)
        print(
            f"{args.rows:,} rows, {args.workers} workers, {args.tool}: exit {run.get('exit_code')}, "
            f"{requests:,} API requests, {c.fmt(rate)} updates/s, "
            f"CPU {c.fmt(1e6 * run['cpu_s'] / requests if requests and 'cpu_s' in run else None)} us/request "
            f"(profiler included)"
        )
        if args.tool == "py-spy":
            print(_tops(raw, args.top, args.filter))
            if args.out:
                shutil.copyfile(raw, args.out)
                print(f"collapsed stacks written to {args.out}")
        elif args.out:
            print(f"HTML report written to {args.out}")
        else:
            print(report.read_text(errors="replace"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
