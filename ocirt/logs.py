"""conmon's k8s-file log: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>` lines."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from . import native as _native


class LogRecord(NamedTuple):
    """One line of container output; partial records (P) are joined."""

    time: datetime
    stream: str  # "stdout" or "stderr"
    text: str


def parse_time(value: str) -> datetime:
    """RFC 3339 with nanoseconds (as conmon writes it) to an aware datetime."""
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    head, dot, rest = value.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = head + "." + rest[:min(digits, 6)].ljust(6, "0") + rest[digits:]
    return datetime.fromisoformat(value)


class LogReader:
    """Reads a conmon log incrementally: each `read()` returns the complete
    records written since the last one (a partial record waits for its end)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0  # bytes consumed: always at the start of a line
        self._pending: Dict[str, Tuple[datetime, List[str]]] = {}

    def read(self, final: bool = False) -> List[LogRecord]:
        """New records; with `final`, partial records still open are flushed too."""
        out: List[LogRecord] = []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1  # a line conmon is still writing waits
        self.offset += end
        for raw in data[:end].decode("utf-8", errors="replace").splitlines():
            record = self._parse(raw)
            if record is not None:
                out.append(record)
        if final:
            out += [LogRecord(when, stream, "".join(parts)) for stream, (when, parts) in self._pending.items()]
            self._pending.clear()
        return out

    def _parse(self, line: str) -> Optional[LogRecord]:
        fields = line.split(" ", 3)
        if len(fields) < 3 or fields[1] not in ("stdout", "stderr"):
            return None
        stream, tag = fields[1], fields[2]
        when, parts = self._pending.pop(stream, (None, []))
        parts.append(fields[3] if len(fields) == 4 else "")
        stamp = when or parse_time(fields[0])
        if tag == "P":
            self._pending[stream] = (stamp, parts)
            return None
        return LogRecord(stamp, stream, "".join(parts))


def follow(path: str, exit_file: str, guard_pid: Optional[int]) -> Iterator[LogRecord]:
    """The records of a live log as they are written.

    Ends once `exit_file` exists (the container has exited and conmon has
    written everything) or conmon (`guard_pid`) is gone.
    """
    reader = LogReader(path)
    while True:
        yield from reader.read()
        if os.path.exists(exit_file) or not guard_pid:
            break
        try:
            _native.wait_change(path, known_size=reader.offset, guard_pid=guard_pid)
        except (ProcessLookupError, FileNotFoundError):
            break  # conmon is gone: what it wrote is all there is
    yield from reader.read(final=True)


def read_log(path: str) -> Iterator[LogRecord]:
    """Yield the records of a conmon log file in order; nothing if it is missing."""
    yield from LogReader(path).read(final=True)
