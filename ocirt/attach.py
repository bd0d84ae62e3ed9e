"""conmon's attach socket: live output of a container or exec session.

The socket is AF_UNIX SOCK_SEQPACKET at `<socket dir>/<id>/attach` (a link
to the bundle); each packet is one stream byte (2 stdout, 3 stderr) and the
data. conmon hangs up when the process's output ends.
"""

from __future__ import annotations

import os
import select
import socket

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


def relay(sock: socket.socket, stdout_fd: int = 1, stderr_fd: int = 2) -> None:
    """Copy output packets to `stdout_fd` / `stderr_fd` until conmon hangs up."""
    targets = {STDOUT: stdout_fd, STDERR: stderr_fd}
    while True:
        packet = sock.recv(65536)
        if not packet:
            return
        fd = targets.get(packet[0])
        if fd is None:
            continue
        data = memoryview(packet)[1:]
        while data:
            data = data[os.write(fd, data):]


def feed(sock: socket.socket, data: bytes) -> None:
    """Send `data` as the container's stdin, in packets conmon reads whole,
    then end it (the container reads EOF); meanwhile drain its output (the
    log has it), so that conmon never blocks on a full socket. Returns when
    conmon hangs up (the output ended). A container that exits without
    reading all of `data` ends the sending, not the call.
    """
    left = memoryview(data)
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLOUT)
    if not left:
        sock.shutdown(socket.SHUT_WR)
        poller.modify(sock, select.POLLIN)
    while True:
        for _, events in poller.poll():
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    if not sock.recv(65536):
                        return
                except BlockingIOError:
                    pass
                except OSError:
                    return
            if left and events & select.POLLOUT:
                try:
                    left = left[sock.send(left[:INPUT_PACKET]) :]
                except BlockingIOError:
                    continue
                except OSError:  # conmon closed the container's stdin: it exited, or will
                    left = left[:0]
                if not left:
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    poller.modify(sock, select.POLLIN)
