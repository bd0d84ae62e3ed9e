"""conmon's k8s-file log: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>` lines."""

from __future__ import annotations

import collections
import os
import re
import time
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import BinaryIO, Callable, Deque, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Type, Union

from . import native as _native
from .errors import InvalidArgument, InvalidState, Timeout
from .process import ProcessHandle
from .validate import check_timeout

CHUNK_SIZE = 1 << 20  # bytes read from the log at a time
MAX_TEXT = 1 << 20  # bytes of text in one record: a longer run of partial lines is split into records of this size
STREAMS = (b"stdout", b"stderr")
MAX_LINE = 1 << 20  # conmon writes at most 8 KiB of text a line: a longer line is not its own, and is skipped


class LogRecord(NamedTuple):
    """One line of container output; partial records (P) are joined (up to MAX_TEXT bytes of text)."""

    time: datetime
    stream: str  # "stdout" or "stderr"
    text: str


_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", re.ASCII)


def parse_time(value: str) -> datetime:
    """RFC 3339 with nanoseconds (as conmon writes it) to an aware datetime.

    Digits past microseconds are cut. InvalidArgument (a ValueError) if
    `value` is not such a time.
    """
    found = _TIME.fullmatch(value)
    if found is None:
        raise InvalidArgument(f"not an RFC 3339 time: {value[:64]!r}")
    head, fraction, zone = found.groups()
    try:
        return datetime.fromisoformat(f"{head}.{(fraction or '')[:6].ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}")
    except ValueError as e:
        raise InvalidArgument(f"not an RFC 3339 time: {value!r}: {e}") from e


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")  # one term of a Go duration
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> Optional[float]:
    """A Go duration like 250ms or 1h30m (units ns, us, ms, s, m, h) in seconds; None if `value` is none."""
    text = value.strip()
    if not text or _DURATION.sub("", text) != "":
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION.findall(text))


def parse_when(value: str, now: Optional[datetime] = None, *, ahead: bool = False) -> datetime:
    """A point in time as `logs --since/--until` take it: an RFC 3339 time
    (a zone-less one is local time), a date (YYYY-MM-DD, local midnight),
    Unix seconds, or a duration like 10m or 1h30m (Go's units: ns, us, ms,
    s, m, h) before `now`, or with `ahead` after it (podman's --until).
    InvalidArgument naming the value otherwise."""
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return datetime.fromtimestamp(float(text), timezone.utc)
    seconds = parse_duration(text)
    if seconds is not None:
        return (now or datetime.now(timezone.utc)) + timedelta(seconds=seconds if ahead else -seconds)
    if _TIME.fullmatch(text):
        return parse_time(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"not a time: {value!r} (an RFC 3339 time, a date, Unix seconds or a duration like 10m)") from None
    return when if when.tzinfo is not None else when.astimezone()


def format_time(when: datetime) -> str:
    """`when` in UTC as RFC 3339 with its fraction's trailing zeros dropped
    (Go's RFC3339Nano, as `podman logs -t` prints it)."""
    utc = when.astimezone(timezone.utc)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


class LogReader:
    """Reads a conmon log a chunk (at most CHUNK_SIZE bytes) at a time.

    Each `read()` returns the complete records of the next chunk; a partial
    record waits for its end, or is cut into records of MAX_TEXT bytes of
    text. A line that is not conmon's (bad fields or time, longer than
    MAX_LINE) is skipped. A record's text is exactly what the container
    wrote on its line (decoded as UTF-8 with replacement), \\r and all.

    The file stays open between reads: close the reader (or use it as a
    context manager) when done. When conmon rotates the log (--log-size-max
    renames a new file over it) or it is truncated, the reader finishes the
    file it has open, then reads the new one from its start.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0  # bytes consumed of the current file: always at the start of a line
        self.at_end = False  # the last read() reached the end of the log (as it was then)
        self._file: Optional[BinaryIO] = None
        self._stale = False  # the file open is finished and the path names another one: open that next
        self._tail = b""  # the start of a line whose end is not read yet
        self._skipped = 0  # bytes read of a line at `offset` too long to keep; the rest is skipped up to its end
        self._pending: Dict[str, Tuple[datetime, bytearray]] = {}  # stream -> time and text of its partial record

    @property
    def position(self) -> int:
        """Bytes read from the file open now (what `follow` passes to wait_change as `known_size`)."""
        return self.offset + len(self._tail) + self._skipped

    def read(self, final: bool = False) -> List[LogRecord]:
        """The complete records of the next chunk of the log, in order.

        Sets `at_end` once a read reaches the end of the log; call again until
        then to have all of it. With `final` (conmon is done writing), reaching
        the end also flushes the partial records still open; an incomplete
        last line is never a record.
        """
        out: List[LogRecord] = []
        chunk = self._read_chunk()
        self._parse_chunk(chunk, out)
        if final and self.at_end:
            for stream, (when, text) in self._pending.items():
                out.append(LogRecord(when, stream, text.decode("utf-8", errors="replace")))
            self._pending.clear()
        return out

    def skip_to_tail(self, tail: int) -> None:
        """Start reading where tail_start finds the log's last `tail` records
        (before any read): they and what follows are read as from the start."""
        if self._open():
            assert self._file is not None
            self.offset = tail_start(self._file, os.fstat(self._file.fileno()).st_size, tail)
            self._file.seek(self.offset)

    def close(self) -> None:
        """Close the file open (a later read() opens the log again, from its start)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "LogReader":
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], error: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()

    def _read_chunk(self) -> bytes:
        if self._file is None or self._stale:
            if not self._open():
                self.at_end = True
                return b""
        assert self._file is not None
        chunk = self._file.read(CHUNK_SIZE)
        self.at_end = False
        if len(chunk) < CHUNK_SIZE:  # the end of this file
            if self._replaced(len(chunk)):
                # conmon may have written more between that read and the rename; a replaced file gets no more
                chunk += self._file.read(CHUNK_SIZE - len(chunk))
                self._stale = len(chunk) < CHUNK_SIZE  # all of it read: the next read opens the new one
            else:
                self.at_end = True
        return chunk

    def _open(self) -> bool:
        """Open the file the path names now, to read it from its start; False if there is none."""
        self.close()
        self._stale = False
        self.offset = self._skipped = 0
        self._tail = b""
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            return False
        return True

    def _replaced(self, unparsed: int) -> bool:
        """Whether the path names another file than the one open, or a shorter one (truncated).

        `unparsed` bytes have been read but are not yet counted in `position`.
        """
        assert self._file is not None
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False  # removed: the file open is all there is
        mine = os.fstat(self._file.fileno())
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino) or now.st_size < self.position + unparsed

    def _parse_chunk(self, chunk: bytes, out: List[LogRecord]) -> None:
        data = self._tail + chunk
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start:end]
            self.offset += self._skipped + len(line) + 1
            if not self._skipped and len(line) <= MAX_LINE:
                self._parse_line(line, out)
            self._skipped = 0
            start = end + 1
        rest = data[start:]
        if self._skipped or len(rest) > MAX_LINE:
            self._skipped += len(rest)
            self._tail = b""
        else:
            self._tail = rest

    def _parse_line(self, line: bytes, out: List[LogRecord]) -> None:
        """Add to `out` what one line of the log completes; nothing for a line that is not conmon's."""
        fields = line.split(b" ", 3)
        if len(fields) < 3 or fields[1] not in (b"stdout", b"stderr") or fields[2] not in (b"F", b"P"):
            return
        try:
            when = parse_time(fields[0].decode("ascii"))
        except ValueError:  # UnicodeDecodeError or InvalidArgument
            return
        stream = fields[1].decode("ascii")
        partial = fields[2] == b"P"
        first, text = self._pending.get(stream) or (when, bytearray())
        text += fields[3] if len(fields) == 4 else b""
        # A partial record that reaches the cap is flushed now; a complete one may be exactly at it.
        limit = MAX_TEXT - 1 if partial else MAX_TEXT
        while len(text) > limit:
            cut = _utf8_cut(text, MAX_TEXT)
            out.append(LogRecord(first, stream, text[:cut].decode("utf-8", errors="replace")))
            del text[:cut]
            first = when
        if partial and text:
            self._pending[stream] = (first, text)  # an open record keeps its place: they are flushed in the order they began
            return
        self._pending.pop(stream, None)
        if not partial:
            out.append(LogRecord(first, stream, text.decode("utf-8", errors="replace")))


def _utf8_cut(data: bytearray, size: int) -> int:
    """Where to cut `data` to keep at most `size` bytes: `size`, moved back
    (by up to 3 bytes) so as not to split a UTF-8 character."""
    if size >= len(data):
        return len(data)
    cut = size
    while cut > size - 3 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 and (data[cut] & 0xC0) != 0x80 else size  # no character start near: cut at `size`


def follow(
    path: str,
    exit_file: str,
    guard: Optional[ProcessHandle],
    deadline: Optional[float] = None,
    *,
    keep: Optional[Callable[[LogRecord], bool]] = None,
    tail: Optional[int] = None,
) -> Iterator[LogRecord]:
    """The records of a live log as they are written: those `keep` accepts
    (all by default), the first of them only the last `tail` of what was
    written when following began.

    Ends once `exit_file` exists (the container has exited and conmon has
    written everything) or conmon (`guard`, held by a pidfd; None: not
    there, or not proven to be this container's) is gone. Timeout once the
    monotonic clock passes `deadline` with nothing new written. A rotated
    log (--log-size-max) is read to its end, then the new one from its start.
    """
    keep = keep or _everything
    with LogReader(path) as reader:
        if tail is not None and keep is _everything:
            reader.skip_to_tail(tail)
        if tail is not None:
            backlog: Deque[LogRecord] = collections.deque(maxlen=tail)
            while True:
                backlog.extend(filter(keep, reader.read()))
                if reader.at_end:
                    break
            yield from backlog
        while True:
            yield from filter(keep, reader.read())
            if not reader.at_end:
                continue  # more is written already (or a rotated log is to be opened): no need to wait
            if os.path.exists(exit_file) or guard is None or guard.fd is None:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                changed = _native.wait_change(path, left, known_size=reader.position, guard_fd=guard.fd, guard_pid=guard.pid)
            except (ProcessLookupError, FileNotFoundError):
                break  # conmon is gone: what it wrote is all there is
            if not changed and deadline is not None and time.monotonic() >= deadline:
                raise Timeout(f"nothing more in {path} by the deadline")
        yield from filter(keep, _rest(reader))


def wait_for(
    container_id: str,
    log: str,
    exit_file: str,
    conmon: Optional[ProcessHandle],
    match: "Union[str, re.Pattern[str], Callable[[LogRecord], bool]]",
    timeout: Optional[float],
) -> LogRecord:
    """The first record of a container's log that `match` (a regular
    expression searched in each line, or a predicate) accepts, followed as
    it is written (see Container.wait_for_log)."""
    if callable(match):
        accept = match
    else:
        pattern = re.compile(match)
        accept = lambda record: pattern.search(record.text) is not None  # noqa: E731
    limit = check_timeout(timeout)
    deadline = None if limit is None else time.monotonic() + limit
    try:
        for record in follow(log, exit_file, conmon, deadline):
            if accept(record):
                return record
    except Timeout:
        raise Timeout(f"container {container_id} wrote no line matching {match!r} within {timeout:g}s") from None
    raise InvalidState(f"container {container_id} ended its output without a line matching {match!r}")


def text(records: Sequence[LogRecord], stream: str) -> str:
    """One stream of the records, each line ended by a newline."""
    return "".join(r.text + "\n" for r in records if r.stream == stream)


def chooser(
    *,
    since: Optional[datetime] = None,
    until: Optional[datetime] = None,
    stream: Optional[str] = None,
    tail: Optional[int] = None,
) -> Callable[[LogRecord], bool]:
    """Whether a record was written from `since` to `until` (aware
    datetimes) on `stream` ("stdout" or "stderr") if given. InvalidArgument
    for a bad filter (`tail`, a whole number of records, is checked too)."""
    for when, what in ((since, "since"), (until, "until")):
        if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
            raise InvalidArgument(f"{what} must be a timezone-aware datetime, not {when!r}")
    if stream not in (None, "stdout", "stderr"):
        raise InvalidArgument(f"stream must be 'stdout' or 'stderr', not {stream!r}")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise InvalidArgument(f"tail must be a whole number of records, not {tail!r}")
    if since is None and until is None and stream is None:
        return _everything  # which lets a tail be found from the log's end (see tail_start)
    return lambda r: (since is None or r.time >= since) and (until is None or r.time <= until) and (stream is None or r.stream == stream)


def _everything(record: LogRecord) -> bool:
    return True


def chosen(path: str, keep: Callable[[LogRecord], bool], tail: Optional[int]) -> Iterator[LogRecord]:
    """The records of the log at `path` that `keep` accepts, the last `tail`
    of them (all when None). Unfiltered, a tail is read from where
    tail_start finds it; filtered, the whole log is read."""
    if tail is None:
        yield from filter(keep, read_log(path))
    elif tail > 0:
        with LogReader(path) as reader:
            if keep is _everything:
                reader.skip_to_tail(tail)
            yield from collections.deque(filter(keep, _rest(reader)), maxlen=tail)


def tail_start(f: BinaryIO, size: int, tail: int) -> int:
    """The start of a line of the log open as `f` (its first `size` bytes)
    from which reading it gives its last `tail` records as reading all of it
    would; found reading back from the end (bytes.rfind over blocks, so a
    stream with no line at all costs one quick pass).

    It lies at or before the tail-th last F line (each F line ends at least
    one record), where no stream has a record open: a record of partial (P)
    lines ends at its stream's next F line, however much of the other
    stream comes between, so each stream's last line before the start must
    be an F line (or there is none). A P line found there moves the start
    back to just after its stream's F line before it, and the other stream
    is looked at again from there.
    """
    start = _whole(f, size)
    if tail == 0:
        return start
    nearest = {s: _nearest(f, start, s, complete=True) for s in STREAMS}
    for _ in range(tail):
        found = [(line[0], s) for s, line in nearest.items() if line is not None]
        if not found:
            return 0
        start, stream = max(found)
        nearest[stream] = _nearest(f, start, stream, complete=True)
    unsettled = set(STREAMS)
    while unsettled:
        stream = unsettled.pop()
        line = _nearest(f, start, stream, complete=False)
        if line is None or not line[2]:
            continue  # no line of it before the start, or an F line: nothing of it is open there
        closed = _nearest(f, line[0], stream, complete=True)
        if closed is None:
            return 0
        start, unsettled = closed[1], set(STREAMS) - {stream}
    return start


def _whole(f: BinaryIO, size: int) -> int:
    """The end of the last whole line of the first `size` bytes (what follows is still being written)."""
    hi = size
    while hi > 0:
        lo = max(0, hi - CHUNK_SIZE)
        f.seek(lo)
        cut = f.read(hi - lo).rfind(b"\n")
        if cut >= 0:
            return lo + cut + 1
        hi = lo
    return 0


def _nearest(f: BinaryIO, before: int, stream: bytes, *, complete: bool) -> Optional[Tuple[int, int, bool]]:
    """(start, end, partial) of the last line of `stream` (with `complete`,
    the last F line) that ends at or before `before`, a line's start; None if none."""
    marker = b" " + stream + b" " + (b"F " if complete else b"")
    hi = before
    while hi > 0:
        lo = max(0, hi - CHUNK_SIZE)
        f.seek(lo)
        block = f.read(hi - lo)  # ends at a line's start: each line found in it ends in it
        at = len(block)
        while (hit := block.rfind(marker, 0, at)) >= 0:
            begin = block.rfind(b"\n", 0, hit) + 1
            if begin == 0 and lo > 0:
                break  # its line begins in the block before: found again there
            end = block.index(b"\n", hit) + 1
            kind, partial = _kind(block[begin : end - 1])
            if kind == stream:
                return lo + begin, lo + end, partial
            at = begin
        if lo == 0:
            return None
        first = block.find(b"\n")
        hi = lo + first + 1 if 0 <= first < len(block) - 1 else lo  # the next block ends where this one's first whole line begins
    return None


def _kind(line: bytes) -> Tuple[Optional[bytes], bool]:
    """(stream, partial) of a log line, as LogReader._parse_line takes it; (None, False) for one it skips."""
    fields = line.split(b" ", 3)
    if len(line) > MAX_LINE or len(fields) < 3 or fields[1] not in STREAMS or fields[2] not in (b"F", b"P"):
        return None, False
    try:
        parse_time(fields[0].decode("ascii"))
    except ValueError:
        return None, False
    return fields[1], fields[2] == b"P"


def read_log(path: str) -> Iterator[LogRecord]:
    """Yield the records of a conmon log file in order; nothing if it is missing."""
    with LogReader(path) as reader:
        yield from _rest(reader)


def _rest(reader: LogReader) -> Iterator[LogRecord]:
    """The records up to the end of the log, then the partial records still open."""
    while True:
        yield from reader.read(final=True)
        if reader.at_end:
            return
