"""Runtime.run: one command in a fresh container, from its argv to its result.

For example::

    result = rt.run(["sh", "-c", "echo hi"])        # the busybox root filesystem
    result.exit_code, result.stdout, result.timings.phases()
    with rt.run(["sleep", "1000"], detach=True) as c:
        c.exec_run(["ps"])
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence

from . import attach, specgen
from .cgroups.limits import Limits
from .container import Container
from .errors import ContainerError, ContainerNotFound, InvalidArgument, Timeout
from .logs import LogRecord
from .state import Timings
from .validate import check_id

if TYPE_CHECKING:
    from .runtime import Runtime


@dataclass(frozen=True)
class RunResult:
    """How a container run to its end went."""

    container_id: str
    exit_code: int  # 128+N for a death by signal N
    output: List[LogRecord] = field(default_factory=list)  # stdout and stderr, line by line, in order
    oom_killed: bool = False
    timings: Timings = field(default_factory=Timings)

    @property
    def stdout(self) -> str:
        """The container's stdout, each line ended by a newline."""
        return self._text("stdout")

    @property
    def stderr(self) -> str:
        return self._text("stderr")

    @property
    def stdout_bytes(self) -> bytes:
        return self.stdout.encode()

    @property
    def stderr_bytes(self) -> bytes:
        return self.stderr.encode()

    def _text(self, stream: str) -> str:
        return "".join(r.text + "\n" for r in self.output if r.stream == stream)


def run(
    runtime: "Runtime",
    cmd: Sequence[str],
    *,
    container_id: Optional[str] = None,
    name: Optional[str] = None,
    rootfs: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    user: Optional[str] = None,
    workdir: Optional[str] = None,
    mounts: Sequence[Sequence[str]] = (),
    network: str = "none",
    memory: Optional[int] = None,
    pids_limit: Optional[int] = None,
    cpus: Optional[float] = None,
    limits: Optional[Limits] = None,
    labels: Optional[Mapping[str, str]] = None,
    stdin: "bytes | str | None" = None,
    timeout: Optional[float] = None,
    remove: bool = True,
    detach: bool = False,
    check: bool = False,
) -> "RunResult | Container":
    """See Runtime.run."""
    cid = check_id(container_id) if container_id is not None else os.urandom(32).hex()
    data = _input(stdin, detach)
    root = runtime.root or runtime.tmp_dir
    bundle = os.path.join(root, "bundles", cid)
    options: Any = dict(env=env, cwd=workdir or "/", user=user, memory=memory, pids_limit=pids_limit, cpus=cpus, mounts=mounts, network=network)
    specgen.write_bundle(bundle, cmd, rootfs=rootfs, cache_dir=os.path.join(root, "rootfs"), **options)
    try:
        container = runtime.create(
            cid, bundle, name=name or cid[:12], owned_bundle=True, limits=limits, labels=labels, stdin=data is not None
        )
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    feeder: Optional[threading.Thread] = None
    try:
        if data is not None:
            sock = attach.connect(os.path.join(runtime.dirs.sockets, cid), send_input=True)  # before the start: nothing is missed
            feeder = attach.feeding(sock, data, name=f"ocirt-stdin-{cid[:12]}")
        container.start()
        if detach:
            return container
        if feeder is not None:
            feeder.start()
        try:
            code = container.wait(timeout)
        except Timeout as e:
            raise Timeout(f"container {cid} still running after {timeout:g}s: removed") from e
        result = RunResult(cid, code, list(container.logs()), container.state.oom_killed, container.timings)
    except BaseException:
        _remove(container)
        raise
    finally:
        if feeder is not None:
            if feeder.is_alive():
                feeder.join()  # conmon hung up as the container exited (or was removed)
            else:
                sock.close()  # never started
    if remove:
        container.delete(force=True)
    if check and code != 0:
        raise ContainerError(cid, code, result.stderr)
    return result


def _remove(container: Container) -> None:
    try:
        container.delete(force=True)
    except ContainerNotFound:
        pass


def _input(stdin: "bytes | str | None", detach: bool) -> Optional[bytes]:
    """`stdin` as the bytes to send (str as UTF-8); InvalidArgument for what cannot be sent."""
    if stdin is None:
        return None
    if detach:
        raise InvalidArgument("stdin data goes with a run to its end, not with detach=True")
    if isinstance(stdin, str):
        return stdin.encode()
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        return bytes(stdin)
    raise InvalidArgument(f"stdin must be bytes or str, not {type(stdin).__name__}")

