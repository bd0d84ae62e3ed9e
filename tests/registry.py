"""A real registry for the tests: Debian's docker-registry (CNCF
distribution) on 127.0.0.1, a port of its own choosing, its storage in the
test's temp dir, stopped by its pid."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import threading
import time
from typing import Iterator, Optional

CONFIG = """version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
"""
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
UP_WITHIN = 30.0


class Registry:
    """docker-registry serving on 127.0.0.1:`port` until `stop()`."""

    def __init__(self, workdir: str) -> None:
        config = os.path.join(workdir, "registry.yml")
        with open(config, "w") as f:
            f.write(CONFIG.format(data=os.path.join(workdir, "data")))
        self._proc = subprocess.Popen(
            ["docker-registry", "serve", config], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, bufsize=0
        )
        self.port = self._port()
        self.host = f"127.0.0.1:{self.port}"

    def _port(self) -> int:
        """The port, read from the registry's log as it starts (a pipe: each read wakes on its output)."""
        log = self._proc.stderr
        assert log is not None
        seen = b""
        deadline = time.monotonic() + UP_WITHIN
        while select.select([log], [], [], max(0.0, deadline - time.monotonic()))[0]:
            line = log.readline()  # unbuffered (one byte a read): select sees what is left
            if not line:
                break
            seen += line
            m = LISTENING.search(line)
            if m:
                # It logs every request: read on, or it blocks once the pipe is full.
                threading.Thread(target=lambda: [None for _ in iter(log.readline, b"")], daemon=True).start()
                return int(m.group(1))
        self.stop()
        raise RuntimeError(f"docker-registry did not say where it listens: {seen[-500:]!r}")

    def push(self, source: str, name: str) -> str:
        """Copy `source` (a skopeo reference) to this registry as `name`; the pullable reference."""
        ref = f"{self.host}/{name}"
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", source, f"docker://{ref}"], check=True, capture_output=True)
        return ref

    def stop(self) -> None:
        if self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self._proc.pid, signal.SIGKILL)
                self._proc.wait()


def running(workdir: str) -> Iterator[Optional[Registry]]:
    registry = Registry(workdir)
    try:
        yield registry
    finally:
        registry.stop()
