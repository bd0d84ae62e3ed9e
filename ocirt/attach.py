"""conmon's attach socket: live output of a container or exec session.

The socket is AF_UNIX SOCK_SEQPACKET at `<socket dir>/<id>/attach` (a link
to the bundle); each packet is one stream byte (2 stdout, 3 stderr) and the
data. conmon hangs up when the process's output ends.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from typing import Callable, Optional, Tuple, Union

from .errors import InvalidArgument
from .validate import check_input

STDOUT = 2
STDERR = 3
INPUT_PACKET = 8192  # conmon reads a packet into a 32 KiB buffer: a longer one would lose its tail


def connect(directory: str, send_input: bool = False) -> socket.socket:
    """Connect to `directory`/attach.

    Goes through /proc/self/fd: a socket path is limited to 107 bytes, and
    socket dirs under long roots are longer. Unless `send_input`, input is
    shut at once, which conmon reads as the end of the container's stdin
    (when it has one: conmon -i).
    """
    dirfd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{dirfd}/attach")
            if not send_input:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(dirfd)


Sink = Union[int, Callable[[bytes], object]]  # an fd to write to (-1: drop), or a function given each chunk


def relay(
    sock: socket.socket, stdout: Sink = 1, stderr: Sink = 2, stdin: "int | bytes | None" = None, detach_keys: bytes = b""
) -> bool:
    """Copy output packets to `stdout` / `stderr` until conmon hangs up (the
    output ended); True instead when `detach_keys` were read from `stdin`.

    With `stdin` (bytes, or an fd read to its end), send it meanwhile as
    the container's input, in packets conmon reads whole, then end it: the
    container reads EOF. Input the container no longer takes (it exited,
    or its stdin was closed) ends the sending, not the relay. With
    `detach_keys` (see parse_detach_keys; for a terminal's keystrokes, not
    for data, which may hold them) and an fd as `stdin`, that sequence
    ends the relay at once, the container running on, its stdin still open.
    """
    targets = {STDOUT: writer(stdout), STDERR: writer(stderr)}
    data = memoryview(stdin) if isinstance(stdin, bytes) else memoryview(b"")  # to send
    source = stdin if isinstance(stdin, int) else None  # to read more from
    keys = DetachKeys(detach_keys if source is not None else b"")
    sending = stdin is not None
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    sock_events = select.POLLIN
    watched: "int | None" = None  # `source` while registered: read only when all read so far is sent
    while True:
        if sending and not data and source is None:
            try:
                sock.shutdown(socket.SHUT_WR)  # conmon closes the container's stdin
            except OSError:
                pass
            sending = False
        wanted = select.POLLIN | (select.POLLOUT if data else 0)
        if wanted != sock_events:
            poller.modify(sock, wanted)
            sock_events = wanted
        to_watch = source if not data else None
        if to_watch != watched:
            if watched is not None:
                poller.unregister(watched)
            if to_watch is not None:
                poller.register(to_watch, select.POLLIN)
            watched = to_watch
        for fd, events in poller.poll():
            if fd == source:
                read = os.read(source, INPUT_PACKET)
                typed, detached = keys.feed(read) if read else (keys.held(), False)
                if detached:
                    _send_all(sock, typed)  # what came before the keys
                    return True
                data = memoryview(typed)
                if not read:
                    source = None
                continue
            if data and events & select.POLLOUT:
                try:
                    data = data[sock.send(data[:INPUT_PACKET]) :]
                except BlockingIOError:
                    pass
                except OSError:  # the container's stdin is closed: no more input is taken
                    data, source = data[:0], None
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    packet = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    return False
                if not packet:
                    return False
                write = targets.get(packet[0])
                if write is not None:
                    write(memoryview(packet)[1:])


def writer(sink: Sink) -> Optional[Callable[[memoryview], None]]:
    """How to hand output to `sink`: None drops it."""
    if callable(sink):
        give = sink

        def hand(chunk: memoryview) -> None:
            give(bytes(chunk))

        return hand
    if sink < 0:
        return None

    def write(chunk: memoryview) -> None:
        while chunk:
            chunk = chunk[os.write(sink, chunk) :]

    return write


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send `data` in packets before leaving (the socket is non-blocking)."""
    view = memoryview(data)
    while view:
        select.select([], [sock], [])
        try:
            view = view[sock.send(view[:INPUT_PACKET]) :]
        except BlockingIOError:
            continue
        except OSError:
            return  # the container's stdin is closed: nothing more is taken


def sink(target: object) -> Sink:
    """An output target as relay takes it: an fd, a binary file's write, or
    a function given each chunk; None drops the output."""
    if target is None:
        return -1
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    write = getattr(target, "write", None)
    if callable(write):
        return write  # type: ignore[no-any-return]
    if callable(target):
        return target
    raise InvalidArgument(f"an output target is an fd, a binary file or a function, not {type(target).__name__}")


def source(given: object) -> "int | bytes | None":
    """An input as relay takes it: bytes (str as UTF-8), or an fd (a file's
    fileno()) read to its end; None for none."""
    if given is None or (isinstance(given, int) and not isinstance(given, bool)):
        return given
    fileno = getattr(given, "fileno", None)
    if callable(fileno):
        return int(fileno())
    return check_input(given)


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"  # podman's and docker's


def parse_detach_keys(spec: str) -> bytes:
    """The bytes a detach-keys spec stands for: comma-separated keys, each a
    single character or ctrl-<c> (c a letter or one of @[\\]^_); "" for none.
    InvalidArgument naming the key that is neither."""
    if spec == "":
        return b""
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii() and key.isprintable():
            out.append(ord(key))
        elif len(key) == 6 and key[:5].lower() == "ctrl-" and key[5].isascii() and (key[5].isalpha() or key[5] in "@[\\]^_"):
            out.append(ord(key[5].upper()) & 0x1F)
        else:
            raise InvalidArgument(f"bad detach keys {spec!r}: {key!r} is neither a character nor ctrl-<letter or one of @[\\]^_>")
    return bytes(out)


class DetachKeys:
    """Watches typed input for a detach sequence, across reads.

    A read that may begin the sequence is held back until the next read
    tells whether it does."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, typed: bytes) -> Tuple[bytes, bool]:
        """(what to send on, whether the sequence came): before the
        sequence when it came; else all but a tail that may begin it."""
        if not self.keys:
            return typed, False
        data, self._held = self._held + typed, b""
        at = data.find(self.keys)
        if at >= 0:
            return data[:at], True
        for n in range(min(len(self.keys) - 1, len(data)), 0, -1):
            if data.endswith(self.keys[:n]):
                self._held = data[-n:]
                return data[:-n], False
        return data, False

    def held(self) -> bytes:
        """What was held back, released (the input ended)."""
        held, self._held = self._held, b""
        return held


def feed(sock: socket.socket, data: bytes) -> None:
    """Send `data` as the input, then EOF, dropping the output (a log has
    it) until conmon hangs up; then close `sock`. For a thread of its own
    beside a wait, which ends the process on a timeout."""
    with sock:
        relay(sock, -1, -1, stdin=data)


def feeding(sock: socket.socket, data: bytes, name: str) -> threading.Thread:
    """A daemon thread (not started) that feeds `data` to `sock`."""
    return threading.Thread(target=feed, args=(sock, data), name=name, daemon=True)
