"""A plain-text progress counter: one line rewritten with \\r on a terminal, a final line otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self._interactive and (now - self._last_draw > 0.1 or self.done == self.total):
            self._last_draw = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        if not self.total:
            return f"{self.label}: {self.done}"
        width = 30
        filled = min(width, int(width * self.done / self.total))
        return f"{self.label}: [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"

    def finish(self) -> None:
        self.stream.write(("\r" if self._interactive else "") + self.line() + "\n")
        self.stream.flush()
