"""Leak checks around every test and the whole session, and container cleanup."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Iterator, List

import pytest

import ocirt as ocirt_lib  # `ocirt` is the CLI fixture below

from .cli_support import Ocirt, reap_orphans
from .gates import Gate
from .leaks import Snapshot
from .registry import Registry, running

_session_start: List[Snapshot] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _session_start.append(Snapshot.take())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _session_start:
        return
    leaks = Snapshot.take().leaks_since(_session_start[0])
    leaks = [line for line in leaks if not line.startswith("fds:")]  # pytest's own files
    if leaks:
        print("\nLEAKED by the test session:\n  " + "\n  ".join(leaks))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves a container, conmon, cgroup or fd behind."""
    before = Snapshot.take()
    yield
    # Teardown of the test's own fixtures (cleanup of containers) ran already:
    # this fixture is set up first, so it is torn down last.
    leaks = Snapshot.take().leaks_since(before)
    if leaks:
        pytest.fail("left behind:\n  " + "\n  ".join(leaks), pytrace=False)


def force_delete_all(rt: ocirt_lib.Runtime) -> None:
    for c in list(rt.containers().values()):
        try:
            c.delete(force=True)
        except ocirt_lib.ContainerNotFound:
            pass


@pytest.fixture
def runtime(tmp_path: Any) -> Iterator[ocirt_lib.Runtime]:
    """A Runtime of the test's own; whatever the test did not delete is force-deleted."""
    rt = ocirt_lib.Runtime(tmp_path / "ocirt")
    yield rt
    force_delete_all(rt)
    rt.close()


@pytest.fixture
def make_runtime(tmp_path: Any) -> Iterator[Callable[..., ocirt_lib.Runtime]]:
    """make_runtime(**options) -> another Runtime; what it made is force-deleted at teardown."""
    made: List[ocirt_lib.Runtime] = []

    def make(**options: Any) -> ocirt_lib.Runtime:
        rt = ocirt_lib.Runtime(tmp_path / f"rt-{len(made)}", **options)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        force_delete_all(rt)
        rt.close()


@pytest.fixture
def create(runtime: ocirt_lib.Runtime, new_id: Callable[[], str]) -> Callable[..., ocirt_lib.Container]:
    """create(bundle, **kw) -> a created container with a fresh test id."""

    def make(bundle: str, cid: str = "", **kw: Any) -> ocirt_lib.Container:
        return runtime.create(cid or new_id(), bundle, **kw)

    return make


@pytest.fixture
def run(create: Callable[..., ocirt_lib.Container], make_bundle: Callable[..., str]) -> Callable[..., ocirt_lib.Container]:
    """run(*args, **bundle_opts) -> a started container running `args`."""

    def make(*args: str, **opts: Any) -> ocirt_lib.Container:
        c = create(make_bundle(*args, **opts))
        c.start()
        return c

    return make


@pytest.fixture
def ocirt(tmp_path: Any, rootfs: str) -> Iterator[Ocirt]:
    """The `ocirt` command line with a root of its own; fails a test that leaves containers."""
    cli = Ocirt(str(tmp_path / "root"))
    yield cli
    leftover = [c["Names"][0] for c in json.loads(cli.ok("ps", "-a", "--format", "json"))]
    if leftover:
        cli("rm", "-f", *leftover)
    reap_orphans()
    assert not leftover, f"test left containers: {leftover}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: Any) -> Iterator[Registry]:
    """A real registry on 127.0.0.1 (Debian's docker-registry), for the session's tests."""
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("docker-registry or skopeo is not installed (.ci/install installs them)")
    yield from running(str(tmp_path_factory.mktemp("registry")))


@pytest.fixture
def gate(tmp_path: Any) -> Gate:
    """A Gate (see gates.py) in the test's own directory."""
    return Gate(tmp_path / "gate")


@pytest.fixture
def fakes_dir() -> str:
    return os.path.join(os.path.dirname(__file__), "fakes")
