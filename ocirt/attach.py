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


def relay(sock: socket.socket, stdout_fd: int = 1, stderr_fd: int = 2, stdin: "int | bytes | None" = None) -> None:
    """Copy output packets to `stdout_fd` / `stderr_fd` (-1: drop them)
    until conmon hangs up (the output ended).

    With `stdin` (bytes, or an fd read to its end), send it meanwhile as
    the container's input, in packets conmon reads whole, then end it: the
    container reads EOF. Input the container no longer takes (it exited,
    or its stdin was closed) ends the sending, not the relay.
    """
    targets = {STDOUT: stdout_fd, STDERR: stderr_fd}
    data = memoryview(stdin) if isinstance(stdin, bytes) else memoryview(b"")  # to send
    source = stdin if isinstance(stdin, int) else None  # to read more from
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
                data = memoryview(os.read(source, INPUT_PACKET))
                if not data:
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
                    return
                if not packet:
                    return
                fd_out = targets.get(packet[0], -1)
                out = memoryview(packet)[1:]
                while fd_out >= 0 and out:
                    out = out[os.write(fd_out, out) :]


def feed(sock: socket.socket, data: bytes) -> None:
    """Send `data` as the input, then EOF, dropping the output (a log has
    it) until conmon hangs up; then close `sock`. For a thread of its own
    beside a wait, which ends the process on a timeout."""
    with sock:
        relay(sock, -1, -1, stdin=data)


def feeding(sock: socket.socket, data: bytes, name: str) -> threading.Thread:
    """A daemon thread (not started) that feeds `data` to `sock`."""
    return threading.Thread(target=feed, args=(sock, data), name=name, daemon=True)
