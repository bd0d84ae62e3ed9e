"""A warm pool: containers created ahead of their jobs (see Runtime.pool).

runc's create (about 30 ms here) is the floor of every job that waits for
it, yet it does not depend on the command: a pooled container's process is
ocirt's stub (csrc/stub/stub.c), bind-mounted read-only at STUB_TARGET,
which after the start reads its job (argv, env, working directory) from fd
3 and execs it. That fd is one end of a socket pair, handed through conmon
to the runtime as a socket-activation fd. A job is then its start, its
bytes and its wait: a few milliseconds.

What a container is made with is the pool's (its key): the image or root
filesystem, user, capabilities, mounts, network, read-only root, hostname,
ulimits, tmpfs, log size, and whether jobs send stdin. What a job brings:
its command, env, working directory, cgroup limits (written before the
start), stdin data, timeout (timed here: conmon's own timer counts from the
create), name and labels. Each container runs one job and is deleted off
the job's path; the pool refills in the background, one create per core at
most, and a job that finds it empty creates its container cold rather than
wait. A job's replacement starts once the job has ended (or QUIET after
it was taken, if it runs longer), and the pool's thread, not the job's,
starts the thread that deletes it: a create beside a job takes the
interpreter from it for up to its switch interval at each step, and a core
from its processes. A ready container's mount namespace is held (see
Monitor.hold_mounts) so that its mounts are torn down by its delete, not
on its job's way out. A pooled container carries OWNER_LABEL until a job takes it: one
whose owner process is gone is removed when a Runtime.open recovers the store.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from . import layout, lifecycle, process, specgen
from .cgroups.limits import Limits, reset_peak
from .container import Container
from .errors import ContainerError, ContainerNotFound, InvalidArgument, InvalidState, OcirtError
from .images.config import ImageConfig
from .layout import read_small, write_private
from .run import RunResult, drive
from .spec import POOL_OWNER_LABEL as OWNER_LABEL, home_of, parse_user
from .state import ContainerStatus
from .steps import block
from .validate import check_argv, check_env, check_input, check_labels, check_name, check_text, check_timeout

if TYPE_CHECKING:
    from .runtime import Runtime

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ocirt-stub")
STUB_TARGET = "/dev/.ocirt-stub"  # on the container's own /dev: nothing is made in its root filesystem
JOB_MAX = 4 << 20  # the stub's own bound (csrc/stub/stub.c)
AT_CREATE = frozenset(
    ("image", "rootfs", "user", "cap_add", "cap_drop", "mounts", "network", "publish", "read_only", "hostname", "ulimits", "tmpfs",
     "log_size_max", "stdin")
)
PER_JOB = frozenset(("cmd", "env", "workdir", "limits", "timeout", "check", "name", "labels"))
QUIET = 0.1  # seconds a job's replacement waits for the job to end (see Pool.finished)
JOB_OPTIONS = frozenset(("env", "workdir", "limits", "stdin", "timeout", "check", "name", "labels"))  # Pool.run's keywords

log = logging.getLogger("ocirt")


@dataclass(frozen=True)
class Job:
    """A job, checked (see Recipe.job): what the stub execs, and what ocirt does around it."""

    argv: List[str]
    env: List[str]  # "K=V"
    cwd: str
    data: Optional[bytes]  # stdin
    limit: Optional[float]  # seconds it may run
    name: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    limits: Optional[Limits] = None

    def encoded(self) -> bytes:
        """The job as the stub reads it (csrc/stub/stub.c)."""
        fields = [*(a.encode() + b"\0" for a in self.argv), b"\0", *(e.encode() + b"\0" for e in self.env), b"\0", self.cwd.encode() + b"\0"]
        payload = b"".join(fields)
        return struct.pack("<I", len(payload)) + payload


@dataclass(frozen=True)
class PoolStats:
    """How a pool has done: containers `ready` now, `taken` by jobs, `made`
    (in the background, and cold for jobs that found none), and how many
    jobs `fell_back` to a cold create."""

    ready: int
    taken: int
    made: int
    fell_back: int


def check_size(size: object) -> int:
    """`size`, a pool's: InvalidArgument unless it is a positive whole number."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgument(f"a pool's size is a positive whole number, not {size!r}")
    return size


class Recipe:
    """What a pool's containers are made from (`options`: the AT_CREATE
    keywords, checked here, an image pulled as `pull` says), and how a job
    is checked and given to one of them."""

    def __init__(self, runtime: "Runtime", options: Mapping[str, Any], pull: str = "missing") -> None:
        for key in options:
            if key in PER_JOB:
                raise InvalidArgument(f"{key} is a job's (give it to Pool.run or Pool.start), not the pool's")
            if key not in AT_CREATE:
                raise InvalidArgument(f"a pool takes no option {key!r} (it takes {', '.join(sorted(AT_CREATE))})")
        if not os.access(STUB, os.X_OK):
            raise OcirtError(f"the pool's stub {STUB} is missing: ocirt was installed without it")
        options = dict(options)
        self._rt = runtime
        self.stdin = options.pop("stdin", False)
        if not isinstance(self.stdin, bool):
            raise InvalidArgument(f"a pool's stdin is True (its jobs may send stdin) or False, not {self.stdin!r}")
        self._log_size_max = options.pop("log_size_max", None)
        spec_network, self._bridge = specgen.network_mode(options.pop("network", None))
        self._publish = tuple(options.pop("publish", ()))
        options["network"] = spec_network
        self._files_root = runtime.root or runtime.tmp_dir
        self._bundle_options, self._config, self._env, self._workdir, self._labels = self._made_from(options, pull)

    def _made_from(self, options: Dict[str, Any], pull: str) -> Tuple[Dict[str, Any], Optional[ImageConfig], Dict[str, str], str, Dict[str, str]]:
        """(write_bundle's options, the image's config, the base env, the default workdir, labels) of `options`."""
        image, rootfs, user = options.pop("image", None), options.pop("rootfs", None), options.get("user")
        env = dict(item.split("=", 1) for item in specgen.DEFAULT_ENV)
        config: Optional[ImageConfig] = None
        workdir, labels, lowers = "/", {}, []
        if image is not None:
            if rootfs is not None:
                raise InvalidArgument("a pool runs on an image or a rootfs, not both")
            from .images.config import settle

            pulled = self._rt.pull(image, policy=pull)
            lowers = self._rt.image_store.lower_dirs(pulled)
            config = pulled.config
            settled = settle(pulled, lowers, command=["-"], user=user)  # the command is each job's
            env.update(settled.env)
            workdir, labels, user = settled.workdir or "/", settled.labels, settled.user
            options = dict(options, **settled.bundle)
        accounts: Any = rootfs
        if image is not None and lowers:
            accounts = tuple(lowers)
        elif rootfs is None:  # the busybox tree, also the built-in image's
            from .rootfs import busybox_rootfs

            accounts = busybox_rootfs(os.path.join(self._files_root, "rootfs"))
        uid = parse_user(check_text(user, "user"), accounts)["uid"] if user is not None else 0
        env["HOME"] = home_of(uid, accounts)  # runc's HOME is the pool's: each job gets its own from its env
        mounts = [*options.pop("mounts", ()), (STUB, STUB_TARGET, "ro")]
        return dict(options, rootfs=rootfs, user=user, mounts=mounts), config, env, workdir, labels

    def make(self, channel: socket.socket, labels: Mapping[str, str], before: Optional[Callable[[str], None]] = None) -> Container:
        """A new container, created, its process the stub, which finds its job
        on `channel` (passed as its fd 3); labelled with `labels` besides the
        image's. `before(bundle)` runs once its bundle is written, before the
        create (what it makes there goes with the bundle)."""
        cid = os.urandom(32).hex()
        bundle = self.bundle_of(cid)
        with layout.making(bundle):
            specgen.write_bundle(bundle, [STUB_TARGET], cache_dir=os.path.join(self._files_root, "rootfs"), **self._bundle_options)
            try:
                if before is not None:
                    before(bundle)
                return self._rt.create(
                    cid, bundle, name=cid[:12], owned_bundle=True, listen_fds=(channel.fileno(),), stdin=self.stdin,
                    labels={**self._labels, **labels}, log_size_max=self._log_size_max, network=self._bridge, publish=self._publish,
                )  # fmt: skip
            except BaseException:
                shutil.rmtree(bundle, ignore_errors=True)
                raise

    def bundle_of(self, cid: str) -> str:
        """The bundle directory a container `cid` of this recipe is made in."""
        return os.path.join(self._files_root, "bundles", cid)

    def job(
        self, cmd: Sequence[str], env: Optional[Mapping[str, str]], workdir: Optional[str], stdin: "bytes | str | None",
        timeout: Optional[float], limits: Optional[Limits], name: Optional[str], labels: Optional[Mapping[str, str]],
    ) -> "Job":  # fmt: skip
        """The job, checked: InvalidArgument for bad input."""
        argv = list(check_argv(cmd, "cmd", empty_ok=self._config is not None))
        if self._config is not None:  # as podman: a command replaces the image's Cmd, after its Entrypoint
            argv = self._config.args(argv or None)
        variables = {**self._env, **check_env(env)}
        cwd = check_text(workdir, "workdir") if workdir is not None else self._workdir
        if not cwd.startswith("/"):
            raise InvalidArgument(f"workdir must be absolute, not {cwd!r}")
        data = check_input(stdin)
        if data is not None and not self.stdin:
            raise InvalidArgument("stdin data needs a pool made with stdin=True")
        if limits is not None and not isinstance(limits, Limits):
            raise InvalidArgument(f"limits must be an ocirt.Limits, not {type(limits).__name__}")
        if name is not None:
            check_name(name)
        check_labels(labels)
        job = Job(argv, [f"{k}={v}" for k, v in variables.items()], cwd, data, check_timeout(timeout), name, dict(labels or {}), limits)
        size = len(job.encoded()) - 4
        if size > JOB_MAX:
            raise InvalidArgument(f"the job is {size} bytes (argv, env and workdir): a pooled container takes at most {JOB_MAX}")
        return job

    @staticmethod
    def assign(c: Container, job: "Job", dropped: Sequence[str], publish: bool = True) -> None:
        """Make a taken container the job's: its process (what exec and inspect
        start from), name and labels recorded (the `dropped` labels, the
        pool's own, taken away), its limits written; deleted on failure.
        Without `publish`, the caller publishes the process (see publish)."""
        try:
            with c._record.locked():
                c.spec = dict(c.spec, process=dict(c.spec["process"], args=job.argv, env=job.env, cwd=job.cwd))
                c.name = job.name if job.name is not None else c.name
                c.labels = {**{k: v for k, v in c.labels.items() if k not in dropped}, **job.labels}
                if publish:
                    Recipe.publish(c)
            if job.limits is not None:
                c.update(job.limits)
            reset_peak(c._container_cgroup("reset the memory peak of"))
        except BaseException:
            delete_quietly(c)
            raise

    @staticmethod
    def publish(c: Container) -> None:
        """Write a taken container's process (see assign) where other processes
        read it (its config.json)."""
        config = json.loads(read_small(c._files.config, 1 << 24))
        process = {key: c.spec["process"][key] for key in ("args", "env", "cwd")}
        write_private(c._files.config, json.dumps(dict(config, process=dict(config["process"], **process))).encode())


class Pool:
    """Created containers kept ready for one job each; a context manager
    (`close()` on leaving). Make one with Runtime.pool."""

    def __init__(self, runtime: "Runtime", size: int, **options: Any) -> None:
        check_size(size)
        self._rt = runtime
        self._size = size
        self._recipe = Recipe(runtime, options)
        self._owner = f"{os.getpid()}:{process.start_time(os.getpid())}"
        self._ready: Deque[Tuple[Container, socket.socket]] = collections.deque()
        self._due: Dict[str, float] = {}  # a taken container's id: when its replacement may start (see finished)
        self._deletes_queued = False  # finished jobs' containers wait for a worker to start the runtime's delete thread
        self._cond = threading.Condition()
        self._closed = False
        self._making = self._taken = self._made = self._fell_back = 0
        self._workers: List[threading.Thread] = []
        try:
            self._ready.append(self._make())  # the first one now: a pool that cannot make one says why here
            self._made = 1
            self._workers = [threading.Thread(target=self._refill, name="ocirt-pool", daemon=True) for _ in range(min(size, os.cpu_count() or 1))]
            for worker in self._workers:
                worker.start()
        except BaseException:  # a Ctrl-C among these, too: nobody else would delete what is made
            self.close()
            raise

    # -- jobs -------------------------------------------------------------------

    def run(
        self,
        cmd: Sequence[str] = (),
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        limits: Optional[Limits] = None,
        stdin: "bytes | str | None" = None,
        timeout: Optional[float] = None,
        check: bool = False,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> RunResult:
        """Run `cmd` (with an image: after its Entrypoint, in place of its Cmd) in a ready container and
        return its RunResult, exactly as Runtime.run does; the container is
        deleted in the background. `env` goes over the pool's (the image's
        Env, HOME of the pool's user), `limits` are written before the
        start, `stdin` (data) needs a pool made with stdin=True. Bad input
        raises InvalidArgument before a container is taken; InvalidState
        once the pool is closed."""
        job = self._recipe.job(cmd, env, workdir, stdin, timeout, limits, name, labels)
        c, sock, rest = self.take(job)
        ended = False
        try:
            start = lambda: block(lifecycle.start(c, await_exec=False))  # noqa: E731  (the stub needs no wait: only a timeout's SIGKILL follows)
            result = drive(c, self._rt.dirs.sockets, job.data, job.limit, started=rest, start=start)
            ended = True
        finally:
            sock.close()
            self.finished(c, delete=ended)  # (on a failure, drive deleted it)
        assert isinstance(result, RunResult)
        if check and result.exit_code != 0:
            raise ContainerError(c.id, result.exit_code, result.stderr)
        return result

    def start(
        self,
        cmd: Sequence[str] = (),
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        limits: Optional[Limits] = None,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Container:
        """Start `cmd` in a ready container and return it, running (`with`
        deletes it); see run."""
        job = self._recipe.job(cmd, env, workdir, None, None, limits, name, labels)
        c, sock, rest = self.take(job)
        try:
            started = drive(c, self._rt.dirs.sockets, None, None, detach=True, started=rest)
        finally:
            sock.close()
            self.finished(c, delete=False)  # the caller's now
        assert isinstance(started, Container)
        return started

    def job(
        self,
        cmd: Sequence[str] = (),
        *,
        env: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        limits: Optional[Limits] = None,
        stdin: "bytes | str | None" = None,
        timeout: Optional[float] = None,
        name: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Job:
        """The job, checked as run checks it (InvalidArgument), for take."""
        return self._recipe.job(cmd, env, workdir, stdin, timeout, limits, name, labels)

    def take(self, job: Job) -> Tuple[Container, socket.socket, Callable[[], None]]:
        """A container made `job`'s (ready, or created cold when none is), the
        socket its job goes on, and the call to make once the container is
        started: it sends the rest of the job (see send_ahead) and publishes
        the job's process (see Recipe.publish). Close the socket on every
        way out, and call finished once the job has ended. InvalidState
        once the pool is closed."""
        c, sock = self._take()
        try:
            Recipe.assign(c, job, (OWNER_LABEL,), publish=False)
            send_rest = send_ahead(sock, job.encoded())
        except BaseException:
            sock.close()
            self.finished(c, delete=False)  # (assign deleted it)
            raise

        def started() -> None:
            send_rest()
            Recipe.publish(c)  # while the job runs: a write less before its start

        return c, sock, started

    def finished(self, c: Container, delete: bool = True) -> None:
        """The job `take` gave `c` has ended (or runs on as the caller's): its
        replacement starts now rather than QUIET after the take, the mount
        namespace the pool held goes, and with `delete` `c` is deleted in
        the background (see Runtime.delete_later). Never waits."""
        if delete:
            self._rt._deleter.submit(c, start=False)  # queued: finish_deletes waits for it from now
        else:
            c._monitor.drop_mounts()  # here: the caller may delete `c` next (a delete drops them itself)
        with self._cond:
            if c.id in self._due:
                self._due[c.id] = 0.0
            by_worker = delete and not self._closed and bool(self._workers)
            self._deletes_queued = self._deletes_queued or by_worker
            self._cond.notify_all()
        if delete and not by_worker:
            self._rt._deleter.kick()

    def _take(self) -> Tuple[Container, socket.socket]:
        with self._cond:
            if self._closed:
                raise InvalidState("the pool is closed")
            self._taken += 1
            if self._ready:
                c, sock = self._ready.popleft()
                self._due[c.id] = time.monotonic() + QUIET
                self._cond.notify_all()  # a worker times the refill
                return c, sock
            self._fell_back += 1
            self._made += 1
        return self._make()  # cold, rather than wait for the background

    # -- the containers ---------------------------------------------------------

    def _make(self) -> Tuple[Container, socket.socket]:
        """A new pooled container, created, its process the stub, its mounts
        held; and our end of its job socket."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            c = self._recipe.make(theirs, {OWNER_LABEL: self._owner})
            c._monitor.hold_mounts()
            return c, ours
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()

    def _next_work(self) -> str:
        """Under the lock: wait until there is work: "delete" (start the
        runtime's delete thread), "make", or "closed"."""
        while not self._closed:
            if self._deletes_queued:
                self._deletes_queued = False
                return "delete"
            wanted = self._size - len(self._ready) - self._making
            if wanted > 0:
                now = time.monotonic()
                if wanted > len(self._due):  # not a taken one's replacement: the first fill, or after a failed create
                    return "make"
                cid, due = min(self._due.items(), key=lambda item: item[1])
                if due <= now:
                    del self._due[cid]
                    return "make"
                self._cond.wait(due - now)
            else:
                self._cond.wait()
        return "closed"

    def _refill(self) -> None:
        """Keep `size` containers ready (or being made), and start the deletes
        of finished jobs' containers, until closed. A create that fails
        stops this worker (logged): jobs then create cold, and see the error
        themselves."""
        while True:
            with self._cond:
                work = self._next_work()
                if work == "closed":
                    return
                if work == "make":
                    self._making += 1
            if work == "delete":
                self._rt._deleter.kick()
                continue
            try:
                made = self._make()
            except (OcirtError, OSError) as e:
                log.warning("the pool cannot make a container: %s (jobs create theirs cold)", e)
                with self._cond:
                    self._making -= 1
                    self._workers.remove(threading.current_thread())
                    self._cond.notify_all()
                return
            with self._cond:
                self._making -= 1
                self._made += 1
                if not self._closed:
                    self._ready.append(made)
                    self._cond.notify_all()  # for wait_ready
                    continue
            made[1].close()
            delete_quietly(made[0])

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait until `size` containers are ready (or the pool is closed, or
        its background gave up making them); whether they are, after at most
        `timeout` seconds (None: no limit)."""
        limit = check_timeout(timeout)
        with self._cond:
            self._cond.wait_for(lambda: self._closed or len(self._ready) >= self._size or not self._workers, limit)
            return len(self._ready) >= self._size

    def stats(self) -> PoolStats:
        with self._cond:
            return PoolStats(len(self._ready), self._taken, self._made, self._fell_back)

    def close(self) -> None:
        """Stop refilling and delete every ready container (jobs' containers
        are theirs: see run and start). Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            workers = list(self._workers)
        for worker in workers:
            if worker.ident is not None:  # started (an interrupted __init__ may not have started them all)
                worker.join()
        self._rt._deleter.kick()  # finished jobs' containers no worker started the delete of
        while self._ready:
            c, sock = self._ready.popleft()
            sock.close()
            delete_quietly(c)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def orphaned(c: Container) -> bool:
    """Whether `c` is a pooled container, never given a job, whose pool's process is gone."""
    owner = c.labels.get(OWNER_LABEL)
    if owner is None or c.state.status is not ContainerStatus.CREATED:
        return False
    pid, _, started = owner.partition(":")
    try:
        return process.start_time(int(pid)) != int(started)
    except ValueError:
        return True  # not ours to keep: a label nobody could have made


def send_ahead(sock: socket.socket, job: bytes) -> Callable[[], None]:
    """Put what of `job` the socket's buffer takes now, before the start (the
    stub finds it there as it runs); the rest goes by the returned call,
    made once the container is started (the stub reads as it comes)."""
    sock.setblocking(False)
    try:
        sent = sock.send(job)
    except BlockingIOError:
        sent = 0
    finally:
        sock.setblocking(True)

    def rest() -> None:
        try:
            sock.sendall(job[sent:])
        except OSError as e:  # the stub is gone (the container was killed): its exit says the rest
            log.debug("the job did not reach its container: %s", e)
        finally:
            sock.close()

    return rest


def delete_quietly(c: Container) -> None:
    """Delete `c`, whatever its state; a failure is logged, never raised."""
    try:
        c.delete(force=True)
    except ContainerNotFound:
        pass
    except (OcirtError, OSError) as e:
        log.warning("cannot delete the pooled container %s: %s", c.id, e)
