"""conmon's k8s-file log: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>` lines."""

from __future__ import annotations

from datetime import datetime
from typing import Iterator, NamedTuple, Optional


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


def read_log(path: str) -> Iterator[LogRecord]:
    """Yield the records of a conmon log file in order; nothing if it is missing."""
    try:
        f = open(path, encoding="utf-8", errors="replace", newline="\n")
    except FileNotFoundError:
        return
    pending: dict = {}  # stream -> (time, parts) of a record still partial
    with f:
        for line in f:
            if not line.endswith("\n"):
                break  # a line conmon is still writing
            fields = line[:-1].split(" ", 3)
            if len(fields) < 3 or fields[1] not in ("stdout", "stderr"):
                continue
            time_s, stream, tag = fields[0], fields[1], fields[2]
            text = fields[3] if len(fields) == 4 else ""
            when, parts = pending.pop(stream, (None, []))
            parts.append(text)
            stamp: Optional[datetime] = when or parse_time(time_s)
            if tag == "P":
                pending[stream] = (stamp, parts)
                continue
            yield LogRecord(stamp, stream, "".join(parts))
    for stream, (when, parts) in pending.items():
        yield LogRecord(when, stream, "".join(parts))
