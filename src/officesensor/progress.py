"""A progress line for long CLI jobs (imports, exports): items done of an estimated total,
and the rate. On a terminal it redraws one line; elsewhere (a log file, CI) it writes a
full line every ``log_every_s``. The clock is passed in, so it is testable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        stream: TextIO,
        label: str,
        total: int | None,
        *,
        done: int = 0,
        clock: Callable[[], float] = time.monotonic,
        redraw_s: float = 0.2,
        log_every_s: float = 5.0,
    ) -> None:
        self._stream = stream
        self._label = label
        self.total = total
        self.done = done
        self._start_done = done
        self._clock = clock
        self._started = clock()
        self._shown = -float("inf")
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._every = redraw_s if self._tty else log_every_s

    def advance(self, count: int) -> None:
        self.done += count
        now = self._clock()
        if now - self._shown >= self._every:
            self._shown = now
            self._show(now, final=False)

    def finish(self) -> None:
        self._show(self._clock(), final=True)

    def line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        text = f"{self._label}: {self.done:,}"
        if self.total:
            shown_total = max(self.total, self.done)  # the total is an estimate
            text += f" / ~{shown_total:,} items ({100 * self.done / shown_total:.0f}%)"
        else:
            text += " items"
        text += f", {rate:,.0f} items/s"
        if self.total and rate > 0 and self.total > self.done:
            text += f", about {(self.total - self.done) / rate:,.0f} s left"
        return text

    def _show(self, now: float, *, final: bool) -> None:
        text = self.line(now)
        if self._tty:
            self._stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
