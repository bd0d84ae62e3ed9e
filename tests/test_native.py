"""The C helpers through their Cython binding, including the fallback paths."""

from __future__ import annotations

import errno
import fcntl
import inspect
import os
import resource
import select
import signal
import subprocess
import sys
import threading

import pytest

from ocirt import native
from ocirt.cgroups import hierarchies

from .observe import inotify_watching, pidfd_open_on, spawn_with_pid, until

_native = native  # swapped for each backend by the fixture below


@pytest.fixture(autouse=True, params=sorted(native.BACKENDS))
def backend(request, monkeypatch):
    """Every test here runs on both backends (the same C under Cython and cffi)."""
    monkeypatch.setattr(sys.modules[__name__], "_native", native.load(request.param))
    return request.param


def test_both_backends_agree_on_values_and_signatures():
    cython, cffi = (native.load(name) for name in ("cython", "cffi"))
    for name in native.PUBLIC:
        a, b = getattr(cython, name), getattr(cffi, name)
        if callable(a):
            assert _params(a) == _params(b), name
        else:
            assert a == b, name
    with pytest.raises(ImportError, match="unknown OCIRT_BACKEND 'nope'"):
        native.load("nope")


def _params(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_spawn_takes_at_most_spawn_max_fds_pairs():
    r, w = os.pipe()
    try:
        pairs = [(w, 3 + i) for i in range(_native.SPAWN_MAX_FDS + 1)]
        with pytest.raises(ValueError, match=f"at most {_native.SPAWN_MAX_FDS}"):
            _native.spawn(SH, [SH, "-c", "exit 0"], None, pairs)
    finally:
        os.close(r)
        os.close(w)

SH = "/bin/sh"


def run_child(argv, fds=(), env=None, **kw):
    """Spawn with stdout on a pipe at fd 1; return (exit code, output)."""
    r, w = os.pipe()
    try:
        pid = _native.spawn(argv[0], argv, env, [(w, 1), *fds], **kw)
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def child_fds(fds=()):
    """{fd: what it links to} in a child spawned with `fds` (plus stdout at 1)."""
    code, out = run_child([SH, "-c", "ls -l /proc/$$/fd"], fds=fds)
    assert code == 0
    links = {}
    for line in out.splitlines():
        if " -> " in line:
            head, target = line.split(" -> ")
            links[int(head.split()[-1])] = target
    return links


def link(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


def high_fd(fd, at):
    """Move `fd` to the free fd `at` (close-on-exec) and return `at`."""
    assert not os.path.exists(f"/proc/self/fd/{at}")
    os.dup2(fd, at, inheritable=False)
    os.close(fd)
    return at


def test_spawn_closes_every_fd_not_asked_for():
    stray = os.open(os.devnull, os.O_RDONLY)  # inheritable: only spawn's closing keeps it out
    os.set_inheritable(stray, True)
    try:
        assert set(child_fds()) == {1}
    finally:
        os.close(stray)


def test_spawn_places_a_source_already_on_its_target():
    r, w = os.pipe()
    fd = high_fd(w, 90)  # close-on-exec, and already where it must land
    try:
        links = child_fds([(fd, fd)])
        assert set(links) == {1, fd} and links[fd] == link(fd)
    finally:
        os.close(fd)
        os.close(r)


def test_spawn_swaps_two_fds():
    pipes = [os.pipe() for _ in range(2)]
    a, b = high_fd(pipes[0][1], 91), high_fd(pipes[1][1], 92)
    try:
        links = child_fds([(a, b), (b, a)])
        assert links[b] == link(a) and links[a] == link(b) and links[a] != links[b]
    finally:
        for fd in (a, b, pipes[0][0], pipes[1][0]):
            os.close(fd)


def test_spawn_chain_of_targets_onto_sources():
    # 93 -> 94 and 94 -> 95: a naive dup2 order would overwrite 94 before moving it.
    pipes = [os.pipe() for _ in range(2)]
    a, b = high_fd(pipes[0][1], 93), high_fd(pipes[1][1], 94)
    try:
        links = child_fds([(a, 94), (b, 95)])
        assert set(links) == {1, 94, 95}
        assert links[94] == link(a) and links[95] == link(b)
    finally:
        for fd in (a, b, pipes[0][0], pipes[1][0]):
            os.close(fd)


def test_spawn_missing_binary_raises_at_once():
    with pytest.raises(FileNotFoundError):
        _native.spawn("/nonexistent/conmon", ["conmon"])


def test_spawn_not_executable_is_permission_error(tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        _native.spawn(str(script), ["script"])


def test_spawn_bad_cwd_is_reported_with_the_directory(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError) as info:
        _native.spawn(SH, [SH, "-c", "true"], cwd=missing)
    assert info.value.filename == missing and "changing directory" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        _native.spawn("/no/such/binary", ["x"], cwd=str(tmp_path))
    assert info.value.filename == "/no/such/binary"


@pytest.mark.parametrize(
    "argv, env, words",
    [
        ([SH, "-c", "true\0rm -rf /"], {}, "null byte in argv"),
        ([SH, "-c", "true"], {"A=B": "C"}, "illegal environment variable name"),
        ([SH, "-c", "true"], {"": "C"}, "illegal environment variable name"),
        ([SH, "-c", "true"], {"X": "1\0INJECT"}, "null byte in environment variable 'X'"),
        ([SH, "-c", "true"], {"X\0Y": "1"}, "null byte in an environment variable name"),
    ],
)
def test_spawn_refuses_what_exec_would_misread(argv, env, words):
    with pytest.raises(ValueError, match=words):
        _native.spawn(SH, argv, env)


def test_spawn_target_beyond_the_fd_limit_is_refused_before_forking():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    r, w = os.pipe()
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        with pytest.raises(OSError) as info:
            _native.spawn(SH, [SH, "-c", "true"], None, [(w, 5000)])
        assert info.value.errno == errno.EMFILE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(r)
        os.close(w)


@pytest.fixture
def own_v1_cgroup():
    """A cgroup of the test's own, below this process's cgroup in a v1 hierarchy (pids, or another)."""
    h = next((h for h in hierarchies() if h.version == 1 and "pids" in h.controllers), None) or next(
        (h for h in hierarchies() if h.version == 1), None
    )
    if h is None:
        pytest.skip("no cgroup v1 hierarchy here")
    path = os.path.join(h.own_dir, f"ocirt-test-spawn-{os.getpid()}")
    os.mkdir(path)
    try:
        yield h, path
    finally:
        os.rmdir(path)


def test_spawn_moves_the_child_into_cgroups_before_it_runs(own_v1_cgroup):
    h, path = own_v1_cgroup
    fd = os.open(os.path.join(path, "tasks"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        code, out = run_child([SH, "-c", "cat /proc/$$/cgroup"], cgroups=[fd])
    finally:
        os.close(fd)
    assert code == 0
    names = ",".join(sorted(h.controllers))
    line = next(line for line in out.splitlines() if ",".join(sorted(line.split(":")[1].split(","))) == names)
    assert line.split(":", 2)[2] == os.path.join(h.own_path, os.path.basename(path))


def test_spawn_reports_a_failed_cgroup_join_as_that_step():
    fd = os.open("/dev/full", os.O_WRONLY | os.O_CLOEXEC)  # every write: ENOSPC
    try:
        with pytest.raises(OSError) as info:
            _native.spawn(SH, [SH, "-c", "true"], cgroups=[fd])
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC and "moving into its cgroup" in str(info.value)
    assert info.value.failed_step == 2


def test_spawn_bad_source_fd_is_ebadf():
    with pytest.raises(OSError) as info:
        _native.spawn(SH, [SH, "-c", "true"], fds=[(987, 3)])
    assert info.value.errno == errno.EBADF


def test_spawn_env_cwd_and_setsid(tmp_path):
    code, out = run_child(
        [SH, "-c", 'echo "$GREETING"; pwd; [ "$(cut -d" " -f6 /proc/$$/stat)" = "$$" ] && echo leader'],
        env={"GREETING": "hi"},
        cwd=str(tmp_path),
        setsid=True,
    )
    assert code == 0
    assert out.splitlines() == ["hi", str(tmp_path), "leader"]


def test_spawn_without_env_passes_this_process_s_environment_as_it_is_now(monkeypatch):
    monkeypatch.setenv("OCIRT_TEST_SET", "late")
    monkeypatch.delenv("HOME", raising=False)
    code, out = run_child([SH, "-c", 'echo "$OCIRT_TEST_SET ${HOME-unset}"'])
    assert code == 0 and out == "late unset\n"


def test_spawn_resets_signal_mask_and_ignored_signals():
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        # Python ignores SIGPIPE; the child must not inherit that or the mask.
        # grep reads its own status: a waiting shell blocks signals itself.
        code, out = run_child([SH, "-c", "exec grep -E '^Sig(Blk|Ign)' /proc/self/status"])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert not int(fields["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1))


def test_socketpair_is_close_on_exec():
    a, b = _native.socketpair()
    try:
        for fd in (a, b):
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        os.write(a, b"x")
        assert os.read(b, 1) == b"x"
    finally:
        os.close(a)
        os.close(b)


class Blocked:
    """A process blocked reading a pipe, exiting when released; reaped by a thread."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self.pid = _native.spawn(SH, [SH, "-c", "read x"], None, [(self.r, 0)])
        os.close(self.r)
        self.reaper = threading.Thread(target=os.waitpid, args=(self.pid, 0))
        self.reaper.start()

    def release(self):
        os.close(self.w)

    def join(self):
        self.reaper.join()

    def finish(self):
        self.release()
        self.join()


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "kill0"])
def test_wait_pids_times_out_then_sees_exits(use_pidfd):
    procs = [Blocked(), Blocked()]
    try:
        assert sorted(_native.wait_pids([p.pid for p in procs], 0.05, use_pidfd=use_pidfd)) == sorted(
            p.pid for p in procs
        )
        procs[0].release()
        procs[0].join()
        assert _native.wait_pids([p.pid for p in procs], 0.05, use_pidfd=use_pidfd) == [procs[1].pid]
    finally:
        for p in procs[1:]:
            p.release()
        for p in procs:
            p.join()
    assert _native.wait_pids([p.pid for p in procs], 5, use_pidfd=use_pidfd) == []


@pytest.mark.parametrize("use_pidfd", [True, False], ids=["pidfd", "kill0"])
def test_wait_pids_of_nothing_and_of_a_zombie(use_pidfd):
    assert _native.wait_pids([], 0, use_pidfd=use_pidfd) == []
    pid = _native.spawn(SH, [SH, "-c", "exit 0"])
    try:
        assert _native.wait_pids([pid], 30, use_pidfd=use_pidfd) == []  # exited, not reaped yet
    finally:
        os.waitpid(pid, 0)


def test_pidfd_signal_reaches_the_process_and_not_a_successor():
    p = Blocked()
    fd = _native.pidfd_open(p.pid)
    try:
        _native.pidfd_send_signal(fd, signal.SIGKILL)
        p.join()  # reaped: its pid is free, and the pidfd still names the dead process
        successor = spawn_with_pid(p.pid, Blocked, lambda b: b.pid, Blocked.finish)
        try:
            with pytest.raises(ProcessLookupError):
                _native.pidfd_send_signal(fd, signal.SIGKILL)
            assert _native.wait_pids([successor.pid], 0) == [successor.pid]  # untouched
        finally:
            successor.finish()
    finally:
        os.close(fd)
        os.close(p.w)


def test_pidfd_open_of_missing_process():
    p = Blocked()
    p.release()
    p.join()
    with pytest.raises(ProcessLookupError):
        _native.pidfd_open(p.pid)


MODES = [
    pytest.param(dict(use_inotify=True, use_pidfd=True), id="inotify+pidfd"),
    pytest.param(dict(use_inotify=False, use_pidfd=False), id="stat+kill0"),
]


@pytest.mark.parametrize("mode", MODES)
def test_wait_file_present_absent_and_renamed_in(tmp_path, mode):
    (tmp_path / "early").write_text("1")
    assert _native.wait_file(str(tmp_path), "early", 0, **mode)
    assert not _native.wait_file(str(tmp_path), "missing", 0.02, **mode)

    # conmon's way: write a temp file, rename it into place, once released.
    r, w = os.pipe()
    script = f"read x; echo -n 0 > {tmp_path}/.tmp; mv {tmp_path}/.tmp {tmp_path}/exit"
    pid = _native.spawn(SH, [SH, "-c", script], None, [(r, 0)])
    os.close(r)
    result = []
    waiter = threading.Thread(target=lambda: result.append(_native.wait_file(str(tmp_path), "exit", 30, **mode)))
    waiter.start()
    if mode["use_inotify"]:
        until(lambda: inotify_watching(str(tmp_path)))  # the event path, not the first existence check
    os.close(w)
    waiter.join()
    os.waitpid(pid, 0)
    assert result == [True]
    assert (tmp_path / "exit").read_text() == "0"


@pytest.mark.parametrize("mode", MODES)
def test_wait_file_guard_that_dies_during_the_wait_is_process_lookup_error(tmp_path, mode):
    guard = Blocked()
    result = []
    waiter = threading.Thread(target=lambda: result.append(_raised(_native.wait_file, str(tmp_path), "never", 60, guard_pid=guard.pid, **mode)))
    waiter.start()
    try:
        if mode["use_pidfd"]:
            until(lambda: pidfd_open_on(guard.pid))  # blocked in poll on the guard's pidfd
    finally:
        guard.finish()
    waiter.join(60)
    assert isinstance(result[0], ProcessLookupError)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("timeout", [0, 30])
def test_wait_file_guard_already_a_zombie_is_process_lookup_error(tmp_path, mode, timeout):
    pid = _native.spawn(SH, [SH, "-c", "exit 0"])
    try:
        assert _native.wait_pids([pid], 30) == []  # exited; a zombie until reaped below
        with pytest.raises(ProcessLookupError):
            _native.wait_file(str(tmp_path), "never", timeout, guard_pid=pid, **mode)
    finally:
        os.waitpid(pid, 0)


def _raised(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception as e:
        return e
    return None


def test_wait_change_sees_a_write_a_size_and_a_guard(tmp_path):
    path = str(tmp_path / "log")
    with open(path, "w") as f:
        f.write("12345")
    assert _native.wait_change(path, 0, known_size=3)  # grown since the caller read: at once
    assert not _native.wait_change(path, 0.02, known_size=5)
    result = []
    waiter = threading.Thread(target=lambda: result.append(_native.wait_change(path, 30, known_size=5)))
    waiter.start()
    until(lambda: inotify_watching(path))
    with open(path, "a") as f:
        f.write("6")
    waiter.join(30)
    assert result == [True]
    guard = Blocked()
    waiter = threading.Thread(target=lambda: result.append(_raised(_native.wait_change, path, 60, known_size=6, guard_pid=guard.pid)))
    waiter.start()
    until(lambda: pidfd_open_on(guard.pid))
    guard.finish()
    waiter.join(60)
    assert isinstance(result[1], ProcessLookupError)


def test_inotify_instances_are_reused_and_carry_no_stale_events(tmp_path):
    busy, quiet = tmp_path / "busy", tmp_path / "quiet"
    busy.mkdir()
    quiet.mkdir()
    stop = threading.Event()

    def churn():  # events keep arriving in `busy` while the waits below come and go
        i = 0
        while not stop.is_set():
            (busy / f"f{i % 50}").write_text("x")
            i += 1

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for _ in range(20):
            assert _native.wait_file(str(busy), "f7", 30)
            assert _native.inotify_pool_size() >= 1  # kept for the next wait
            # A reused instance must not answer for events of its last watch.
            assert not _native.wait_file(str(quiet), "f7", 0.005)
    finally:
        stop.set()
        writer.join()


@pytest.mark.parametrize("mode", MODES)
def test_wait_file_guard_that_wrote_before_exiting(tmp_path, mode):
    pid = _native.spawn(SH, [SH, "-c", f"echo 3 > {tmp_path}/code"])
    reaper = threading.Thread(target=os.waitpid, args=(pid, 0))
    reaper.start()
    try:
        assert _native.wait_file(str(tmp_path), "code", 30, guard_pid=pid, **mode)
    finally:
        reaper.join()


def test_wait_file_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        _native.wait_file(str(tmp_path / "nodir"), "x", 0)
    with pytest.raises(OSError) as info:
        _native.wait_file(str(tmp_path), "a/b", 0)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(ValueError):
        _native.wait_file(str(tmp_path), "x", -1)


def test_watch_wakes_a_poll_when_the_named_file_appears(tmp_path):
    fd, wd = _native.watch_open(str(tmp_path))
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(0) == []
        (tmp_path / "other").write_text("")
        assert poller.poll(1000) and not _native.watch_seen(fd, "exit")
        os.rename(tmp_path / "other", tmp_path / "exit")
        assert poller.poll(1000) and _native.watch_seen(fd, "exit")
        assert poller.poll(0) == []  # drained
    finally:
        _native.watch_close(fd, wd)


def test_watch_of_a_missing_directory_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        _native.watch_open(str(tmp_path / "missing"))


def test_the_cffi_backend_without_cffi_names_what_to_install():
    # A Python where cffi is not installed: its runtime module cannot be found.
    code = (
        "import sys\n"
        "class NoCffi:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == '_cffi_backend': raise ModuleNotFoundError('no cffi', name=name)\n"
        "sys.meta_path.insert(0, NoCffi())\n"
        "import ocirt\n"
    )
    env = dict(os.environ, OCIRT_BACKEND="cffi")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "'_cffi_backend' of the cffi package: pip install 'ocirt[cffi]'" in proc.stderr
