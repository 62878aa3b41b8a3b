"""A plain-text progress bar on stderr (no dependency).

On a terminal it redraws one line with ``\\r``; elsewhere (CI logs, pipes) it writes a
line per phase change and at most one line every ``log_every_s`` seconds, so logs stay
short.  Scenarios only call :meth:`Progress.update` / :meth:`Progress.phase`; a
:class:`NullProgress` is the default when nothing is shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TextIO

__all__ = ["NullProgress", "Progress", "ProgressSink", "render_bar"]


class ProgressSink(Protocol):
    def phase(self, name: str, total: int | None = None) -> None: ...

    def update(self, done: int, note: str = "") -> None: ...

    def close(self) -> None: ...


class NullProgress:
    def phase(self, name: str, total: int | None = None) -> None:
        pass

    def update(self, done: int, note: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def render_bar(phase: str, done: int, total: int | None, note: str = "", width: int = 30) -> str:
    """``phase [#######.......]  140/400  note``; ``phase 3`` without a total (``phase``
    alone before anything is done).  Pure, for tests and the terminal."""
    if total:
        frac = min(1.0, max(0.0, done / total))
        filled = round(frac * width)
        bar = "[" + "#" * filled + "." * (width - filled) + "]"
        text = f"{phase} {bar} {done}/{total}"
    else:  # a phase with no count: its name, then what it has done
        text = f"{phase} {done}" if done else phase
    return f"{text}  {note}".rstrip()


class Progress:
    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        redraw_every_s: float = 0.1,
        log_every_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._every = redraw_every_s if self._tty else log_every_s
        self._monotonic = monotonic
        self._phase = ""
        self._total: int | None = None
        self._last = -1e18
        self._line_len = 0
        self._last_text = ""

    def phase(self, name: str, total: int | None = None) -> None:
        if self._tty and self._line_len:
            self._stream.write("\n")
            self._line_len = 0
        self._phase, self._total = name, total
        self._last = -1e18
        self.update(0)

    def update(self, done: int, note: str = "") -> None:
        now = self._monotonic()
        finished = self._total is not None and done >= self._total
        if now - self._last < self._every and not finished:
            return
        text = render_bar(self._phase, done, self._total, note)
        if text == self._last_text:
            return
        self._last, self._last_text = now, text
        if self._tty:
            pad = " " * max(0, self._line_len - len(text))
            self._stream.write("\r" + text + pad)
            self._line_len = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._line_len:
            self._stream.write("\n")
            self._stream.flush()
            self._line_len = 0
