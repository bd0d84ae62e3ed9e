"""ocirt's one exception hierarchy.

Every error ocirt raises is an OcirtError. Errors that come from a lower
layer (an OSError from the native helpers, a failed runtime command) are
chained from their cause with ``raise ... from``.
"""

from __future__ import annotations

from typing import Optional, Sequence


class OcirtError(Exception):
    """Base of every error raised by ocirt."""


class InvalidArgument(OcirtError, ValueError):
    """An argument is malformed; nothing was created or changed."""


class BinaryNotFound(OcirtError, FileNotFoundError):
    """The OCI runtime or conmon binary does not exist or is not executable."""


class ContainerNotFound(OcirtError, LookupError):
    """No container with that id exists (or it was deleted); ``container_id``
    names it when known."""

    def __init__(self, message: str, *, container_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.container_id = container_id


class ExecSessionNotFound(OcirtError, LookupError):
    """The container has no exec session of that id (or no longer keeps it)."""


class ContainerExists(OcirtError):
    """A container with that id already exists; it was left untouched."""


class InvalidState(OcirtError):
    """The verb is not allowed in the container's current state.

    Carries, when known, the ``container_id``, the ``status`` that refused
    (a ContainerStatus) and the ``verb``.
    """

    def __init__(self, message: str, *, container_id: Optional[str] = None, status: object = None, verb: Optional[str] = None) -> None:
        super().__init__(message)
        self.container_id = container_id
        self.status = status
        self.verb = verb


class RuntimeCommandError(OcirtError):
    """The OCI runtime exited with an error.

    Carries the full ``argv``, the exit ``status`` and the runtime's ``stderr``.
    """

    def __init__(self, argv: Sequence[str], status: int, stderr: str) -> None:
        self.argv = list(argv)
        self.status = status
        self.stderr = stderr
        detail = stderr.strip() or "no output"
        import shlex  # only when a runtime command fails: not on every command's import

        super().__init__(f"`{shlex.join(self.argv)}` failed with status {status}: {detail}")


class ContainerError(OcirtError):
    """A container run with check=True exited non-zero.

    Carries the ``container_id``, its ``exit_code`` and its ``stderr`` (text).
    """

    def __init__(self, container_id: str, exit_code: int, stderr: str) -> None:
        self.container_id = container_id
        self.exit_code = exit_code
        self.stderr = stderr
        last = stderr.strip().splitlines()[-1:] or ["no stderr"]
        super().__init__(f"container {container_id} exited with status {exit_code}: {last[0]}")


class ConmonError(OcirtError):
    """conmon failed: it crashed, reported an error or spoke garbage."""


class StoreError(OcirtError):
    """The state database cannot be opened, read or written."""


class StoreFull(StoreError):
    """The state database cannot be written: its filesystem is full."""


class CgroupError(OcirtError):
    """A cgroup could not be created, joined or removed."""


class ImageError(OcirtError):
    """An image could not be pulled, unpacked or used: a bad reference, an
    unreachable or refusing registry, a missing tag, a corrupt or hostile
    blob, or one the store does not hold."""


class Timeout(OcirtError, TimeoutError):
    """An operation did not finish within its timeout."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (where ocirt handles them: the CLI, run_jobs).

    Like KeyboardInterrupt, no OcirtError: raised so that every verb on the
    way out finishes or undoes its work, then the process ends.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_terminated(signum: int, frame: object) -> None:
    """A signal handler that raises Terminated."""
    raise Terminated(signum)
