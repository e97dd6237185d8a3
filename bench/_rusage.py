"""Run a command and write its resource usage (RUSAGE_CHILDREN) as JSON.

Usage::

    python bench/_rusage.py OUT.json -- COMMAND [ARGS...]

The command inherits stdin, stdout and stderr. SIGINT and SIGTERM are passed on to
it. When it exits, OUT.json gets ``exit_code``, ``wall_s``, ``utime_s``,
``stime_s``, ``cpu_s`` and ``maxrss_kb`` (Linux reports ru_maxrss in KiB), and the
wrapper exits with the command's exit code. Only the command is measured: the
wrapper's own start-up is not part of RUSAGE_CHILDREN.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, command = argv[0], argv[2:]
    started = time.perf_counter()
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = child.wait()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "exit_code": code,
        "wall_s": round(wall, 4),
        "utime_s": round(usage.ru_utime, 4),
        "stime_s": round(usage.ru_stime, 4),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        "maxrss_kb": usage.ru_maxrss,
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
