"""Progress of long work on a terminal: drawn on stderr only there, never in CI."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping


def on_terminal() -> bool:
    """Draw progress? Only on an interactive stderr, and never when $CI is set."""
    return sys.stderr.isatty() and not os.environ.get("CI")


class SweepProgress:
    """One status line under the per-point lines: points done, running, failed, and the ETA."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.echo = total, echo
        self.done = self.running = self.failed = 0
        self.t0 = time.perf_counter()
        self.active = on_terminal()
        self.drawn = False

    def started(self) -> None:
        self.running += 1
        self._draw()

    def finished(self, row: Mapping, label: str, summary: str) -> None:
        """Print the point's line (always) and redraw the status line (on a terminal)."""
        self.running = max(0, self.running - 1)
        self.done += 1
        self.failed += bool(row.get("error"))
        seconds = row.get("_seconds")
        self._clear()
        self.echo(f"[{self.done}/{self.total}] {label}: {summary}" + (f" ({seconds:.1f} s)" if seconds else ""))
        self._draw()

    def eta(self) -> str:
        if not self.done:
            return "?"
        left = (time.perf_counter() - self.t0) / self.done * (self.total - self.done)
        return f"{int(left // 60)}m{int(left % 60):02d}s"

    def _draw(self) -> None:
        if not self.active:
            return
        sys.stderr.write(f"\r\033[Ksweep: {self.done}/{self.total} done, {self.running} running, "
                         f"{self.failed} failed, ETA {self.eta()}")
        sys.stderr.flush()
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.drawn = False

    def close(self) -> None:
        self._clear()
