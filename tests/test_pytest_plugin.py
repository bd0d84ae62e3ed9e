"""ocirt's pytest plugin, run on small test files through pytester, in a
pytest of their own (a subprocess): fixtures, cleanup pass or fail, kept
containers, the leak check, xdist workers and a run killed half way."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile

import pytest

import ocirt
from ocirt import claims

from .cli_support import reap_orphans

USES = """
def test_run(ocirt_run):
    result = ocirt_run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\\n", "err\\n")
    assert "run" in result.timings.phases()
    assert ocirt_run(["cat"], stdin=b"in\\n", memory=64 << 20).stdout == "in\\n"
    assert ocirt_run(["echo", "hi"], image="busybox").stdout == "hi\\n"  # image= as rt.run takes it

def test_container(ocirt_container):
    c = ocirt_container(["sleep", "1000"], env={"A": "1"})
    assert c.exec_run(["sh", "-c", "echo $A"])[1] == "1\\n"

def test_a_server_on_a_published_port(ocirt_container):
    import socket
    c = ocirt_container(["nc", "-ll", "-p", "80", "-e", "echo", "up"], network="bridge", publish=["80"])
    host, port = c.wait_for_port(80, timeout=30)
    with socket.create_connection((host, port), timeout=10) as s:
        assert s.makefile("rb").readline() == b"up\\n"
"""


def containers_under(root) -> list:
    """Every container still kept in any worker root under `root`."""
    found = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if os.path.isdir(path):
            with ocirt.Runtime.open(path) as rt:
                found += [(name, c.labels.get("pytest.node"), c.state.status.value) for c in rt.list()]
    return found


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "ocirt-root"
    yield path
    for name in os.listdir(path) if path.is_dir() else []:  # what a failed test of the plugin left
        if (path / name).is_dir():
            with ocirt.Runtime.open(path / name) as rt:
                for c in rt.list():
                    c.delete(force=True)
    reap_orphans()


def test_fixtures_run_and_remove_every_container(pytester, root):
    pytester.makepyfile(USES)
    result = pytester.runpytest_subprocess(f"--ocirt-root={root}", "--ocirt-leak-check", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert containers_under(root) == []


def test_a_warm_pool_serves_the_fixtures_and_goes_with_the_session(pytester, root):
    pytester.makepyfile(USES + """
def test_pooled(ocirt_run, ocirt_pool):
    assert ocirt_pool is not None
    before = ocirt_pool.stats().taken
    assert ocirt_run(["sh", "-c", "echo $A"], env={"A": "pooled"}).stdout == "pooled\\n"
    assert ocirt_pool.stats().taken == before + 1  # a job's options only: a pooled container
""")  # fmt: skip
    result = pytester.runpytest_subprocess(f"--ocirt-root={root}", "--ocirt-pool", "2", "--ocirt-leak-check", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    assert containers_under(root) == []  # the pool's ready containers too


def test_a_failed_tests_containers_are_removed_or_kept_as_asked(pytester, root):
    pytester.makepyfile("""
        def test_fails(ocirt_container):
            ocirt_container(["sleep", "1000"])
            assert False, "on purpose"
    """)  # fmt: skip
    pytester.runpytest_subprocess(f"--ocirt-root={root}").assert_outcomes(failed=1)
    assert containers_under(root) == []
    result = pytester.runpytest_subprocess(f"--ocirt-root={root}", "--ocirt-keep-failed", "-s")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*ocirt: kept 1 container(s) of test_*::test_fails: ocirt --root {root}/main ps -a*"])
    assert containers_under(root) == [("main", "test_a_failed_tests_containers_are_removed_or_kept_as_asked.py::test_fails", "running")]
    pytester.makepyfile(test_other="def test_nothing(ocirt_runtime): pass")
    pytester.runpytest_subprocess(f"--ocirt-root={root}", "test_other.py").assert_outcomes(passed=1)
    assert containers_under(root) == []  # the next run to use ocirt removed it at its start


def test_leak_check_fails_a_test_whose_containers_left_something(pytester, root):
    pytester.makepyfile("""
        import ocirt

        def test_leaks(monkeypatch, ocirt_container):  # monkeypatch set up first: undone last
            ocirt_container(["true"])
            monkeypatch.setattr(ocirt.Runtime, "traces", lambda self, ids: {"cgroups": 2, "conmons": 0})
    """)  # fmt: skip
    result = pytester.runpytest_subprocess(f"--ocirt-root={root}", "--ocirt-leak-check")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ocirt: the test's containers left {'cgroups': 2} behind*"])


def test_xdist_workers_each_have_a_root_and_leave_nothing(pytester, root):
    pytester.makepyfile("\n".join(
        f"def test_{i}(ocirt_run):\n    assert ocirt_run(['echo', '{i}']).stdout == '{i}\\n'\n" for i in range(6)
    ))  # fmt: skip
    result = pytester.runpytest_subprocess(f"--ocirt-root={root}", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    assert {n for n in os.listdir(root) if not n.endswith(".lock")} == {"gw0", "gw1"}
    assert containers_under(root) == []


def test_a_run_killed_half_way_is_cleaned_up_by_the_next(pytester, root):
    pytester.makepyfile("""
        import os, signal

        def test_killed(ocirt_container):
            ocirt_container(["sleep", "1000"])
            os.kill(os.getpid(), signal.SIGKILL)  # no teardown, no session end
    """)  # fmt: skip
    pytester.runpytest_subprocess(f"--ocirt-root={root}")
    assert [status for _, _, status in containers_under(root)] == ["running"]
    pytester.makepyfile(test_other="def test_nothing(ocirt_runtime): pass")
    pytester.runpytest_subprocess(f"--ocirt-root={root}", "test_other.py").assert_outcomes(passed=1)
    assert containers_under(root) == []


def others_can_take(path: str) -> bool:
    """Whether another user could make `path` (or an ancestor of it) before us."""
    while path != "/":
        path = os.path.dirname(path)
        if os.path.exists(path):
            st = os.stat(path)
            if st.st_uid not in (0, os.geteuid()) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return True
    return False


def test_the_default_root_is_one_no_other_user_can_take(pytester):
    digest = hashlib.sha256(str(pytester.path).encode()).hexdigest()[:12]  # the run's root directory names its base
    squatted = os.path.join(tempfile.gettempdir(), f"ocirt-pytest-{os.getuid()}-{digest}")  # a predictable /tmp path, made first
    had_base = os.path.exists(claims.ROOT_BASE)
    base = os.path.join(claims.ROOT_BASE, f"pytest-{digest}")  # root's
    os.mkdir(squatted)
    try:
        os.chown(squatted, 65534, 65534)  # by nobody
        pytester.makepyfile(USES)
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
        assert not others_can_take(base)
        assert sorted(os.listdir(base)) == ["main", "main.lock"]  # where the next run finds it
        assert containers_under(base) == []
    finally:
        os.rmdir(squatted)
        shutil.rmtree(base, ignore_errors=True)
        if not had_base:
            with contextlib.suppress(OSError):  # made by the run; kept if another has used it since
                os.rmdir(claims.ROOT_BASE)
