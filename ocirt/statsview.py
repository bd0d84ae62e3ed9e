"""`ocirt stats`: containers' resource use as a table (or JSON), with CPU
use worked out between two looks."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .container import Container
from .errors import OcirtError

CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end: the table redraws in place


class StatsView:
    """Renders `containers`' stats; each render's CPU % covers the time since
    the previous one (the first: since the container started)."""

    def __init__(self, containers: Sequence[Container], *, json_format: bool = False, clear: bool = False) -> None:
        self.containers = list(containers)
        self.json_format = json_format
        self.clear = clear
        self._last: Dict[str, Tuple[float, int]] = {}  # id -> (wall clock, cpu ns) at the previous look

    def sample(self) -> List[Dict[str, Any]]:
        """One look at every container: its stats and CPU %; a container gone meanwhile drops out."""
        rows = []
        for c in self.containers:
            try:
                stats = c.stats()
            except OcirtError:
                continue
            now = time.time()
            row: Dict[str, Any] = {"id": c.id, "name": c.name, **stats.to_dict(), "cpu_percent": None}
            if stats.cpu_total_ns is not None:
                since, used = self._last.get(c.id, (self._started(c, now), 0))
                if now > since:
                    row["cpu_percent"] = round(100 * (stats.cpu_total_ns - used) / ((now - since) * 1e9), 2)
                self._last[c.id] = (now, stats.cpu_total_ns)
            rows.append(row)
        return rows

    @staticmethod
    def _started(c: Container, now: float) -> float:
        started = c.state.started_at or c.created_at
        return started.timestamp() if started else now

    def render(self) -> str:
        rows = self.sample()
        if self.json_format:
            return json.dumps(rows, indent=2)
        table = [("ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS", "OOM")]
        for r in rows:
            usage, limit = r["memory_usage"], r["memory_limit"]
            table.append((
                r["id"][:12], r["name"], _or_dash(r["cpu_percent"], "{:.2f}%"),
                f"{_size(usage)} / {_size(limit) if limit is not None else 'none'}",
                _or_dash(100 * usage / limit if usage is not None and limit else None, "{:.2f}%"),
                _or_dash(r["pids_current"], "{}"), _or_dash(r["oom_kills"], "{}"),
            ))  # fmt: skip
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table)
        return CLEAR + text if self.clear else text


def _or_dash(value: Optional[float], form: str) -> str:
    return "--" if value is None else form.format(value)


def _size(n: Optional[int]) -> str:
    if n is None:
        return "--"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"
