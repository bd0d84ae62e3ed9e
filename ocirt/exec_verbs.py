"""How the exec verbs are done, on a container's parts (core.ContainerCore):
a process started in a running container under a conmon of its own (see
exec.py for the session), or run to its end with its output collected.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from . import attach, exec as execs, logs as logfile, spec as specs
from .core import RUNNING, ContainerCore
from .errors import ContainerNotFound, InvalidArgument
from .exec import ExecOptions, ExecSession
from .steps import Steps
from .validate import check_id, check_timeout


def exec_in(c: ContainerCore, cmd: Sequence[str], o: ExecOptions) -> Steps[ExecSession]:
    """Start `cmd` in the running container `c` (see Container.exec)."""
    args = execs.check_command(cmd)
    sid = check_id(o.session_id, "exec session id") if o.session_id is not None else os.urandom(16).hex()
    limit = check_timeout(o.timeout)
    if o.stdin and not o.attach:
        raise InvalidArgument("an exec's stdin is sent on its attach socket: stdin=True needs attach=True")
    ids = c._resolve_user(o.user) if o.user is not None else None  # reads the container's files: never under its lock
    with (yield from c._locking()):
        c._require(RUNNING, verb="exec in")
        process = specs.exec_process(
            c.spec, args, env=dict(o.env) if o.env else None, user=ids, cwd=o.cwd, tty=o.tty,
            cap_add=tuple(o.cap_add), no_new_privs=o.no_new_privs,
        )  # fmt: skip
        files = c._files.exec_session(sid)
    # Launched without the lock: the container's own files can keep the
    # runtime's exec waiting (a FIFO for /etc/passwd), and stop or delete
    # must not wait for it. Its conmon is in conmon's cgroup, which they end.
    session = yield from execs.start_steps(c._svc.launcher, c, files, c._cgroup, sid, process, timeout=limit, attach=o.attach, stdin=o.stdin)
    with (yield from c._locking()):
        if c.deleted:
            session._close()
            raise ContainerNotFound(f"container {c.id} was deleted while exec session {sid} started", container_id=c.id)
        c._sessions.add(session)
        return session


def run_to_end(
    start: Callable[..., ExecSession], cmd: Sequence[str], timeout: Optional[float], data: Optional[bytes], options: Dict[str, Any]
) -> Tuple[int, str, str]:
    """Run `cmd` to its end, started by `start` (a Container's blocking
    `exec`) with `options`, `data` as its stdin then EOF: (exit code,
    stdout, stderr) (see Container.exec_run)."""
    if data is not None:
        options.update(attach=True, stdin=True)
    feeder: Optional[threading.Thread] = None
    try:
        with start(cmd, **options) as session:  # a timeout ends the process on the way out
            if data is not None and session.attach is not None:
                # A socket of its own: leaving the `with` closes the session's, which must
                # never pull the descriptor from under the feeder's poll (it then waited forever).
                feeder = attach.feeding(session.attach.dup(), data, name=f"ocirt-exec-stdin-{session.id[:12]}")
                feeder.start()
            code = session.wait(timeout)
            out = list(session.logs())
    finally:
        if feeder is not None:
            feeder.join()  # conmon hung up: the process exited, or was stopped
    return code, logfile.text(out, "stdout"), logfile.text(out, "stderr")
