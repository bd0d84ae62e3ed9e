"""The security review's findings, each reproduced as the attack it describes.

Each test fails on the code the review read (main at b80f447) and passes
once the finding is fixed. Containers are real (runc, conmon, busybox);
what a container does to attack the host is done from inside it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading

import pytest

import ocirt
from ocirt import claims, native as _native
from ocirt.store import Store

from ..cli_support import Ocirt, reap_orphans
from ..gates import blocked_on_flock
from ..observe import inotify_watching, spawn_with_pid, until

NOBODY = 65534


def inspect(cli: Ocirt, name: str) -> dict:
    return json.loads(cli.ok("inspect", name))[0]


def sleeper():
    """A `sleep 600` process; the test kills it."""
    return subprocess.Popen(["sleep", "600"])


def readable_by_nobody(path: str) -> bool:
    """Whether uid 65534 can open `path` (tried in a forked child that becomes nobody)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.close(os.open(path, os.O_RDONLY))
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


# -- 1. a stored pid is never signalled unless proven --------------------------


def test_rm_never_kills_a_process_that_reused_conmons_pid(ocirt):
    cid = ocirt.ok("run", "-d", "busybox", "true").strip()
    conmon = inspect(ocirt, cid)["State"]["ConmonPid"]
    assert ocirt.ok("wait", cid) == "0\n"
    assert _native.wait_pids([conmon], 60) == []  # conmon has finished too
    reap_orphans()  # its pid is free now (this test process is its reaper)
    victim = spawn_with_pid(conmon, sleeper, lambda p: p.pid, lambda p: (p.kill(), p.wait()))
    try:
        ocirt.ok("rm", cid)
        assert victim.poll() is None, "ocirt rm killed the process that reused conmon's pid"
    finally:
        victim.kill()
        victim.wait()


def test_a_conmon_whose_pid_was_reused_is_not_waited_on_or_followed(ocirt):
    cid = ocirt.ok("run", "-d", "busybox", "sleep", "1000").strip()
    conmon = inspect(ocirt, cid)["State"]["ConmonPid"]
    fd = _native.pidfd_open(conmon)
    try:
        _native.pidfd_send_signal(fd, signal.SIGKILL)  # conmon dies without an exit file
    finally:
        os.close(fd)
    assert _native.wait_pids([conmon], 60) == []
    reap_orphans()
    victim = spawn_with_pid(conmon, sleeper, lambda p: p.pid, lambda p: (p.kill(), p.wait()))
    try:
        st = inspect(ocirt, cid)["State"]
        assert (st["Status"], st["ExitCode"]) == ("running", 0) and "conmon died" in st["Note"]  # the runtime was asked
        assert ocirt("logs", "-f", cid).returncode == 0  # ends: does not follow the victim
        ocirt.ok("stop", "-t", "0", cid)  # through the container's own init (proven by its cgroup), never the victim
        assert ocirt("wait", cid).returncode == 125  # an error at once, not a wait on the victim
        ocirt.ok("rm", "-f", cid)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


# -- 2. every container writes to a layer of its own ---------------------------


def test_a_containers_writes_never_reach_the_next_container_or_the_cache(ocirt):
    ocirt.ok("run", "--rm", "busybox", "sh", "-c", "echo planted > /bin/planted; echo changed > /etc/passwd")
    proc = ocirt("run", "--rm", "busybox", "sh", "-c", "cat /bin/planted; grep -c root /etc/passwd")
    assert proc.stdout == "1\n" and "No such file" in proc.stderr
    cache = os.path.join(ocirt.root, "rootfs", "busybox")
    assert not os.path.exists(os.path.join(cache, "bin", "planted"))
    assert "root:" in open(os.path.join(cache, "etc", "passwd")).read()


def test_a_planted_setuid_binary_is_out_of_other_users_reach(ocirt):
    cid = ocirt.ok("run", "-d", "busybox", "sh", "-c", "cp /bin/busybox /bin/rootme; chmod 4755 /bin/rootme; sleep 1000").strip()
    ocirt.ok("exec", cid, "test", "-u", "/bin/rootme")  # planted
    upper = os.path.join(ocirt.root, "bundles", cid, "upper", "bin", "rootme")
    assert os.stat(upper).st_mode & stat.S_ISUID  # where it landed on the host
    with pytest.raises(PermissionError):
        subprocess.run([upper, "id"], user=NOBODY, check=False)
    for d in (ocirt.root, os.path.join(ocirt.root, "rootfs"), os.path.join(ocirt.root, "bundles")):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    ocirt.ok("rm", "-f", cid)
    assert not os.path.exists(os.path.join(ocirt.root, "bundles", cid))


def test_a_cached_rootfs_without_a_valid_stamp_is_rebuilt(ocirt):
    ocirt.ok("run", "--rm", "busybox", "true")
    cache = os.path.join(ocirt.root, "rootfs")
    with open(os.path.join(cache, "busybox", "bin", "planted"), "w") as f:  # as an older ocirt's containers could
        f.write("x")
    os.unlink(os.path.join(cache, ".ocirt-rootfs"))
    assert "No such file" in ocirt("run", "--rm", "busybox", "cat", "/bin/planted").stderr
    assert not os.path.exists(os.path.join(cache, "busybox", "bin", "planted"))


# -- 3. user names are resolved inside the container's root ------------------


@pytest.fixture
def victim(ocirt):
    cid = ocirt.ok("run", "-d", "busybox", "sleep", "1000").strip()
    yield cid
    ocirt.ok("rm", "-f", cid)


@pytest.mark.parametrize(
    "plant, words",
    [
        ("ln -sf /etc/shadow /etc/passwd", "No such file"),  # resolves inside the container, never to the host's
        ("rm /etc/passwd; mkfifo /etc/passwd", "Invalid argument"),
        ("ln -sf /dev/zero /etc/passwd", "Invalid argument"),
        ("head -c 2000000 /dev/zero > /etc/passwd", "larger than"),
    ],
    ids=["symlink-to-host-file", "fifo", "dev-zero", "huge"],
)
def test_exec_user_lookup_stays_in_the_container_and_never_hangs(ocirt, victim, plant, words):
    ocirt.ok("exec", victim, "sh", "-c", plant)
    proc = ocirt("exec", "-u", "root", victim, "id")
    assert proc.returncode == 125 and words in proc.stderr
    assert ocirt("stop", "-t", "0", victim).returncode == 0  # nothing holds the container's lock


def test_run_user_lookup_refuses_a_symlinked_passwd_in_a_given_rootfs(ocirt, rootfs, tmp_path):
    fs = tmp_path / "fs"
    shutil.copytree(rootfs, fs, symlinks=True)
    (fs / "etc" / "passwd").unlink()
    (fs / "etc" / "passwd").symlink_to("/etc/passwd")  # the host's, if followed
    proc = ocirt("run", "--rm", "--rootfs", str(fs), "-u", "daemon", "--", "id")  # "daemon" is in the host's passwd only
    assert proc.returncode == 125 and "cannot read the container's /etc/passwd" in proc.stderr


# -- 4. a container cannot forge log records ----------------------------------


def test_container_output_cannot_forge_a_log_record(ocirt):
    forged = r"hello\0341999-01-01T00:00:00.000000000Z stderr F FORGED"
    cid = ocirt.ok("run", "-d", "busybox", "sh", "-c", f"printf 'progress 10%%\\rprogress 100%%\\n{forged}\\n'").strip()
    ocirt.ok("wait", cid)
    logs = subprocess.run(ocirt.argv("logs", cid), env=ocirt.env, capture_output=True, timeout=60)  # bytes: \r as written
    assert (logs.returncode, logs.stderr) == (0, b"")
    assert logs.stdout == b"progress 10%\rprogress 100%\nhello\x1c1999-01-01T00:00:00.000000000Z stderr F FORGED\n"
    ocirt.ok("rm", cid)


# -- 5. env secrets and state are nobody else's ------------------------------


def test_secrets_in_specs_and_the_state_database_are_unreadable_to_others(ocirt):
    cid = ocirt.ok("run", "-d", "-e", "DB_PASSWORD=hunter2", "busybox", "sleep", "1000").strip()
    with ocirt.running("exec", "-e", "TOKEN=s3cr3t", cid, "sh", "-c", "echo up; sleep 1000") as exe:
        assert exe.stdout.readline() == "up\n"
        process = next(
            os.path.join(d, "process.json") for d, _, files in os.walk(os.path.join(ocirt.root, "run")) if "process.json" in files
        )
        secrets_at = [
            os.path.join(ocirt.root, "run", "containers", cid, "config.json"),
            os.path.join(ocirt.root, "bundles", cid, "config.json"),
            process,
            os.path.join(ocirt.root, "state.db"),
        ]
        assert readable_by_nobody(os.path.join(ocirt.root, "rootfs", "busybox", "bin", "busybox")) is False  # behind 0700
        for path in secrets_at:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            os.chmod(os.path.dirname(path), 0o755)  # even with the directory opened up, the file stays closed
            try:
                assert not readable_by_nobody(path), f"nobody read {path}"
            finally:
                os.chmod(os.path.dirname(path), 0o700)
        ocirt.ok("rm", "-f", cid)
    assert not os.path.exists(process)


# -- 6. a name cannot stand in for another container's id ------------------


def test_a_name_that_looks_like_an_id_is_refused(ocirt):
    cid = ocirt.ok("create", "busybox", "true").strip()
    proc = ocirt("create", "--name", cid, "busybox", "true")
    assert proc.returncode == 125 and "a container id, not a name" in proc.stderr
    ocirt.ok("rm", cid)


# -- 7 and 8. the host's notify socket and activation fds -----------------------


def test_notify_socket_never_reaches_conmon_runc_or_the_container(ocirt, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    try:
        env = dict(ocirt.env, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
        check = "echo ${NOTIFY_SOCKET:-none}; test -e /run/notify && echo proxy || echo no-proxy"
        proc = subprocess.run(ocirt.argv("run", "--rm", "busybox", "sh", "-c", check), env=env, capture_output=True, text=True, timeout=60)
        assert (proc.returncode, proc.stdout) == (0, "none\nno-proxy\n"), proc.stderr
        cid = subprocess.run(ocirt.argv("run", "-d", "busybox", "sleep", "1000"), env=env, capture_output=True, text=True, timeout=60)
        assert cid.returncode == 0, cid.stderr  # returned at once: start did not wait for READY=1
        conmon = inspect(ocirt, cid.stdout.strip())["State"]["ConmonPid"]
        with open(f"/proc/{conmon}/environ", "rb") as f:
            assert b"NOTIFY_SOCKET" not in f.read()
        ocirt.ok("rm", "-f", cid.stdout.strip())
    finally:
        listener.close()


PLACE_AT_3 = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
    "os.environ['LISTEN_FDS'] = sys.argv[2]; "
    "sys.argv[3] == 'pid' and os.environ.update(LISTEN_PID=str(os.getpid())); "
    "os.execv(sys.argv[4], sys.argv[4:])"
)


def activated(cli: Ocirt, fd: int, count: str, *args: str, listen_pid: bool = True) -> subprocess.CompletedProcess:
    """`ocirt args` started as systemd's socket activation starts a service: `fd` at 3,
    LISTEN_FDS=count and (unless not `listen_pid`) LISTEN_PID its own pid."""
    argv = [sys.executable, "-c", PLACE_AT_3, str(fd), count, "pid" if listen_pid else "-", *cli.argv(*args)]
    return subprocess.run(argv, env=cli.env, pass_fds=[fd], capture_output=True, text=True, timeout=120)


def test_a_socket_activated_container_serves_a_connection_made_on_the_host(ocirt):
    server, client = socket.socketpair()  # as systemd's Accept=yes: the connection itself
    try:
        client.sendall(b"world\n")
        serve = 'echo "fds=$LISTEN_FDS pid=$LISTEN_PID"; read line <&3; echo "hello $line" >&3'
        proc = activated(ocirt, server.fileno(), "1", "run", "--rm", "busybox", "sh", "-c", serve)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "fds=1 pid=1\n"
        assert client.recv(100) == b"hello world\n"
    finally:
        server.close()
        client.close()


@pytest.mark.parametrize("count, words", [("100", "LISTEN_FDS must be"), ("²", "LISTEN_FDS must be"), ("1", "not an open socket")])
def test_bad_socket_activation_is_a_clear_error(ocirt, tmp_path, count, words):
    fd = os.open(tmp_path / "not-a-socket", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        proc = activated(ocirt, fd, count, "run", "--rm", "busybox", "true")
    finally:
        os.close(fd)
    assert proc.returncode == 125 and words in proc.stderr and "Traceback" not in proc.stderr


def test_no_host_fd_reaches_conmon_without_listen_pid(ocirt, tmp_path):
    fd = os.open(tmp_path / "secret-db", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        proc = activated(ocirt, fd, "1", "run", "-d", "busybox", "sleep", "1000", listen_pid=False)
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc.stderr
    cid = proc.stdout.strip()
    conmon = inspect(ocirt, cid)["State"]["ConmonPid"]
    links = {os.readlink(f"/proc/{conmon}/fd/{n}") for n in os.listdir(f"/proc/{conmon}/fd")}
    assert str(tmp_path / "secret-db") not in links
    ocirt.ok("rm", "-f", cid)


# -- 9 and 10. waits after fork, and Ctrl-C during a wait ----------------------


def test_a_forked_child_waits_on_inotify_instances_of_its_own(tmp_path):
    assert _native.wait_file(str(tmp_path), "warm", 0) is False  # leaves a pooled instance
    assert _native.inotify_pool_size() >= 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its wait must see its own file
        os.close(r)
        seen = _native.wait_file(str(tmp_path), "b", 30)
        os.write(w, b"1" if seen else b"0")
        os._exit(0)
    os.close(w)
    parent: list = []
    waiter = threading.Thread(target=lambda: parent.append(_native.wait_file(str(tmp_path), "a", 30)))
    try:
        waiter.start()  # the parent waits too, on the same directory, through its pooled instance
        until(lambda: inotify_watching(str(tmp_path), pid) and inotify_watching(str(tmp_path)))
        (tmp_path / "b").write_text("")
        assert os.read(r, 1) == b"1"  # the child saw its file: no one drained its event
        (tmp_path / "a").write_text("")
        waiter.join(30)
        assert parent == [True]
    finally:
        os.close(r)
        os.waitpid(pid, 0)


@pytest.mark.parametrize("backend", sorted(_native.BACKENDS))
@pytest.mark.parametrize("call", ["wait_file", "wait_change", "wait_pids"])
def test_ctrl_c_interrupts_a_native_wait(tmp_path, backend, call):
    (tmp_path / "log").write_text("x")
    waits = {
        "wait_file": f"n.wait_file({str(tmp_path)!r}, 'never')",
        "wait_change": f"n.wait_change({str(tmp_path / 'log')!r}, known_size=1)",
        "wait_pids": "n.wait_pids([os.getppid()])",
    }
    script = f"import os, sys; from ocirt import native; n = native.load({backend!r}); print('waiting', flush=True); {waits[call]}"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "waiting\n"
        until(lambda: _in_poll(proc.pid))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) != 0
        assert "KeyboardInterrupt" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _in_poll(pid: int) -> bool:
    """Whether process `pid` (its main thread) sleeps in poll or nanosleep: inside a native wait."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().startswith(("poll_schedule_timeout", "do_sys_poll", "hrtimer_nanosleep", "do_nanosleep"))
    except OSError:
        return False


def test_ctrl_c_ends_ocirt_wait_and_logs_follow(ocirt):
    cid = ocirt.ok("run", "-d", "busybox", "sh", "-c", "echo up; exec sleep 1000").strip()
    for verb in (["wait", cid], ["logs", "-f", cid]):
        with ocirt.running(*verb) as proc:
            if verb[0] == "logs":
                assert proc.stdout.readline() == "up\n"
            until(lambda: _in_poll(proc.pid))
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 130
    ocirt.ok("rm", "-f", cid)


# -- 12 and 13. every way out finishes the job or undoes it -------------------


def test_run_rm_into_a_closed_pipe_leaves_nothing_running(ocirt):
    head = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    loop = "trap 'exit 1' TERM; i=0; while :; do echo line $i; i=$((i+1)); done"
    run = ocirt.popen("run", "--rm", "busybox", "sh", "-c", loop, stdout=head.stdin)
    head.stdin.close()
    assert head.stdout.read() == b"line 0\n"
    head.wait()
    run.wait(60)
    assert json.loads(ocirt.ok("ps", "-a", "--format", "json")) == []


@pytest.mark.parametrize("step", ["cgroup", "spawn", "sync", "record"])
def test_ctrl_c_at_each_step_of_create_leaves_nothing(runtime, make_bundle, new_id, monkeypatch, step):
    from ocirt import conmon as conmon_module
    from ocirt.cgroups import cgroupfs
    from ocirt.container import Container

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    def interrupt_steps(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    spawn = _native.spawn

    def after_conmon_spawn(path, *args, **kwargs):
        pid = spawn(path, *args, **kwargs)
        if path == runtime.conmon_path:  # the runtime's own commands (the undo's delete) go on
            raise KeyboardInterrupt
        return pid

    targets = {
        "cgroup": (cgroupfs.CgroupfsGroup, "join_files", interrupt),
        "spawn": (conmon_module._native, "spawn", after_conmon_spawn),
        "sync": (conmon_module, "read_sync_steps", interrupt_steps),
        "record": (Container, "_created", interrupt),
    }
    owner, name, replacement = targets[step]
    monkeypatch.setattr(owner, name, replacement)
    with pytest.raises(KeyboardInterrupt):
        runtime.create(new_id(), make_bundle("sleep", "1000"))
    monkeypatch.undo()
    reap_orphans()
    for d in (runtime.dirs.containers, runtime.dirs.exits, runtime.dirs.sockets):
        assert os.listdir(d) == [], d
    # and, checked by the leak fixture: no runc container, no conmon, no cgroup


def test_sigterm_during_create_undoes_it(ocirt, gate):
    manager = ocirt.popen("--runtime", gate.runtime("create"), "create", "--name", "t", "busybox", "sleep", "1000")
    gate.reached("reached.main")
    manager.send_signal(signal.SIGTERM)  # the gated runtime it waits for is killed with conmon's cgroup
    assert manager.wait(60) == 128 + signal.SIGTERM
    reap_orphans()
    assert json.loads(ocirt.ok("ps", "-a", "--format", "json")) == []


# -- 14-23 -------------------------------------------------------------------


def test_a_lock_file_unlinked_while_held_is_never_held_twice(tmp_path):
    store = Store(str(tmp_path / "state.db"), str(tmp_path / "locks"))
    path = os.path.join(store.lock_dir, "x")
    got, done = threading.Event(), threading.Event()

    def waiter_holds_it():
        with store.lock("x"):
            got.set()
            done.wait(30)

    waiter = threading.Thread(target=waiter_holds_it)
    with store.lock("x"):  # a delete holds it...
        waiter.start()
        blocked_on_flock(os.getpid(), path)
        store.remove_lock("x")  # ...and unlinks it while held
        newcomer = store.lock("x")  # a newcomer locks a new file at the same path
        newcomer.__enter__()
    try:
        blocked_on_flock(os.getpid(), path)  # the waiter woke on the old file, saw it gone, waits on the new one
        assert not got.is_set()
    finally:
        newcomer.__exit__(None, None, None)
    assert got.wait(30)
    done.set()
    waiter.join(30)
    store.close()


def test_an_exec_session_named_like_a_container_cannot_take_its_attach_socket(ocirt):
    a = ocirt.ok("run", "-d", "busybox", "sleep", "1000").strip()
    b = ocirt.ok("run", "-d", "busybox", "sleep", "1000").strip()
    link = os.path.join(ocirt.root, "run", "socket", a)
    before = os.readlink(link)
    with ocirt_runtime(ocirt) as rt:
        session = rt.get(b).exec(["true"], session_id=a, attach=True)
        session.attach.close()
        assert session.wait(30) == 0
        assert os.readlink(link) == before
        assert not os.path.exists(session._files.socket_link) and not os.path.exists(session._files.process)
    ocirt.ok("rm", "-f", a, b)
    assert [n for n in os.listdir(os.path.join(ocirt.root, "run", "socket"))] == []


def ocirt_runtime(cli: Ocirt) -> ocirt.Runtime:
    return ocirt.Runtime.open(cli.root)


def test_a_runtime_message_with_control_bytes_is_reported(ocirt):
    proc = ocirt("run", "--rm", "busybox", "/no\x01such")
    assert proc.returncode == 127 and "Traceback" not in proc.stderr and "no" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [["--memory", "nan"], ["--memory", "inf"], ["--memory", "1e30"], ["--cpus", "inf"], ["--cpus", "0.000001"], ["--timeout", "nan"]],
)
def test_numbers_that_are_not_limits_are_refused_before_anything_is_made(ocirt, args):
    proc = ocirt("run", "--rm", *args, "busybox", "true")
    assert proc.returncode == 125 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert json.loads(ocirt.ok("ps", "-a", "--format", "json")) == []


def test_the_exit_command_runs_python_isolated(ocirt):
    cid = ocirt.ok("run", "-d", "--rm", "busybox", "sleep", "1000").strip()
    conmon = inspect(ocirt, cid)["State"]["ConmonPid"]
    with open(f"/proc/{conmon}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    given = argv[argv.index(b"--exit-command") + 1 :]
    command = [given[0]] + [given[i + 1] for i, arg in enumerate(given) if arg == b"--exit-command-arg"]
    python = command.index(sys.executable.encode())  # behind flock(1)'s look whether a process attends it
    assert command[python + 1] == b"-I"
    ocirt.ok("kill", cid)
    assert _native.wait_pids([conmon], 60) == []
    reap_orphans()
    until(lambda: cid not in ocirt.ok("ps", "-a", "--format", "json"), 60)
    reap_orphans()


@pytest.mark.parametrize("change", ["owner", "mode"])
def test_a_state_root_someone_else_controls_is_refused(tmp_path, change):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    if change == "owner":
        os.chown(root, NOBODY, NOBODY)
    else:
        root.chmod(0o777)
    with pytest.raises(ocirt.InvalidArgument, match="refusing"):
        ocirt.Runtime.open(str(root))


@pytest.mark.parametrize("change", ["owner", "mode"])
def test_a_shared_base_of_worker_roots_someone_else_controls_is_refused(tmp_path, change):
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    (base / "worker").mkdir(mode=0o700)
    (base / "worker.lock").touch(mode=0o600)  # a root planted for the next worker to "clean"
    if change == "owner":
        os.chown(base, NOBODY, NOBODY)
    else:
        base.chmod(0o777)
    with pytest.raises(ocirt.InvalidArgument, match=f"refusing.*{base}"):
        claims.claim(str(base / "worker"))
    with pytest.raises(ocirt.InvalidArgument, match=f"refusing.*{base}"):
        list(claims.unclaimed(str(base)))
    assert sorted(os.listdir(base)) == ["worker", "worker.lock"]


def test_rm_f_of_a_container_stuck_in_create_finishes(ocirt, rootfs, tmp_path):
    """runc init reads /etc/passwd in the rootfs: a FIFO there blocks it forever."""
    fs = tmp_path / "fs"
    shutil.copytree(rootfs, fs, symlinks=True)
    (fs / "etc" / "passwd").unlink()
    os.mkfifo(fs / "etc" / "passwd")
    proc = ocirt("create", "--name", "stuck", "--create-timeout", "2", "--rootfs", str(fs), "--", "true")
    assert proc.returncode == 125 and "timed out" in proc.stderr
    assert json.loads(ocirt.ok("ps", "-a", "--format", "json")) == []
    manager = ocirt.popen("create", "--name", "stuck", "--rootfs", str(fs), "--", "true")
    until(lambda: "stuck" in ocirt.ok("ps", "-a"))
    manager.kill()
    manager.wait()
    ocirt.ok("rm", "-f", "stuck")
    reap_orphans()


def test_a_runtime_that_fails_create_and_delete_reports_create_and_leaves_nothing(make_runtime, fakes_dir, make_bundle, new_id, monkeypatch):
    conmon_env = {"PATH": os.environ["PATH"], "OCIRT_FAKE_FAIL": "create delete"}
    rt = make_runtime(runtime_path=os.path.join(fakes_dir, "runc-failing"), conmon_env=conmon_env)
    monkeypatch.setenv("OCIRT_FAKE_FAIL", "delete")  # for ocirt's own runtime calls
    with pytest.raises(ocirt.ConmonError, match="create failed on purpose"):
        rt.create(new_id(), make_bundle())
    for d in (rt.dirs.containers, rt.dirs.exits, rt.dirs.sockets):
        assert os.listdir(d) == [], d
