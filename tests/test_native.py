"""The C helpers through their Cython binding, including the fallback paths."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import threading
import time

import pytest

from ocirt import native

_native = native  # swapped for each backend by the fixture below


@pytest.fixture(autouse=True, params=sorted(native.BACKENDS))
def backend(request, monkeypatch):
    """Every test here runs on both backends (the same C under Cython and cffi)."""
    monkeypatch.setattr(sys.modules[__name__], "_native", native.load(request.param))
    return request.param


def test_both_backends_provide_the_same_names():
    for name in native.BACKENDS:
        module = native.load(name)
        assert all(callable(getattr(module, n)) or n.isupper() for n in native.PUBLIC)
    with pytest.raises(ImportError, match="unknown OCIRT_BACKEND 'nope'"):
        native.load("nope")

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


def test_spawn_bad_cwd_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        _native.spawn(SH, [SH, "-c", "true"], cwd=str(tmp_path / "missing"))


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
        p.join()  # reaped: its pid may now be reused, the pidfd still names the dead process
        with pytest.raises(ProcessLookupError):
            _native.pidfd_send_signal(fd, signal.SIGKILL)
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
    os.close(w)  # release the writer, whether or not the wait is armed yet
    waiter.join()
    os.waitpid(pid, 0)
    assert result == [True]
    assert (tmp_path / "exit").read_text() == "0"


@pytest.mark.parametrize("mode", MODES)
def test_wait_file_guard_exit_without_file_is_process_lookup_error(tmp_path, mode):
    guard = Blocked()
    guard.release()
    guard.join()
    start = time.monotonic()
    with pytest.raises(ProcessLookupError):
        _native.wait_file(str(tmp_path), "never", 30, guard_pid=guard.pid, **mode)
    assert time.monotonic() - start < 30


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
