"""A live progress bar on stderr, drawn only when stderr is a terminal.

Log lines keep going to stdout, so piping or shipping the JSON logs is never disturbed.

The bar counts records, not bytes: its percentage and ETA are the records finished
(ok, rejected, failed or skipped) out of the records the input holds. That total comes
from the source's quick count (:meth:`Source.count`, see :class:`InputCount`), then from
the records read once the whole input is read. Until it is known, the bar only says how
much of the input was read. The line is fitted to the terminal's width by dropping its
least important parts first, so the percentage, the ETA, the elapsed time and a
rate-limit pause stay visible on a narrow terminal.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import trio
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from .base import Source
from .logging import get_logger

#: Seconds the source may take to count its records before the bar does without a total.
COUNT_TIME_LIMIT = 3.0
#: Seconds over which the rate (and so the ETA) is measured: recent enough to follow a
#: change of pace, long enough to smooth out a pause.
_RATE_WINDOW_S = 30.0
#: The bar's width, in cells: it is dropped when there is no room for the least.
_BAR_MIN, _BAR_MAX = 10, 40
_GAP = "  "


class InputCount:
    """How many records the input holds, for the progress bar's total.

    Args:
        source: The run's source; its :meth:`~etl_core.Source.count` runs in a worker thread.
        time_limit: Seconds the count may take.
    """

    def __init__(self, source: Source, time_limit: float = COUNT_TIME_LIMIT) -> None:
        self._source = source
        self._time_limit = time_limit
        self.counted: int | None = None

    async def run(self) -> None:
        """Count the input's records in a worker thread (abandoned if the run ends first)."""
        try:
            counted = await trio.to_thread.run_sync(self._source.count, self._time_limit, abandon_on_cancel=True)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug: the bar does without a total
            get_logger().warning("input_count_failed", reason=f"{type(exc).__name__}: {exc}")
            return
        if isinstance(counted, int) and counted >= 0:
            self.counted = counted

    def total(self, read: int, all_read: bool) -> int | None:
        """Return the records the input holds: exact once ``all_read``, else the count (None if unknown).

        Args:
            read: The records read so far.
            all_read: Whether the source has yielded its last record.
        """
        if all_read:
            return read
        return None if self.counted is None else max(self.counted, read)


def terminal_console() -> Console | None:
    """Return a console drawing on stderr, or None when stderr is not a terminal."""
    return Console(file=sys.stderr) if sys.stderr.isatty() else None


class ProgressBar:
    """Records finished of the total, rate, elapsed time, ETA, outcomes and any pause.

    Args:
        console: Where to draw (a terminal).
        dry_run: Label the bar as a dry run.
    """

    def __init__(self, console: Console, *, dry_run: bool = False) -> None:
        self._label = "dry run" if dry_run else "sending"
        self._speed = _Speed()
        self._frames = 0
        # Log lines go to stdout untouched; only the bar is drawn on stderr.
        self._live = Live(
            _Frame(()), console=console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False
        )

    @classmethod
    def for_terminal(cls, *, dry_run: bool = False) -> ProgressBar | None:
        """Return a bar drawing on stderr, or None when stderr is not a terminal."""
        console = terminal_console()
        return None if console is None else cls(console, dry_run=dry_run)

    def __enter__(self) -> ProgressBar:
        self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._live.stop()  # the last frame stays on the screen

    def update(self, snapshot: Mapping[str, Any]) -> None:
        """Redraw from a run snapshot (see the ``run_progress`` hook in docs/plugins.md)."""
        self._live.update(self.frame(snapshot), refresh=True)

    def frame(self, snapshot: Mapping[str, Any]) -> _Frame:
        """Return what the bar shows for ``snapshot``, fitted to the width when drawn."""
        records = snapshot["records"]
        finished = records["ok"] + records["rejected"] + records["failed"] + records["skipped"]
        rate = self._speed.add(snapshot["elapsed_s"], finished)
        self._frames += 1
        share, done, eta = self._how_far(snapshot, finished, rate)
        # In display order; the lower a priority's number, the longer the part stays as the width shrinks.
        segments = [
            _Segment(Text(self._label, style="bold"), 3 if self._label == "dry run" else 7),
            _Segment(Text(), 6, bar=_BarSpec(share, self._frames)),
            _Segment(done[0], 1),
            _Segment(done[1], 3),
            _Segment(Text(f"{rate:,.0f}/s" if rate is not None else "-/s"), 7),
            _Segment(Text(f"ok {records['ok']:,}", style="green"), 4),
            _Segment(Text(f"rejected {records['rejected']:,}", style="yellow"), 5),
            _Segment(Text(f"failed {records['failed']:,}", style="red"), 4),
        ]
        if records["skipped"]:
            segments.append(_Segment(Text(f"skipped {records['skipped']:,}"), 8))
        segments.append(_Segment(Text(f"in flight {records['in_flight']:,}"), 8))
        segments.append(_Segment(Text(f"retrying {records['retrying']:,}"), 5))
        if snapshot["outage_s"] > 0:
            segments.append(_Segment(Text(f"destination down for {snapshot['outage_s']:.0f} s: probing", style="bold red"), 2))
        elif snapshot["paused_s"] > 0:
            # A Retry-After of 1 s is mostly under a second left: whole seconds would read "0 s".
            pause = Text(f"paused: rate limited, {snapshot['paused_s']:.1f} s left", style="bold magenta")
            segments.append(_Segment(pause, 2))
        segments.append(_Segment(Text(f"elapsed {_clock(math.floor(snapshot['elapsed_s']))}", style="progress.elapsed"), 1))
        segments.append(_Segment(Text(f"ETA {_clock(eta)}", style="progress.remaining"), 1))
        return _Frame(tuple(segments))

    @staticmethod
    def _how_far(
        snapshot: Mapping[str, Any], finished: int, rate: float | None
    ) -> tuple[float | None, tuple[Text, Text], float | None]:
        """The bar's share (None: unknown), how far as two texts (share, rows), and the ETA in seconds."""
        records = snapshot["records"]
        total = records["total"]
        if total is None:  # not known yet: how much of the input was read, never a share of the records
            read, size = snapshot["progress"]["done"], snapshot["progress"]["total"]
            text = f"input {min(100, math.floor(100 * read / size))}% read" if size else "input being read"
            return None, (Text(text, style="progress.percentage"), Text(f"{finished:,} rows")), None
        total = max(total, records["read"], finished)
        percent = math.floor(100 * finished / total) if total else 100
        if not snapshot["progress"]["end_of_input"]:  # the count is an estimate: more may be left to read
            percent = min(percent, 99)
        left = total - finished
        eta = 0.0 if left <= 0 else left / rate if rate else None
        return percent / 100, (Text(f"{percent:>3}%", style="progress.percentage"), Text(f"{finished:,}/{total:,} rows")), eta


class _Speed:
    """Records finished per second over the last :data:`_RATE_WINDOW_S` seconds."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(0.0, 0)])

    def add(self, elapsed: float, finished: int) -> float | None:
        """Add a sample; return the rate over the window (None before any time passed)."""
        samples = self._samples
        samples.append((elapsed, finished))
        while len(samples) > 2 and samples[1][0] <= elapsed - _RATE_WINDOW_S:
            samples.popleft()
        since, finished_then = samples[0]
        if elapsed <= since:
            return None
        return max(0, finished - finished_then) / (elapsed - since)


@dataclasses.dataclass(frozen=True)
class _BarSpec:
    """A bar: the share done (None: not known, a pulse moves along it) and the frame's number."""

    fraction: float | None
    frame: int


@dataclasses.dataclass(frozen=True)
class _Segment:
    """A part of a line; the lower its priority's number, the longer it stays as the width shrinks."""

    text: Text
    priority: int
    bar: _BarSpec | None = None

    @property
    def least(self) -> int:
        """The fewest cells it needs."""
        return _BAR_MIN if self.bar is not None else self.text.cell_len


@dataclasses.dataclass(frozen=True)
class _Frame:
    """One drawing of the bar: one line of segments, fitted to the width when rendered.

    One line, not more: log lines written to the same terminal between two drawings
    are left alone, where redrawing several lines would erase them.
    """

    segments: tuple[_Segment, ...]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield _fit(self.segments, options.max_width, colour=console.color_system is not None)


def _fit(segments: Sequence[_Segment], width: int, *, colour: bool) -> Text:
    """Lay out as many of ``segments`` as fit in ``width``, most important first, in their order."""
    kept: set[int] = set()
    used = 0
    line = Text(no_wrap=True, overflow="ellipsis", end="\n")
    for index in sorted(range(len(segments)), key=lambda i: segments[i].priority):
        need = segments[index].least + (len(_GAP) if kept else 0)
        if used + need <= width:
            kept.add(index)
            used += need
        elif not kept:  # narrower than the most important part alone: cut it
            line.append_text(segments[index].text)
            line.truncate(width, overflow="ellipsis")
            return line
    room = width - used
    for index in sorted(kept):
        if line:
            line.append(_GAP)
        segment = segments[index]
        if segment.bar is not None:
            line.append_text(_bar(min(_BAR_MAX, _BAR_MIN + room), segment.bar, colour=colour))
        else:
            line.append_text(segment.text)
    return line


def _bar(width: int, spec: _BarSpec, *, colour: bool) -> Text:
    """The bar itself; without colours the part not done is blank, as in rich's own bar."""
    back = "━" if colour else " "
    if spec.fraction is None:  # not known: a short run moving along the bar at each frame
        start = spec.frame * 2
        lit = {(start + offset) % width for offset in range(width // 4)}
        return Text.assemble(*(("━", "bar.pulse") if cell in lit else (back, "bar.back") for cell in range(width)))
    filled = min(width, math.floor(width * spec.fraction))
    style = "bar.finished" if spec.fraction >= 1 else "bar.complete"
    return Text.assemble(("━" * filled, style), (back * (width - filled), "bar.back"))


def _clock(seconds: float | None) -> str:
    """``h:mm:ss`` (whole seconds, rounded up), or ``-:--:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    whole = max(0, math.ceil(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
