"""ocirt's pytest plugin (registered through the `pytest11` entry point).

Fixtures:

- `ocirt_runtime` (session): a Runtime with a store of its own, one per
  xdist worker, under `--ocirt-root` (default: a directory named after the
  test session's root directory, under /run/ocirt for root: see
  claims.user_base).
- `ocirt_container`: a factory, `ocirt_container(cmd, **options)`, that
  runs a container for the test (Runtime.run's options, detached) and
  returns it started.
- `ocirt_run`: `ocirt_run(cmd, **options)` runs one to its end and returns
  its RunResult (exit code, stdout, stderr, timings).

With `--ocirt-pool N`, each worker keeps a warm pool of N busybox
containers (see ocirt.pool): `ocirt_run` and `ocirt_container` calls that
give only a job's options (env, workdir, limits, stdin, timeout, check,
name, labels) take one of them, and skip the runtime's create; others are
made as without a pool.

Every container a test made is deleted at its teardown, pass or fail;
with `--ocirt-keep-failed`, those of failed tests stay (until the next
run starts) and the report says how to look at them. With `--ocirt-leak-check`, a test whose containers
left anything behind (runtime state, run files, cgroups, conmons) errors.

Each worker's root is held by a lock for the session: a root found unheld
at start belongs to a run that ended without cleaning up (Ctrl-C, a
SIGKILLed worker), and whatever it holds is removed first.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Set

import pytest

from . import claims, native
from .container import Container
from .errors import ContainerNotFound, OcirtError
from .run import RunResult
from .runtime import Runtime

if TYPE_CHECKING:
    from .pool import Pool

NODE_LABEL = "pytest.node"  # each container's test, as a label
_REPORT = pytest.StashKey[Dict[str, pytest.TestReport]]()
_KEPT = pytest.StashKey[Set[str]]()  # ids of failed tests' containers, left at the session's end


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ocirt", "containers for tests (ocirt)")
    group.addoption("--ocirt-root", default=None, help="where the tests' containers are kept (default: a temporary directory per project)")
    group.addoption("--ocirt-keep-failed", action="store_true", help="keep the containers of failed tests, and say how to inspect them")
    group.addoption("--ocirt-leak-check", action="store_true", help="fail a test whose containers leave anything behind")
    group.addoption("--ocirt-pool", type=int, default=0, metavar="N", help="keep N busybox containers created ahead for each worker's jobs")


@pytest.fixture(scope="session")
def ocirt_pool(ocirt_runtime: Runtime, pytestconfig: pytest.Config) -> "Iterator[Optional[Pool]]":
    """This worker's warm pool (--ocirt-pool N), or None."""
    size = pytestconfig.getoption("ocirt_pool")
    if size < 0:
        raise pytest.UsageError(f"ocirt: --ocirt-pool takes a number of containers from 0, not {size}")
    if not size:
        yield None
        return
    with ocirt_runtime.pool(size=size, stdin=True) as pool:
        yield pool


def _pooled(pool: "Optional[Pool]", options: Dict[str, Any]) -> "Optional[Pool]":
    """`pool`, if `options` are all a pooled job's; else None (a container of its own)."""
    if pool is None:
        return None
    from .pool import JOB_OPTIONS

    return pool if set(options) <= JOB_OPTIONS else None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORT, {})[report.when] = report
    return report


def worker_root(config: pytest.Config) -> str:
    """This worker's root: under the option's base, or one per project that
    the next run finds again and no other user can take (claims.user_base)."""
    base = config.getoption("ocirt_root") or os.path.join(
        claims.user_base(), f"pytest-{hashlib.sha256(str(config.rootpath).encode()).hexdigest()[:12]}"
    )
    return os.path.join(os.path.abspath(base), os.environ.get("PYTEST_XDIST_WORKER", "main"))


def _claim(root: str) -> "tuple[str, int]":
    try:
        return claims.claim(root)
    except OcirtError as e:
        raise pytest.UsageError(f"ocirt: {e}") from e


@pytest.fixture(scope="session")
def ocirt_runtime(pytestconfig: pytest.Config) -> Iterator[Runtime]:
    """This session's (this worker's) Runtime; what a dead run left in its root is removed first."""
    native.set_subreaper(True)  # conmon double-forks: this process reaps what it started
    root, lock = _claim(worker_root(pytestconfig))
    try:
        with Runtime.open(root) as rt:
            rt.prune(label=NODE_LABEL)  # an earlier run that ended without its teardown
            yield rt
            kept = pytestconfig.stash.get(_KEPT, set())
            for c in rt.list(label=NODE_LABEL):
                if c.id not in kept:
                    _delete(c)
    finally:
        os.close(lock)


class _Made:
    """The containers one test made, removed at its teardown."""

    def __init__(self, runtime: Runtime, request: pytest.FixtureRequest) -> None:
        self.runtime = runtime
        self.request = request
        self.ids: List[str] = []
        self.pooled: List[str] = []  # ids of pooled jobs' containers, which their pool deletes in the background

    def labels(self, extra: Optional[Dict[str, str]]) -> Dict[str, str]:
        return {**(extra or {}), NODE_LABEL: self.request.node.nodeid}

    def finish(self) -> None:
        config = self.request.config
        reports = self.request.node.stash.get(_REPORT, {})
        failed = any(r.failed for r in reports.values())
        if failed and config.getoption("ocirt_keep_failed"):
            config.stash.setdefault(_KEPT, set()).update(self.ids)
            if self.ids:
                root = self.runtime.root
                print(f"\nocirt: kept {len(self.ids)} container(s) of {self.request.node.nodeid}: "
                      f"ocirt --root {root} ps -a; ocirt --root {root} logs ID")  # fmt: skip
            return
        for cid in self.ids:
            try:
                _delete(self.runtime.get(cid))
            except ContainerNotFound:
                pass
        if config.getoption("ocirt_leak_check") and (self.ids or self.pooled):
            self.runtime.finish_deletes()  # the pooled ones' deletes, which otherwise overlap the next test
            left = {k: v for k, v in self.runtime.traces(self.ids + self.pooled).items() if v}
            if left:
                pytest.fail(f"ocirt: the test's containers left {left} behind", pytrace=False)


@pytest.fixture
def ocirt_container(
    ocirt_runtime: Runtime, ocirt_pool: "Optional[Pool]", request: pytest.FixtureRequest
) -> Iterator[Callable[..., Container]]:
    """`ocirt_container(cmd, **options)`: a started container for this test
    (Runtime.run's options), deleted at the test's end."""
    made = _Made(ocirt_runtime, request)

    def make(cmd: Sequence[str], labels: Optional[Dict[str, str]] = None, **options: Any) -> Container:
        pool = _pooled(ocirt_pool, options)
        c = ocirt_runtime.run(cmd, detach=True, labels=made.labels(labels), pool=pool, **options)
        made.ids.append(c.id)
        return c

    yield make
    made.finish()


@pytest.fixture
def ocirt_run(ocirt_runtime: Runtime, ocirt_pool: "Optional[Pool]", request: pytest.FixtureRequest) -> Iterator[Callable[..., RunResult]]:
    """`ocirt_run(cmd, **options)`: run a container to its end; its RunResult
    (exit code, stdout, stderr, timings). With remove=False it stays until
    the test's end."""
    made = _Made(ocirt_runtime, request)

    def run(cmd: Sequence[str], labels: Optional[Dict[str, str]] = None, **options: Any) -> RunResult:
        pool = _pooled(ocirt_pool, options)
        result: RunResult = ocirt_runtime.run(cmd, labels=made.labels(labels), detach=False, pool=pool, **options)
        (made.pooled if pool is not None else made.ids).append(result.container_id)
        return result

    yield run
    made.finish()


def _delete(c: Container) -> None:
    try:
        c.delete(force=True)
    except ContainerNotFound:
        pass
