"""Container jobs across machines on dask.distributed (the `ocirt[dask]` extra)::

    from distributed import Client
    from ocirt.churn import Job
    from ocirt.dask import OcirtPlugin, map_jobs

    client = Client("tcp://scheduler:8786")
    client.register_plugin(OcirtPlugin())
    for result in map_jobs(client, [Job(["sh", "-c", f"echo {i}"]) for i in range(100)]):
        print(result.index, result.host, result.exit_code, result.stdout)

Each host runs `dask worker --resources ocirt=K tcp://scheduler:8786`: a
job asks for one unit of the `ocirt` resource, so a host runs at most K
containers at once.

`OcirtPlugin` gives every worker a Runtime of its own, in a root under
`base` (a directory on the worker's host) claimed with a lock for the
worker's life. A worker that dies (SIGKILL, a crash) leaves its root
unclaimed: the next worker to start on that host removes every container
in it, running or not, before it takes jobs. At the worker's close, its
containers are removed.

`map_jobs` submits jobs and yields their results as they complete; a job
that raised, or whose worker died more often than Dask allows, comes back
with `error` set, never lost.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional

from distributed import Client, WorkerPlugin, as_completed, get_worker

from . import claims, native
from .churn import Job, PoolKey, Result, job_steps, make_pool, pool_key
from .errors import ContainerNotFound, OcirtError
from .pool import Pool, check_size
from .runtime import Runtime
from .steps import block

PLUGIN_NAME = "ocirt"
RESOURCE = "ocirt"  # the worker resource one job takes
log = logging.getLogger("ocirt")


@dataclass(frozen=True)
class JobResult:
    """What became of job number `index`, and where it ran."""

    index: int
    exit_code: Optional[int] = None  # None when the job failed (see error)
    stdout: str = ""
    stderr: str = ""
    timings: Dict[str, float] = field(default_factory=dict)  # seconds per phase (Timings.phases)
    host: str = ""  # the worker's host name; "" when the job never reported
    worker: str = ""  # the worker's address
    container_id: str = ""
    error: Optional[str] = None  # why the job did not run to its end: "ErrorType: message"

    @property
    def ok(self) -> bool:
        """The job ran and exited 0."""
        return self.error is None and self.exit_code == 0


def default_base() -> str:
    """Where workers keep their roots unless told: one directory per user that
    no other user can take (/run/ocirt/dask for root: see claims.user_base)."""
    return os.path.join(claims.user_base(), "dask")


class OcirtPlugin(WorkerPlugin):
    """A Runtime for each Dask worker (see the module's docstring).

    `base` is the directory on each worker's host under which the roots
    go (default: default_base()); `runtime_options` go to Runtime.open.
    With `pool` N, each worker keeps a warm pool (see Runtime.pool) of N
    for each image or rootfs its jobs run on, made with the first such job.
    """

    name = PLUGIN_NAME

    def __init__(self, base: Optional[str] = None, pool: int = 0, **runtime_options: Any) -> None:
        if pool:
            check_size(pool)
        self.base = base
        self.pool = pool
        self.runtime_options = runtime_options
        self.runtime: Optional[Runtime] = None
        self.root = ""
        self._lock = -1
        self._address = ""

    def setup(self, worker: Any) -> None:
        self._pools: Dict[PoolKey, Pool] = {}  # made here, on the worker: the plugin is pickled to reach it
        self._pools_lock = threading.Lock()
        native.set_subreaper(True)  # conmon double-forks: the worker reaps what it started
        base = os.path.abspath(self.base or default_base())
        for root, lock in claims.unclaimed(base):  # dead workers' roots on this host
            try:
                _empty(root, self.runtime_options)
            finally:
                os.close(lock)
        self.root, self._lock = claims.claim(os.path.join(base, "worker"))
        try:
            _empty(self.root, self.runtime_options)
            self.runtime = Runtime.open(self.root, **self.runtime_options)
        except BaseException:
            os.close(self._lock)
            raise
        self._address = str(getattr(worker, "address", ""))

    def teardown(self, worker: Any) -> None:
        try:
            if self.runtime is not None:
                try:
                    for pool in self._pools.values():
                        pool.close()
                    emptied = _delete_all(self.runtime)
                finally:
                    self.runtime.close()
                    self.runtime = None
                if emptied:
                    shutil.rmtree(self.root, ignore_errors=True)
        finally:
            if self._lock >= 0:
                os.close(self._lock)
                self._lock = -1

    def run(self, index: int, job: Job) -> JobResult:
        """Run `job` (number `index` of its list) to its end on this worker."""
        if self.runtime is None:
            raise OcirtError("the ocirt worker plugin is not set up on this worker")
        result = Result(index, job)
        try:
            pool = self._pool_for(job)
        except (OcirtError, OSError) as e:
            result.error = e
        else:
            block(job_steps(self.runtime, job, result, self.runtime.delete_later, pool))
        return JobResult(
            index=index,
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            timings=result.timings.phases(),
            host=socket.gethostname(),
            worker=self._address,
            container_id=result.container_id,
            error=None if result.error is None else _describe(result.error),
        )


    def _pool_for(self, job: Job) -> Optional[Pool]:
        """The worker's pool for `job`, made now if it is the first of its kind; None without pools."""
        key = pool_key(job)
        if not self.pool or key is None:
            return None
        with self._pools_lock:
            if key not in self._pools:
                assert self.runtime is not None
                self._pools[key] = make_pool(self.runtime, key, self.pool)
            return self._pools[key]


def run_job(index: int, job: Job) -> JobResult:
    """The task each job is: run on a worker that has OcirtPlugin."""
    plugin = get_worker().plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, OcirtPlugin):
        raise OcirtError("this Dask worker has no ocirt plugin: call client.register_plugin(OcirtPlugin()) first")
    return plugin.run(index, job)


def map_jobs(
    client: Client,
    jobs: Iterable[Job],
    *,
    resources: Optional[Mapping[str, float]] = None,
    retries: int = 0,
) -> Iterator[JobResult]:
    """Submit each of `jobs` to `client`'s cluster and yield its JobResult as
    it completes (not in order: see `index`).

    Each job takes `resources` (default: one unit of "ocirt") on its worker.
    A job whose task raised, or whose worker died more often than the
    scheduler's allowed-failures (then Dask gives up with KilledWorker), is
    yielded with `error` set; `retries` lets Dask try a raising task again.
    Leaving the loop early cancels the jobs not yet done.
    """
    jobs = list(jobs)
    for job in jobs:
        if not isinstance(job, Job):
            raise OcirtError(f"map_jobs takes ocirt.churn.Job objects, not {job!r}")
    wanted = dict(resources) if resources is not None else {RESOURCE: 1}
    futures = {
        client.submit(run_job, i, job, resources=wanted, pure=False, retries=retries, key=f"ocirt-job-{os.urandom(8).hex()}-{i}"): i
        for i, job in enumerate(jobs)
    }
    done = as_completed(futures)
    try:
        for future in done:
            if future.status == "finished":
                yield future.result()
            else:
                yield JobResult(index=futures[future], error=_describe(future.exception()))
    finally:
        client.cancel([f for f in futures if not f.done()])


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _empty(root: str, options: Mapping[str, Any]) -> None:
    """Remove every container kept in `root` (a dead worker's), then the root.

    A container that cannot be deleted keeps the root: its record is what
    lets the next worker (or a person with `ocirt --root`) remove it later.
    """
    if os.path.exists(os.path.join(root, "state.db")):
        with Runtime.open(root, **options) as rt:
            if not _delete_all(rt):
                return
    shutil.rmtree(root, ignore_errors=True)


def _delete_all(rt: Runtime) -> bool:
    """Delete every container of `rt`; True when none is left."""
    try:
        rt.finish_deletes()
    except OcirtError as e:
        log.warning("%s", e)  # each is tried again below
    emptied = True
    for c in rt.list():
        try:
            c.delete(force=True)
        except ContainerNotFound:
            pass
        except OcirtError as e:
            log.warning("cannot remove container %s of %s (its root is kept): %s", c.id, rt.root, e)
            emptied = False
    return emptied
