"""conmon's attach socket: live output of a container or exec session.

The socket is AF_UNIX SOCK_SEQPACKET at `<socket dir>/<id>/attach` (a link
to the bundle); each packet is one stream byte (2 stdout, 3 stderr) and the
data. conmon hangs up when the process's output ends.
"""

from __future__ import annotations

import os
import socket

STDOUT = 2
STDERR = 3


def connect(directory: str) -> socket.socket:
    """Connect to `directory`/attach.

    Goes through /proc/self/fd: a socket path is limited to 107 bytes, and
    socket dirs under long roots are longer. Input is shut at once (no stdin
    is forwarded yet), which conmon reads as end of input.
    """
    dirfd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{dirfd}/attach")
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
