"""Parsers fed what others control: container output, the runtime's messages, the command line, names.

First one test per finding of the security review, written as the attack; then
properties (hypothesis) of every parser involved. No containers are started.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import tracemalloc
from datetime import datetime, timezone
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Sequence, Tuple
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

import ocirt
from ocirt import cli, logs, specgen
from ocirt.cli import values
from ocirt.cli.create import cmd_create
from ocirt.conmon import SYNC_MAX, go_unquote, read_sync, runtime_message
from ocirt.process import ProcessHandle
from ocirt.store import Record, Store
from ocirt.validate import SIGNAL_MAX, check_id, check_name, check_timeout, parse_signal

T = "2026-11-28T15:31:00.000000001+00:00"
WHEN = datetime(2026, 11, 28, 15, 31, 0, 0, timezone.utc)
PROPERTY = settings(max_examples=200, deadline=None, database=None)
INT64_MAX = 2**63 - 1
FULL_ID = "0123456789abcdef" * 4


def line(stream: str, tag: str, text: bytes, when: str = T) -> bytes:
    """One line of conmon's log."""
    return f"{when} {stream} {tag} ".encode() + text + b"\n"


def texts(path: str) -> List[Tuple[str, str]]:
    return [(r.stream, r.text) for r in logs.read_log(path)]


def drain(reader: logs.LogReader, final: bool = False) -> List[logs.LogRecord]:
    """Everything the reader has up to the end of the log."""
    out: List[logs.LogRecord] = []
    for _ in range(1000):
        out += reader.read(final=final)
        if reader.at_end:
            return out
    raise AssertionError("the reader never reached the end of the log")


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- 1. conmon's log ----------------------------------------------------------


@pytest.mark.parametrize("separator", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_a_container_cannot_forge_a_record_with_a_line_separator(tmp_path, separator):
    text = f"a{separator}1999-01-01T00:00:00.000000000Z stderr F FORGED"
    (tmp_path / "ctr.log").write_bytes(line("stdout", "F", text.encode()))
    assert list(logs.read_log(str(tmp_path / "ctr.log"))) == [logs.LogRecord(WHEN, "stdout", text)]


def test_a_bad_line_is_skipped_not_raised(tmp_path):
    log = tmp_path / "ctr.log"
    log.write_bytes(
        line("stdout", "F", b"first")
        + b"not-a-time stdout F x\n"
        + line("stdout", "F", b"bad month", when="2026-13-01T00:00:00Z")
        + line("stdout", "F", b"bad zone", when="2026-11-28T15:31:00+99:00")
        + line("stdout", "F", b"unicode digits", when="\u0662026-11-28T15:31:00Z")
        + line("stdin", "F", b"bad stream")
        + line("stdout", "X", b"bad tag")
        + b"\xff\xfe stdout F \n"
        + b"\n"
        + line("stderr", "F", b"last")
    )
    assert texts(str(log)) == [("stdout", "first"), ("stderr", "last")]


def test_text_is_what_the_container_wrote_on_its_line(tmp_path):
    log = tmp_path / "ctr.log"
    log.write_bytes(line("stdout", "F", b"a\rb \xff  c\x00") + line("stdout", "P", b"\xc3") + line("stdout", "F", b"\xa9"))
    assert texts(str(log)) == [("stdout", "a\rb \ufffd  c\x00"), ("stdout", "\u00e9")]  # a character split over P lines is whole


def test_a_long_partial_record_is_cut_at_the_cap(tmp_path):
    log = tmp_path / "ctr.log"
    part = "é".encode() * 4096  # 8 KiB a line, as conmon writes
    with open(log, "wb") as f:
        for _ in range(3 * (1 << 20) // len(part)):
            f.write(line("stdout", "P", part))
        f.write(line("stdout", "F", b"end"))
    records = list(logs.read_log(str(log)))
    assert [len(r.text.encode()) for r in records] == [logs.MAX_TEXT] * 3 + [3]
    assert "".join(r.text for r in records) == "é" * (3 * (1 << 19)) + "end"


def test_a_log_is_read_a_chunk_at_a_time(tmp_path):
    log = tmp_path / "ctr.log"
    one = line("stdout", "F", b"x" * 1000)
    log.write_bytes(one * 3000)  # about 3 MiB
    with logs.LogReader(str(log)) as reader:
        first = reader.read()
        assert 0 < reader.offset <= logs.CHUNK_SIZE and not reader.at_end
        assert reader.offset % len(one) == 0 and len(first) == reader.offset // len(one)
        rest = drain(reader, final=True)
    assert len(first) + len(rest) == 3000
    assert sum(1 for _ in logs.read_log(str(log))) == 3000


def test_reading_a_big_log_takes_little_memory(tmp_path):
    log = tmp_path / "ctr.log"
    with open(log, "wb") as f:
        for _ in range(16):
            f.write(line("stdout", "F", b"y" * 1000) * 1000)  # 16 MiB in all
    tracemalloc.start()
    try:
        count = sum(1 for _ in logs.read_log(str(log)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 16000
    assert peak < 8 << 20, f"peak {peak} bytes"


def test_a_line_longer_than_conmon_writes_is_skipped_in_bounded_memory(tmp_path):
    log = tmp_path / "ctr.log"
    log.write_bytes(line("stdout", "F", b"z" * (3 << 20)) + line("stdout", "F", b"after"))
    assert texts(str(log)) == [("stdout", "after")]
    torn = tmp_path / "torn.log"
    torn.write_bytes(line("stdout", "F", b"before") + b"no newline " * (300 << 10))
    with logs.LogReader(str(torn)) as reader:
        assert [r.text for r in drain(reader, final=True)] == ["before"]
        assert reader.offset == len(line("stdout", "F", b"before"))  # still at the start of the torn line
        assert reader.position == torn.stat().st_size


def test_a_rotated_log_is_read_from_the_new_file(tmp_path):
    path = str(tmp_path / "ctr.log")
    writer = open(path, "ab")
    writer.write(line("stdout", "F", b"one") + line("stdout", "F", b"two"))
    writer.flush()
    with logs.LogReader(path) as reader:
        assert [r.text for r in drain(reader)] == ["one", "two"]
        # conmon's --log-size-max: the rest of the old file, then a new one renamed over it
        writer.write(line("stdout", "P", b"three, "))
        writer.close()
        with open(path + ".tmp", "wb") as new:
            new.write(line("stdout", "F", b"continued") + line("stderr", "F", b"new"))
        os.rename(path + ".tmp", path)
        assert [r.text for r in drain(reader)] == ["three, continued", "new"]
        assert reader.offset == os.path.getsize(path)
        # truncated in place: read again from the start
        with open(path, "wb") as again:
            again.write(line("stdout", "F", b"short"))
        assert [r.text for r in drain(reader)] == ["short"]


def test_follow_reads_the_new_file_after_a_rotation(tmp_path):
    path, exit_file = str(tmp_path / "ctr.log"), str(tmp_path / "exit")
    writer = open(path, "ab")
    writer.write(line("stdout", "F", b"before"))
    writer.flush()
    guard = subprocess.Popen(["sleep", "60"])  # stands for conmon: following ends when it is gone
    handle = ProcessHandle.open(guard.pid)
    got: List[str] = []

    def follow() -> None:
        for record in logs.follow(path, exit_file, handle):
            got.append(record.text)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        wait_for(lambda: got == ["before"])
        writer.close()  # rotated as conmon does it
        writer = open(path + ".tmp", "wb")
        writer.write(line("stdout", "F", b"after the rotation"))
        writer.flush()
        os.rename(path + ".tmp", path)
        wait_for(lambda: got == ["before", "after the rotation"])
        open(exit_file, "w").close()
        writer.write(line("stdout", "F", b"last"))
        writer.flush()
        follower.join(10)
        assert not follower.is_alive()
        assert got == ["before", "after the rotation", "last"]
    finally:
        writer.close()
        guard.kill()
        guard.wait()
        follower.join(10)
        if handle is not None:
            handle.close()


# -- 2. the runtime's messages and conmon's sync pipe ----------------------------------


def test_a_runtime_message_with_control_bytes_decodes():
    text = 'time="2026-11-28T15:31:00Z" level=error msg="exec: \\"\\x01\\a\\v\\U0001f600\\\\\\303\\251\\": not found"'
    assert runtime_message(text) == 'exec: "\x01\a\v\U0001f600\\\u00e9": not found'


@pytest.mark.parametrize("body", ["bad \\q escape", "short \\x1", "octal \\400", "surrogate \\ud800", "too big \\U00110000", "quote \\'"])
def test_a_runtime_message_that_is_not_go_quoted_is_kept_as_written(body):
    assert runtime_message(f'level=error msg="{body}"') == body


def _sync_message(payload: bytes) -> Tuple[Optional[dict], Optional[BaseException]]:
    ours, conmons = socket.socketpair()

    def send() -> None:
        try:
            conmons.sendall(payload)
        except OSError:
            pass  # the reader gave up first
        finally:
            conmons.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        return read_sync(ours.fileno(), time.monotonic() + 5), None
    except ocirt.OcirtError as e:
        return None, e
    finally:
        ours.close()
        sender.join()


def test_conmon_cannot_make_the_sync_reader_buffer_without_limit():
    message, error = _sync_message(b"{" + b" " * (SYNC_MAX + 4096))
    assert isinstance(error, ocirt.ConmonError) and str(SYNC_MAX) in str(error)
    exact = b'{"pid": 42, "pad": "' + b"x" * (SYNC_MAX - 22) + b'"}'
    assert len(exact) == SYNC_MAX
    assert _sync_message(exact + b"\n") == ({"pid": 42, "pad": "x" * (SYNC_MAX - 22)}, None)


# -- 3. numbers and signals --------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["nan", "inf", "-inf", "1e30", "1e3", "²", "\u0663m", "64\u212a", "0", "0.5", "-1m", "8192p", " ", pytest.param("1" * 5000, id="long")]
)
def test_bad_sizes_are_refused(text):
    with pytest.raises(ocirt.InvalidArgument):
        specgen.parse_size(text)


@pytest.mark.parametrize(
    "text, size",
    [("512", 512), ("512b", 512), ("64k", 64 << 10), ("64m", 64 << 20), ("512mb", 512 << 20), ("512MiB", 512 << 20),
     ("1.5g", 3 << 29), ("1t", 1 << 40), ("1 g", 1 << 30), ("8191p", 8191 << 50), ("64KB", 64 << 10), ("2ki", 2048)],
)  # fmt: skip
def test_sizes_as_podman_takes_them(text, size):
    assert specgen.parse_size(text) == size


@pytest.mark.parametrize("option, value", [("--cpus", "inf"), ("--cpus", "nan"), ("--timeout", "inf"), ("--timeout", "1e999"),
                                           ("--create-timeout", "inf"), ("--create-timeout", "nan"), ("--timeout", "1.5"),
                                           ("--pids-limit", "\u0663"), ("--cpus", "\u0661.5"), ("--pids-limit", "1e3")])  # fmt: skip
def test_the_command_line_refuses_numbers_that_are_not_finite_ascii(option, value):
    with pytest.raises(cli.Usage):
        cli.build_parser().parse_args(["run", option, value, "busybox", "true"])


def test_stop_time_must_be_a_finite_number():
    for value in ("nan", "inf", "-1", "\u0661"):
        with pytest.raises(cli.Usage):
            cli.build_parser().parse_args(["stop", "-t", value, "c"])
    assert cli.build_parser().parse_args(["stop", "-t", "2.5", "c"]).time == 2.5


@pytest.mark.parametrize("cpus", [float("inf"), float("nan"), 0.000001, 0.0099, -1, pytest.param(10**400, id="10**400"), 1e300, True, "2"])
def test_cpus_that_would_not_limit_are_refused(tmp_path, cpus):
    with pytest.raises(ocirt.InvalidArgument, match="cpus"):
        specgen.generate(["true"], rootfs=str(tmp_path), cpus=cpus)


def test_the_smallest_cpu_quota_is_a_real_limit(tmp_path):
    for cpus in (0.01, 0.010000001):
        assert specgen.generate(["true"], rootfs=str(tmp_path), cpus=cpus)["linux"]["resources"]["cpu"] == {"quota": 1000, "period": 100_000}


@pytest.mark.parametrize("kw", [{"memory": 2**63}, {"memory": 1.5e9}, {"memory": True}, {"pids_limit": 2**63}, {"pids_limit": float("nan")}])
def test_limits_must_fit_runc(tmp_path, kw):
    with pytest.raises(ocirt.InvalidArgument, match="memory|pids"):
        specgen.generate(["true"], rootfs=str(tmp_path), **kw)


@pytest.mark.parametrize(
    "value", ["²", "\u0669", "\u0661\u0665", "\u017figterm", "", " ", pytest.param("9" * 5000, id="5000 digits"), "+9", "-9", "0", "65", "SIG_DFL"]
)
def test_signals_must_be_ascii_numbers_or_names(value):
    with pytest.raises(ocirt.InvalidArgument):
        parse_signal(value)


def test_an_infinite_timeout_is_no_limit():
    assert check_timeout(float("inf")) is None
    assert check_timeout(10**400) is None
    assert check_timeout(1.5) == 1.5 and check_timeout(0) == 0.0
    for bad in (float("nan"), -1, float("-inf"), True, "1"):
        with pytest.raises(ocirt.InvalidArgument):
            check_timeout(bad)


# -- 4. names and ids --------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state.db"), str(tmp_path / "locks"))
    yield s
    s.close()


def test_a_name_equal_to_another_containers_id_does_not_shadow_it(store):
    store.insert(Record(id="b" * 64, name=FULL_ID, bundle="/x"))  # the impostor comes first
    store.insert(Record(id=FULL_ID, name="victim", bundle="/x"))
    assert store.resolve(FULL_ID) == FULL_ID
    assert store.resolve("victim") == FULL_ID
    assert store.resolve("b" * 64) == "b" * 64


def test_a_name_wins_over_an_id_prefix_and_prefixes_are_case_sensitive(store):
    store.insert(Record(id="abc123", name="one", bundle="/x"))
    store.insert(Record(id="def456", name="abc", bundle="/x"))
    store.insert(Record(id="a_c%99", name="three", bundle="/x"))
    assert store.resolve("abc") == "def456"
    assert store.resolve("abc1") == "abc123"
    assert store.resolve("a_") == "a_c%99"
    for missing in ("ABC1", "DEF", "a%", "\udcff"):
        with pytest.raises(ocirt.ContainerNotFound):
            store.resolve(missing)
    with pytest.raises(ocirt.InvalidArgument, match="2 containers"):
        store.resolve("a")


def test_a_name_must_not_look_like_a_container_id():
    with pytest.raises(ocirt.InvalidArgument, match="container id"):
        check_name(FULL_ID)
    assert check_name(FULL_ID[:63]) == FULL_ID[:63]
    assert check_name(FULL_ID.upper()) == FULL_ID.upper()  # ids are lowercase and lookups case-sensitive
    assert check_id(FULL_ID) == FULL_ID


def test_the_command_line_refuses_such_a_name_before_anything_is_made():
    args = cli.build_parser().parse_args(["create", "--name", FULL_ID, "busybox", "true"])
    with pytest.raises(ocirt.InvalidArgument, match="container id"):
        cmd_create(None, args, print)  # type: ignore[arg-type]  # refused before the runtime is used


# -- properties: conmon's log -------------------------------------------------------------

streams = st.sampled_from(["stdout", "stderr"])
line_text = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@PROPERTY
@given(st.binary(max_size=2000))
def test_any_bytes_in_a_log_never_raise(data):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ctr.log")
        with open(path, "wb") as f:
            f.write(data)
        for record in logs.read_log(path):
            assert record.stream in ("stdout", "stderr") and record.time.tzinfo is not None


@PROPERTY
@given(st.lists(st.tuples(streams, st.booleans(), line_text), max_size=30), st.integers(1, 64))
def test_each_record_is_what_conmon_wrote_whatever_the_chunks(writes, chunk):
    """Writes (stream, partial, text) as conmon does; records are the texts joined per stream up to an F."""
    expected: List[Tuple[str, str]] = []
    open_: Dict[str, bytes] = {}  # stream -> its partial record, in the order they began
    for stream, partial, text in writes:
        joined = open_.get(stream, b"") + text
        if partial and joined:
            open_[stream] = joined
        else:
            open_.pop(stream, None)
        if not partial:
            expected.append((stream, joined.decode("utf-8", errors="replace")))
    expected += [(s, t.decode("utf-8", errors="replace")) for s, t in open_.items()]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ctr.log")
        with open(path, "wb") as f:
            f.write(b"".join(line(s, "P" if p else "F", t) for s, p, t in writes))
        assert texts(path) == expected
        with mock.patch.object(logs, "CHUNK_SIZE", chunk):
            assert texts(path) == expected


@PROPERTY
@given(st.lists(st.text(max_size=50).map(lambda t: t.replace("\n", "")), max_size=20), st.integers(4, 40))
def test_capped_records_join_back_to_the_text(parts, cap):
    with tempfile.TemporaryDirectory() as d, mock.patch.object(logs, "MAX_TEXT", cap):
        path = os.path.join(d, "ctr.log")
        with open(path, "wb") as f:
            f.write(b"".join(line("stdout", "P", p.encode()) for p in parts) + line("stdout", "F", b""))
        records = list(logs.read_log(path))
        assert "".join(r.text for r in records) == "".join(parts)
        assert all(len(r.text.encode()) <= cap for r in records)


@PROPERTY
@given(st.text(max_size=60))
def test_parse_time_raises_only_invalid_argument(text):
    try:
        when = logs.parse_time(text)
    except ocirt.InvalidArgument:
        return
    assert when.tzinfo is not None


@PROPERTY
@given(st.datetimes(timezones=st.just(timezone.utc)), st.integers(0, 999))
def test_parse_time_reads_conmons_times(when, nanos):
    text = when.isoformat(timespec="microseconds").replace("+00:00", f"{nanos:03d}+00:00")
    assert logs.parse_time(text) == when


# -- properties: Go-quoted strings ----------------------------------------------------------

_GO_NAMED = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(data: bytes) -> str:
    """What Go's %q (strconv.Quote) makes of a string's bytes, without the quotes."""
    out = []
    i = 0
    while i < len(data):
        lead = data[i]
        size = 1 if lead < 0x80 else 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0
        try:
            char = data[i : i + size].decode("utf-8") if size else ""
        except UnicodeDecodeError:
            char = ""
        if len(char) != 1:  # not valid UTF-8: Go escapes the byte
            out.append(f"\\x{lead:02x}")
            i += 1
            continue
        i += size
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():  # near enough Go's unicode.IsPrint: the decoder takes a character either way
            out.append(char)
        elif char in _GO_NAMED:
            out.append(_GO_NAMED[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def logrus(quoted: str) -> str:
    return f'time="2026-11-28T15:31:00Z" level=error msg="{quoted}"'


@PROPERTY
@given(st.text(max_size=80))
def test_go_quoted_text_round_trips(text):
    assert runtime_message(logrus(go_quote(text.encode()))) == text


@PROPERTY
@given(st.binary(max_size=80))
def test_go_quoted_bytes_round_trip(data):
    assert runtime_message(logrus(go_quote(data))) == data.decode("utf-8", errors="replace")


characters = st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF)
escapes = st.one_of(
    st.characters(exclude_characters='"\\', exclude_categories=("Cs",)).map(lambda c: (c, c.encode())),
    st.sampled_from(sorted(_GO_NAMED.items()) + [('"', '\\"'), ("\\", "\\\\")]).map(lambda kv: (kv[1], kv[0].encode())),
    st.tuples(st.integers(0, 255), st.booleans()).map(lambda t: ((f"\\x{t[0]:02X}" if t[1] else f"\\x{t[0]:02x}"), bytes([t[0]]))),
    st.integers(0, 255).map(lambda b: (f"\\{b:03o}", bytes([b]))),
    characters.filter(lambda c: c < 0x10000).map(lambda c: (f"\\u{c:04x}", chr(c).encode())),
    characters.map(lambda c: (f"\\U{c:08X}", chr(c).encode())),
)


@PROPERTY
@given(st.lists(escapes, max_size=30))
def test_every_go_escape_decodes(pieces):
    assert go_unquote("".join(q for q, _ in pieces)) == b"".join(b for _, b in pieces).decode("utf-8", errors="replace")


@PROPERTY
@given(st.text(max_size=200))
def test_runtime_message_never_raises(text):
    assert isinstance(runtime_message(text), str)
    assert isinstance(runtime_message(logrus(text.replace('"', ""))), str)


# -- properties: numbers, signals, names, env ------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@PROPERTY
@given(st.integers(0, 10**6), st.text("0123456789", max_size=8), st.sampled_from(sorted(_UNITS)), st.sampled_from(["", "i", "b", "ib"]),
       st.booleans(), st.booleans())  # fmt: skip
def test_sizes_are_read_exactly(whole, fraction, unit, suffix, space, upper):
    if unit in ("", "b"):
        suffix = ""
    text = f"{whole}{'.' + fraction if fraction else ''}{' ' if space else ''}{unit}{suffix}"
    text = text.upper() if upper else text
    size = int(Fraction(f"{whole}.{fraction or '0'}") * _UNITS[unit])
    if 0 < size <= INT64_MAX:
        assert specgen.parse_size(text) == size
    else:
        with pytest.raises(ocirt.InvalidArgument):
            specgen.parse_size(text)


@PROPERTY
@given(st.one_of(st.text(max_size=30), st.lists(st.sampled_from(["1", "9", "0", ".", " ", "k", "M", "i", "B", "p", "e"]), max_size=25).map("".join)))
def test_parse_size_gives_a_valid_size_or_invalid_argument(text):
    try:
        size = specgen.parse_size(text)
    except ocirt.InvalidArgument:
        return
    assert text.isascii() and 1 <= size <= INT64_MAX


@PROPERTY
@given(st.text(max_size=30))
def test_command_line_numbers_are_finite_ascii(text):
    for parse in (values.positive_int, values.positive_float, values.non_negative_float):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert text.isascii() and value == value and abs(value) != float("inf") and value >= 0


@PROPERTY
@given(st.one_of(st.text(max_size=12), st.integers(), st.tuples(st.sampled_from(["", " ", "SIG", "sig"]), st.text("TERMKILrt019+ ")).map("".join)))
def test_parse_signal_gives_a_signal_or_invalid_argument(value):
    try:
        number = parse_signal(value)
    except ocirt.InvalidArgument:
        return
    assert 1 <= number <= SIGNAL_MAX
    if isinstance(value, str):
        assert value.isascii()


@PROPERTY
@given(st.sampled_from(list(signal.Signals)), st.booleans(), st.booleans(), st.booleans())
def test_signals_by_name_and_number(sig, prefix, lower, padded):
    name = sig.name if prefix else sig.name[3:]
    name = name.lower() if lower else name
    assert parse_signal(f" {name} " if padded else name) == sig
    assert parse_signal(str(int(sig))) == parse_signal(int(sig)) == sig


_ID_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@PROPERTY
@given(st.one_of(st.text(max_size=140), st.text("0123456789abcdef", min_size=60, max_size=66), st.text("aZ09_.-", max_size=130)))
def test_ids_and_names(value):
    valid_id = bool(_ID_RULE.fullmatch(value)) and value.isascii()
    try:
        assert check_id(value) == value and valid_id
    except ocirt.InvalidArgument:
        assert not valid_id
    looks_like_an_id = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    try:
        assert check_name(value) == value and valid_id and not looks_like_an_id
    except ocirt.InvalidArgument:
        assert not valid_id or looks_like_an_id


def _resolve_model(containers: Sequence[Tuple[str, str]], query: str) -> Tuple[Optional[str], str]:
    """(id, "") or (None, the error class name) as the lookup order says: id, name, unique id prefix."""
    if not query:
        return None, "InvalidArgument"
    for cid, _ in containers:
        if cid == query:
            return cid, ""
    for cid, name in containers:
        if name == query:
            return cid, ""
    matches = [cid for cid, _ in containers if cid.startswith(query)]
    if len(matches) == 1:
        return matches[0], ""
    return None, "InvalidArgument" if matches or not query else "ContainerNotFound"


small_ids = st.text("aAb_%0", min_size=1, max_size=4)


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.lists(st.tuples(small_ids, small_ids), max_size=6, unique_by=(lambda c: c[0], lambda c: c[1])),
    st.lists(st.text("aAb_%0", max_size=4), max_size=8),
)
def test_resolve_follows_id_then_name_then_unique_prefix(containers, queries):
    with tempfile.TemporaryDirectory() as d:
        store = Store(os.path.join(d, "state.db"), os.path.join(d, "locks"))
        try:
            for cid, name in containers:
                store.insert(Record(id=cid, name=name, bundle="/x"))
            for query in queries + [c[0] for c in containers] + [c[1] for c in containers]:
                want, error = _resolve_model(containers, query)
                if want is not None:
                    assert store.resolve(query) == want
                else:
                    with pytest.raises((ocirt.InvalidArgument, ocirt.ContainerNotFound)) as raised:
                        store.resolve(query)
                    assert type(raised.value).__name__ == error
        finally:
            store.close()


@PROPERTY
@given(st.lists(st.text(max_size=12), max_size=8))
def test_env_pairs(pairs):
    expected: Dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not key:
            with pytest.raises(ocirt.InvalidArgument):
                values.env(pairs)
            return
        if sep:
            expected[key] = value
        elif key in os.environ:  # -e K with K unset here is skipped, as podman does
            expected[key] = os.environ[key]
    env = values.env(pairs)
    assert env == expected
    assert all(k and "=" not in k for k in env)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=4096))
def test_whatever_conmon_sends_on_the_sync_pipe_is_a_message_or_a_conmon_error(data):
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(data)
        theirs.close()
        try:
            message = read_sync(ours.fileno(), None)
        except ocirt.ConmonError:
            return
        assert message is None or isinstance(message, dict)
    finally:
        ours.close()


LOG_LINES = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["stdout", "stderr"]), st.sampled_from(["F", "P"]), st.binary(max_size=40).filter(lambda b: b"\n" not in b)),
        st.just(("junk", "", b"not conmon's")),
    ),
    max_size=60,
)


@PROPERTY
@given(LOG_LINES, st.integers(min_value=0, max_value=12), st.binary(max_size=10).filter(lambda b: b"\n" not in b), st.integers(1, 64))
def test_a_tail_found_from_the_end_is_the_tail_of_the_whole_log(tmp_path_factory, lines, tail, unfinished, chunk):
    """Interleaved partial records, lines that are not conmon's, an
    unfinished last line, blocks of any size: the last N records read from
    where tail_start begins are the last N of the whole log."""
    path = str(tmp_path_factory.mktemp("tail") / "ctr.log")
    with open(path, "wb") as f:
        for stream, tag, text in lines:
            f.write(b"junk line\n" if stream == "junk" else line(stream, tag, text))
        f.write(unfinished)
    whole = list(logs.read_log(path))
    with mock.patch.object(logs, "CHUNK_SIZE", chunk):
        assert list(logs.chosen(path, logs.chooser(), tail)) == (whole[-tail:] if tail else [])
        with logs.LogReader(path) as reader:
            reader.skip_to_tail(tail)
            got = drain(reader, final=True)
            assert (got[-tail:] if tail else got) == (whole[-tail:] if tail else [])
