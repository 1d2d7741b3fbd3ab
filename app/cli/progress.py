"""A progress bar on stderr, drawn only when stderr is a terminal (never into a log or a pipe)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30  # characters of the bar itself
EVERY = 0.1  # seconds between two drawings


class Progress:
    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.shown = self.stream.isatty()
        self.what = what
        self._drawn = 0.0

    def update(self, done: int, total: int, unit: str = "") -> None:
        now = time.monotonic()
        if not self.shown or now - self._drawn < EVERY:
            return
        self._drawn = now
        share = min(done / total, 1.0) if total else 1.0
        filled = int(share * WIDTH)
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(f"\r{self.what} [{bar}] {share:4.0%}  {done:,}{unit}")
        self.stream.flush()

    def end(self) -> None:
        """Clear the bar's line, for what is said next."""
        if self.shown and self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
