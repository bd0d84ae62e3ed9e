"""The asyncio API: the same containers and verbs, awaited, with no thread per container.

    async with ocirt.aio.AsyncRuntime("/run/ocirt") as rt:
        c = await rt.create("web", "/path/to/bundle")
        await c.start()
        code = await c.wait()
        await c.delete()

Every verb runs the container's own steps (see ocirt.steps) on the running
loop: each wait is a reader on a pidfd, an inotify descriptor, a pipe or a
socket (the loop's add_reader), and runtime commands are spawned natively
with their output read the same way. A thousand waiting containers are a
thousand registered descriptors, not a thousand threads. A cancelled verb
closes its steps, which undo what the verb had begun: a cancelled create
leaves nothing behind, a runtime command it was running is killed.
A container whose lock another *process* holds (a shared store) is
waited for by a thread of its own in flock(2), the loop reading a pipe it
writes (see Store.lock_steps).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Concatenate, Coroutine, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from . import attach, churn
from .churn import Job, OnResult, Result
from .container import Container
from .errors import ContainerNotFound, InvalidState, OcirtError, Terminated
from .exec import ExecOptions, ExecSession
from .logs import LogRecord
from .options import CreateOptions
from .runtime import Runtime
from .state import ContainerState, Timings
from .steps import P, Readable, Steps, T
from .validate import check_argv, check_input, check_sequence

if TYPE_CHECKING:
    from .images.store import Image
    from .pool import Pool, PoolStats
    from .run import RunResult

log = logging.getLogger("ocirt")


async def drive(steps: Steps[T]) -> T:
    """Run `steps` to its end on the running loop; closes it if cancelled (or on any error)."""
    readers = _readers_of(asyncio.get_running_loop())
    ready: Optional[Set[int]] = None
    try:
        while True:
            try:
                request = next(steps) if ready is None else steps.send(ready)
            except StopIteration as done:
                value: T = done.value
                return value
            ready = await readers.wait(request)
    finally:
        steps.close()


class _Readers:
    """The loop's readers for steps: one add_reader per descriptor however
    many steps wait on it (a loop keeps one callback per descriptor)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: Dict[int, Dict[asyncio.Future[None], Set[int]]] = {}

    async def wait(self, request: Readable) -> Set[int]:
        loop = self._loop
        future: asyncio.Future[None] = loop.create_future()
        ready: Set[int] = set()
        timer = None
        if request.deadline is not None:
            # loop.time() is monotonic but need not share time.monotonic()'s origin or resolution
            timer = loop.call_at(loop.time() + request.deadline - time.monotonic(), _settle, future)
        for fd in request.fds:
            waiters = self._waiting.get(fd)
            if waiters is None:
                waiters = self._waiting[fd] = {}
                loop.add_reader(fd, self._readable, fd)
            waiters[future] = ready
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            for fd in request.fds:
                waiters = self._waiting.get(fd)
                if waiters is not None:
                    waiters.pop(future, None)
                    if not waiters:
                        del self._waiting[fd]
                        loop.remove_reader(fd)
        return ready

    def _readable(self, fd: int) -> None:
        for future, ready in self._waiting.get(fd, {}).items():
            ready.add(fd)
            _settle(future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Readers]" = weakref.WeakKeyDictionary()


def _readers_of(loop: asyncio.AbstractEventLoop) -> _Readers:
    readers = _by_loop.get(loop)
    if readers is None:
        readers = _by_loop[loop] = _Readers(loop)
    return readers


class AsyncRuntime:
    """A Runtime (same arguments, see ocirt.Runtime) whose containers are awaited.

    `runtime` is the blocking Runtime underneath, shared: a container made
    here is in `runtime.containers()` too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.runtime = kwargs.pop("runtime", None) or Runtime(*args, **kwargs)
        self._deletes: Set[asyncio.Future[None]] = set()
        self._failures: List[Tuple[str, BaseException]] = []

    @classmethod
    def open(cls, root: Optional[str] = None, **options: Any) -> "AsyncRuntime":
        """Runtime.open (a store shared with other processes), for asyncio."""
        return cls(runtime=Runtime.open(root, **options))

    async def create(self, container_id: str, bundle: "str | os.PathLike[str]", **options: Any) -> "AsyncContainer":
        """Runtime.create, awaited; `options` are its keyword arguments (see CreateOptions)."""
        if "exit_command" in options:
            options["exit_command"] = check_argv(options["exit_command"], "exit_command", empty_ok=True)  # never a str's characters
        if "listen_fds" in options:
            options["listen_fds"] = check_sequence(options["listen_fds"], "listen_fds")
        created = await drive(self.runtime._create_steps(container_id, bundle, CreateOptions(**options)))
        return AsyncContainer(created)

    async def get(self, name_or_id: str) -> "AsyncContainer":
        """Runtime.get, awaited."""
        container = self.runtime._find(name_or_id)
        await drive(container.refresh_steps())
        return AsyncContainer(container)

    def list(self) -> List["AsyncContainer"]:
        """Runtime.list (it does not wait on other containers' verbs: see there)."""
        return [AsyncContainer(c) for c in self.runtime.list()]

    async def pool(self, size: int, **options: Any) -> "AsyncPool":
        """Runtime.pool, for asyncio: made (its first container created) in a thread."""
        made: "Pool" = await asyncio.to_thread(lambda: self.runtime.pool(size, **options))
        return AsyncPool(made)

    async def pull(self, ref: str, *, policy: str = "missing", tls_verify: bool = True, authfile: Optional[str] = None) -> "Image":
        """Runtime.pull, in a thread: skopeo's copy and the unpack never block the loop."""
        return await asyncio.to_thread(self.runtime.pull, ref, policy=policy, tls_verify=tls_verify, authfile=authfile)

    async def load(self, path: str) -> "List[Image]":
        """Runtime.load, in a thread."""
        return await asyncio.to_thread(self.runtime.load, path)

    def images(self) -> "List[Image]":
        """Runtime.images (the store's index, read at once)."""
        return self.runtime.images()

    async def remove_image(self, ref: str, force: bool = False) -> "Image":
        """Runtime.remove_image, in a thread (with `force`, it deletes the containers using it)."""
        return await asyncio.to_thread(self.runtime.remove_image, ref, force)

    def delete_later(self, container: "Container | AsyncContainer") -> None:
        """Force-delete `container` in a task of this loop; `finish_deletes()` awaits it."""
        c = container.container if isinstance(container, AsyncContainer) else container
        task = asyncio.ensure_future(self._delete(c))
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def _delete(self, container: Container) -> None:
        try:
            await drive(container.delete_steps(force=True))
        except ContainerNotFound:
            pass
        except (OcirtError, OSError) as e:
            log.warning("background delete of container %s failed: %s", container.id, e)
            self._failures.append((container.id, e))

    async def finish_deletes(self) -> None:
        """Await every delete_later; OcirtError naming each container whose delete failed."""
        while self._deletes:
            await asyncio.wait(list(self._deletes))
        failures, self._failures = self._failures, []
        if failures:
            raise OcirtError("background delete failed: " + "; ".join(f"container {cid}: {e}" for cid, e in failures)) from failures[0][1]

    async def aclose(self) -> None:
        """finish_deletes, then Runtime.close."""
        try:
            await self.finish_deletes()
        finally:
            self.runtime.close()

    async def __aenter__(self) -> "AsyncRuntime":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def run_jobs(runtime: AsyncRuntime, jobs: Iterable[Job], concurrency: int = 8, on_result: Optional[OnResult] = None) -> List[Result]:
    """ocirt.churn.run_jobs on this loop: `concurrency` tasks, no threads.

    Cancelling it (Ctrl-C under asyncio.run) or SIGTERM (when the loop runs
    in the main thread) stops every job and removes every container first.
    """
    jobs, results = churn._check(jobs, concurrency)
    if any(job.image is not None for job in jobs):
        await asyncio.to_thread(churn.pull_images, runtime.runtime, jobs)  # a pull's copy and unpack: off the loop
    claim = iter(range(len(jobs)))

    async def worker() -> None:
        for i in claim:
            await drive(churn.job_steps(runtime.runtime, jobs[i], results[i], runtime.delete_later))
            if on_result is not None:
                on_result(results[i])

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    terminated: List[int] = []

    def on_sigterm() -> None:
        terminated.append(signal.SIGTERM)
        if me is not None:
            me.cancel()

    handles_sigterm = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if handles_sigterm:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(jobs)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.wait(workers)  # each closes its steps: its container is removed
        try:
            await runtime.finish_deletes()
        except OcirtError as e:
            log.warning("%s", e)  # the error that stopped the jobs goes on
        if terminated:
            raise Terminated(signal.SIGTERM) from None
        raise
    finally:
        if handles_sigterm:
            loop.remove_signal_handler(signal.SIGTERM)
    await runtime.finish_deletes()
    return results


def awaited(steps: "Callable[Concatenate[Container, P], Steps[T]]") -> "Callable[Concatenate[AsyncContainer, P], Coroutine[Any, Any, T]]":
    """The asyncio form of a Container's step method: the same arguments and
    docstring, driven on the running loop for the AsyncContainer's container."""

    async def verb(self: AsyncContainer, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await drive(steps(self.container, *args, **kwargs))

    functools.update_wrapper(verb, steps)
    verb.__name__ = steps.__name__.removesuffix("_steps")
    verb.__qualname__ = "AsyncContainer." + verb.__name__
    return verb


class AsyncPool:
    """A Pool (see ocirt.pool) whose jobs are awaited: each runs in a thread
    of the loop's executor, so the loop never waits for a start or an exit;
    `async with` closes it."""

    def __init__(self, pool: "Pool") -> None:
        self.pool = pool

    async def run(self, cmd: Sequence[str] = (), **job: Any) -> "RunResult":
        """Pool.run, awaited."""
        return await asyncio.to_thread(self.pool.run, cmd, **job)

    async def start(self, cmd: Sequence[str] = (), **job: Any) -> "AsyncContainer":
        """Pool.start, awaited."""
        return AsyncContainer(await asyncio.to_thread(self.pool.start, cmd, **job))

    async def wait_ready(self, timeout: Optional[float] = None) -> bool:
        return await asyncio.to_thread(self.pool.wait_ready, timeout)

    def stats(self) -> "PoolStats":
        return self.pool.stats()

    async def aclose(self) -> None:
        """Pool.close, in a thread (it deletes what is ready)."""
        await asyncio.to_thread(self.pool.close)

    async def __aenter__(self) -> "AsyncPool":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncContainer:
    """A Container whose verbs are awaited (see ocirt.Container for each verb's contract)."""

    def __init__(self, container: Container) -> None:
        self.container = container  # the blocking object underneath

    def __repr__(self) -> str:
        return f"<AsyncContainer {self.id} {self.state.status.value}>"

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def state(self) -> ContainerState:
        return self.container.state

    @property
    def timings(self) -> Timings:
        return self.container.timings

    @property
    def conmon_pid(self) -> Optional[int]:
        return self.container.conmon_pid

    start = awaited(Container.start_steps)
    kill = awaited(Container.kill_steps)
    stop = awaited(Container.stop_steps)
    restart = awaited(Container.restart_steps)
    pause = awaited(Container.pause_steps)
    resume = awaited(Container.resume_steps)
    wait = awaited(Container.wait_steps)
    wait_for_status = awaited(Container.wait_for_status_steps)
    update_status = awaited(Container.update_status_steps)
    refresh = awaited(Container.refresh_steps)
    delete = awaited(Container.delete_steps)
    exec_stop = awaited(Container.exec_stop_steps)

    async def exec(self, cmd: Sequence[str], **options: Any) -> "AsyncExecSession":
        """Container.exec, awaited; `options` are its keyword arguments (see ExecOptions)."""
        if "cap_add" in options:
            options["cap_add"] = tuple(options["cap_add"])
        session = await drive(self.container.exec_steps(cmd, ExecOptions(**options)))
        return AsyncExecSession(session)

    def logs(self) -> Iterator[LogRecord]:
        """The output so far (reading a file: nothing to await)."""
        return self.container.logs()

    async def attach(self, stdin: "bytes | str | None" = None, stdout: object = None, stderr: object = None) -> None:
        """Container.attach on the loop, until the output ends: `stdin` data
        (then EOF), output to fds, binary files or functions. Detach keys
        are for a terminal's keystrokes: see the blocking Container.attach."""
        out, err, data = attach.sink(stdout), attach.sink(stderr), check_input(stdin)
        if data is not None and not self.container.stdin:
            raise InvalidState(f"container {self.id} was created without stdin: it takes no input", container_id=self.id)
        with self.container.connect(stdin=data is not None) as sock:
            await relay_async(sock, out, err, stdin=data)


class AsyncExecSession:
    """An ExecSession whose end is awaited."""

    def __init__(self, session: ExecSession) -> None:
        self.session = session

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def pid(self) -> int:
        return self.session.pid

    @property
    def exit_code(self) -> Optional[int]:
        return self.session.exit_code

    async def wait(self, timeout: Optional[float] = None) -> int:
        return await drive(self.session.wait_steps(timeout))

    def logs(self) -> Iterator[LogRecord]:
        return self.session.logs()


async def relay_async(sock: socket.socket, stdout: attach.Sink = -1, stderr: attach.Sink = -1, stdin: Optional[bytes] = None) -> None:
    """relay on the running loop, until conmon hangs up: output to `stdout`
    / `stderr` (fd writes block the loop briefly), `stdin` sent meanwhile,
    then EOF. The socket is the caller's to close."""
    loop = asyncio.get_running_loop()
    targets = {attach.STDOUT: attach.writer(stdout), attach.STDERR: attach.writer(stderr)}
    sock.setblocking(False)

    async def send(data: bytes) -> None:
        try:
            for at in range(0, len(data), attach.INPUT_PACKET):
                await loop.sock_sendall(sock, data[at : at + attach.INPUT_PACKET])
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the container's stdin is closed: no more input is taken

    sender = asyncio.ensure_future(send(stdin)) if stdin is not None else None
    try:
        while True:
            try:
                packet = await loop.sock_recv(sock, 65536)
            except OSError:
                return
            if not packet:
                return
            write = targets.get(packet[0])
            if write is not None:
                write(memoryview(packet)[1:])
    finally:
        if sender is not None:
            sender.cancel()
