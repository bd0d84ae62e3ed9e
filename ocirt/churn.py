"""Many short container jobs at bounded concurrency, for test farms::

    jobs = [Job(["sh", "-c", f"echo {i}"]) for i in range(100)]
    with ocirt.Runtime("/run/ocirt") as rt:
        results = run_jobs(rt, jobs, concurrency=4)
    results[7].exit_code, results[7].stdout, results[7].timings.phases()

`ocirt.aio.run_jobs` does the same on an asyncio loop. A job's result (exit
code, output, timings) is in hand as soon as its container exits, and
`on_result` sees it then; the container is deleted in the background,
overlapping the next job. No container outlives the call: a job that fails
is removed at once, and Ctrl-C, SIGTERM (when called from the main thread)
or an error in a callback stop the other jobs and remove their containers
before the exception goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from . import layout, lifecycle, specgen
from .container import Container
from .errors import ContainerNotFound, InvalidArgument, OcirtError, Timeout, raise_terminated
from .images.config import settle
from .images.reference import BUILTIN_NAMES, parse
from .logs import LogRecord
from .options import CreateOptions
from .runtime import Runtime
from .state import Timings
from .steps import Cancelled, Steps, block
from .validate import check_timeout

if TYPE_CHECKING:
    from .pool import Pool

OnResult = Callable[["Result"], None]
log = logging.getLogger("ocirt")


@dataclass(frozen=True)
class Job:
    """One container to run to its end.

    `cmd` (an argv) on `rootfs` (a directory; default: the busybox tree
    ocirt builds once and shares, each container writing to a layer of its
    own) with `env` added to a standard environment; or on `image` (a
    reference, see Runtime.pull: pulled where it is missing, its config the
    container's, `cmd` replacing its Cmd, `env` over its Env); or a ready
    OCI `bundle`, which is left untouched (then give no cmd, env, rootfs or
    image).
    After `timeout` seconds of running the job is killed: its result has
    a Timeout error. Bad values raise InvalidArgument here, before any job runs.
    """

    cmd: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    rootfs: Optional[str] = None
    bundle: Optional[str] = None
    timeout: Optional[float] = None
    image: Optional[str] = None

    def __post_init__(self) -> None:
        if isinstance(self.cmd, (str, bytes)) or not all(isinstance(a, str) and a for a in self.cmd):
            raise InvalidArgument(f"a job's cmd is a list of non-empty strings, not {self.cmd!r}")
        if self.bundle is None and self.image is None and not self.cmd:
            raise InvalidArgument("a job needs a cmd, an image or a bundle")
        if self.bundle is not None and (self.cmd or self.env or self.rootfs or self.image):
            raise InvalidArgument("a job with a bundle runs the bundle's own process: give no cmd, env, rootfs or image")
        if self.image is not None:
            if self.rootfs is not None:
                raise InvalidArgument("a job runs on an image or a rootfs, not both")
            if self.image not in BUILTIN_NAMES:
                parse(self.image)  # ImageError for a bad reference, now
        for key, value in dict(self.env).items():
            if not isinstance(key, str) or not key or "=" in key or "\0" in key or not isinstance(value, str) or "\0" in value:
                raise InvalidArgument(f"invalid environment variable {key!r}={value!r}")
        check_timeout(self.timeout)
        object.__setattr__(self, "cmd", tuple(self.cmd))
        object.__setattr__(self, "env", dict(self.env))


@dataclass
class Result:
    """What became of job number `index` of the list given."""

    index: int
    job: Job
    container_id: str = ""
    exit_code: Optional[int] = None  # None when the job failed (see error)
    output: List[LogRecord] = field(default_factory=list)  # stdout and stderr, line by line
    timings: Timings = field(default_factory=Timings)
    error: Optional[Exception] = None  # an OcirtError or OSError: the job could not run to its end

    @property
    def ok(self) -> bool:
        """The job ran and exited 0."""
        return self.error is None and self.exit_code == 0

    @property
    def stdout(self) -> str:
        """The job's stdout, each line ended by a newline."""
        return "".join(r.text + "\n" for r in self.output if r.stream == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(r.text + "\n" for r in self.output if r.stream == "stderr")


def job_steps(
    runtime: Runtime, job: Job, result: Result, exited: Callable[[Container], None], pool: "Optional[Pool]" = None
) -> Steps[None]:
    """Run `job` to its end, filling `result`; steps (see ocirt.steps).

    With `pool` (one made for the job's image or rootfs), a job with no
    bundle takes a ready container of it. The exited container goes to
    `exited` (a background delete), or back to its pool, which deletes it.
    A job that fails is deleted here and its error put in `result`; steps
    closed early (cancelled, interrupted) delete the container before they
    end.
    """
    container: Optional[Container] = None
    taken = pool is not None and job.bundle is None
    ended = False
    try:
        if taken:
            assert pool is not None
            container, start = _taken(pool, job)
        else:
            container = yield from _created(runtime, job, result)
            start = container.start_steps
        result.container_id = container.id
        result.timings = container.timings
        yield from start()
        try:
            result.exit_code = yield from container.wait_steps(job.timeout)
        except Timeout as e:
            raise Timeout(f"job {result.index} still running after {job.timeout:g}s: killed") from e
        result.output = list(container.logs())
        ended = True
    except (OcirtError, OSError) as e:
        result.error = e
    finally:
        if container is not None and not ended:
            _delete_now(container)
        if taken and container is not None:
            assert pool is not None
            pool.finished(container, delete=ended)  # the pool's background deletes it
    if ended and not taken:
        assert container is not None
        exited(container)


def _created(runtime: Runtime, job: Job, result: Result) -> Steps[Container]:
    """The job's own container, created cold (its bundle written, unless it brought one)."""
    cid = os.urandom(16).hex()
    result.container_id = cid
    bundle, owned = job.bundle, False
    if bundle is None:
        root = runtime.root or runtime.tmp_dir
        bundle, owned = os.path.join(root, "bundles", cid), True
    with layout.making(bundle) if owned else contextlib.nullcontext():
        labels = {}
        if owned and job.image is not None:
            image = runtime.pull(job.image)  # held already, as a rule: see pull_images
            settled = settle(image, runtime.image_store.lower_dirs(image), command=job.cmd, env=job.env)
            labels = settled.labels
            specgen.write_bundle(
                bundle, settled.argv, rootfs=None, cache_dir=os.path.join(root, "rootfs"), env=settled.env,
                user=settled.user, cwd=settled.workdir or "/", **settled.bundle,
            )  # fmt: skip
        elif owned:
            specgen.write_bundle(bundle, job.cmd, rootfs=job.rootfs, cache_dir=os.path.join(root, "rootfs"), env=job.env)
        try:
            options = CreateOptions(name=cid[:12], owned_bundle=owned, labels=labels)
            return (yield from runtime._create_steps(cid, bundle, options))
        except BaseException:
            if owned:
                shutil.rmtree(bundle, ignore_errors=True)
            raise


def _taken(pool: "Pool", job: Job) -> "tuple[Container, Callable[[], Steps[None]]]":
    """A container of `pool` made the job's, and the steps that start it and send the rest of the job."""
    container, sock, rest = pool.take(pool.job(job.cmd, env=job.env))

    def start() -> Steps[None]:
        try:
            yield from lifecycle.start(container, await_exec=False)  # the stub needs no wait
            rest()
        finally:
            sock.close()

    return container, start


PoolKey = Tuple[Optional[str], Optional[str]]  # (image, rootfs): what a pool for a job is made on


def pool_key(job: Job) -> Optional[PoolKey]:
    """The key of the pool `job` can run in; None for a job with a bundle (it runs its own)."""
    return None if job.bundle is not None else (job.image, job.rootfs)


def make_pool(runtime: Runtime, key: PoolKey, size: int) -> "Pool":
    """A pool of `size` on the image or rootfs `key` names (see pool_key)."""
    image, rootfs = key
    return runtime.pool(size, **{k: v for k, v in (("image", image), ("rootfs", rootfs)) if v is not None})


@contextlib.contextmanager
def _pools(runtime: Runtime, jobs: Sequence[Job], size: int) -> "Iterator[Dict[PoolKey, Pool]]":
    """With `size`, a pool of that size for each key (see pool_key) of
    `jobs`, closed on leaving; none without."""
    pools: "Dict[PoolKey, Pool]" = {}
    try:
        for key in dict.fromkeys(pool_key(job) for job in jobs) if size else ():
            if key is not None:
                pools[key] = make_pool(runtime, key, size)
        yield pools
    finally:
        for pool in pools.values():
            pool.close()


def pull_images(runtime: Runtime, jobs: Sequence[Job]) -> None:
    """Pull the images `jobs` name that `runtime` lacks, each once, before any job runs."""
    for ref in dict.fromkeys(job.image for job in jobs if job.image is not None):
        runtime.pull(ref)


def _delete_now(container: Container) -> None:
    """Force-delete a job's container, blocking (steps may be closing: no waiting as steps)."""
    try:
        container.delete(force=True)
    except ContainerNotFound:
        pass
    except (OcirtError, OSError) as e:
        log.warning("cannot delete the container %s of a failed job: %s", container.id, e)


def run_jobs(
    runtime: Runtime, jobs: Iterable[Job], concurrency: int = 4, on_result: Optional[OnResult] = None, pool: bool = False
) -> List[Result]:
    """Run `jobs`, at most `concurrency` at once, from threads; their results in the order given.

    `on_result(result)` is called from a worker thread as each result is in
    hand (before the container's delete). With `pool`, jobs without a
    bundle take ready containers of a warm pool (see Runtime.pool) of
    `concurrency` per image or rootfs, closed before this returns. Returns
    once every container is deleted; an OcirtError then if a background
    delete failed.
    """
    jobs, results = _check(jobs, concurrency)
    pull_images(runtime, jobs)
    with _pools(runtime, jobs, concurrency if pool else 0) as pools:
        return _run_threads(runtime, jobs, results, concurrency, on_result, pools)


def _run_threads(
    runtime: Runtime, jobs: List[Job], results: List[Result], concurrency: int, on_result: Optional[OnResult], pools: "Mapping[Any, Pool]"
) -> List[Result]:
    cancel_r, cancel_w = os.pipe2(os.O_CLOEXEC)
    claim = iter(range(len(jobs)))
    claim_lock = threading.Lock()
    aborts: List[BaseException] = []

    def abort(error: BaseException) -> None:
        with claim_lock:
            aborts.append(error)
            if len(aborts) == 1:
                os.write(cancel_w, b"!")

    workers = _Workers()

    def work() -> None:
        try:
            while True:
                with claim_lock:
                    i = None if aborts else next(claim, None)
                if i is None:
                    return
                pool = pools.get(pool_key(jobs[i]))
                block(job_steps(runtime, jobs[i], results[i], runtime.delete_later, pool), cancel=cancel_r)
                if on_result is not None:
                    on_result(results[i])
        except Cancelled:
            pass
        except BaseException as e:  # noqa: B036  (a callback's error, or a bug: stop all, then raise it)
            abort(e)
        finally:
            workers.done()

    with _terminated_raises():
        try:
            workers.start(work, min(concurrency, len(jobs)))
            workers.wait()
        except BaseException as e:  # Ctrl-C, SIGTERM: stop every job, remove every container
            abort(e)
            workers.wait(through_interrupts=True)
        finally:
            os.close(cancel_r)
            os.close(cancel_w)
        if aborts:
            try:
                runtime.finish_deletes()
            except OcirtError as e:
                log.warning("%s", e)  # the error that stopped the jobs goes on
            raise aborts[0]
    runtime.finish_deletes()
    return results


def _check(jobs: Iterable[Job], concurrency: int) -> "tuple[List[Job], List[Result]]":
    jobs = list(jobs)
    for job in jobs:
        if not isinstance(job, Job):
            raise InvalidArgument(f"run_jobs takes Job objects, not {job!r}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgument(f"concurrency must be a whole number of at least 1, not {concurrency!r}")
    return jobs, [Result(i, job) for i, job in enumerate(jobs)]


class _Workers:
    """Worker threads, counted by themselves: a Thread.join() that Ctrl-C
    interrupts may report a thread gone that still runs (before Python 3.13)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0

    def start(self, target: Callable[[], None], count: int) -> None:
        for n in range(count):
            with self._cond:
                self._running += 1
            try:
                threading.Thread(target=target, name=f"ocirt-job-{n}").start()
            except BaseException:
                self.done()
                raise

    def done(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def wait(self, through_interrupts: bool = False) -> None:
        """Until every worker has returned; with `through_interrupts`, even
        through another Ctrl-C (they are removing containers)."""
        while True:
            try:
                with self._cond:
                    while self._running:
                        self._cond.wait()
                return
            except KeyboardInterrupt:
                if not through_interrupts:
                    raise


class _terminated_raises:
    """In the main thread with SIGTERM at its default, SIGTERM raises Terminated meanwhile
    (so that the containers are removed before the process ends)."""

    def __enter__(self) -> None:
        self._old: Any = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._old = signal.signal(signal.SIGTERM, raise_terminated)

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
