"""Running the `ocirt` command line as a real subprocess in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import psutil


class Ocirt:
    """`ocirt` with its own root directory; call it like a shell would."""

    def __init__(self, root: str) -> None:
        self.root = root
        # Output buffered as users get it on a pipe: what the script writes
        # reaches them only through its final flush (see ocirt.__main__).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        self.env["OCIRT_ROOT"] = root

    def argv(self, *args: str) -> list:
        return [sys.executable, "-m", "ocirt", *args]

    def __call__(self, *args: str, timeout: float = 120, input: Optional[str] = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout, input=input
        )

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env, **kw)

    @contextmanager
    def running(self, *args: str) -> Iterator[subprocess.Popen]:
        """`ocirt args` in the background, stdout/stderr piped as text; killed if still running at the end."""
        proc = self.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)
        return proc.stdout


def reap_orphans() -> None:
    """Reap zombie conmons and runtime processes that ended as our children.

    Processes that `ocirt` CLI runs started end up as this (subreaper)
    process's children once those runs exit; on these machines PID 1 would
    never reap them.
    """
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
