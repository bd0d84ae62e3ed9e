"""Every verb on real containers (runc + conmon + busybox)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from typing import Iterator

import pytest

import ocirt
from ocirt import ContainerStatus, attach
from ocirt.cgroups import Cgroupfs, hierarchies

from .cli_support import reap_orphans
from .observe import inotify_watching, until


def frozen(pid: int) -> bool:
    """Whether the cgroup `pid` is in is frozen: v1's freezer where it is mounted, else v2's cgroup.events."""
    paths = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            paths[names] = path
    for h in hierarchies():
        if "freezer" in h.controllers:
            with open(os.path.join(h.mountpoint, paths["freezer"].lstrip("/"), "freezer.state")) as f:
                return f.read().strip() == "FROZEN"
    v2 = next(h for h in hierarchies() if h.version == 2)
    with open(os.path.join(v2.mountpoint, paths[""].lstrip("/"), "cgroup.events")) as f:
        return "frozen 1" in f.read().splitlines()



@pytest.mark.parametrize(
    "args, code",
    [(["true"], 0), (["sh", "-c", "exit 7"], 7), (["false"], 1)],
    ids=["0", "7", "1"],
)
def test_exit_codes(run, args, code):
    c = run(*args)
    assert c.wait(30) == code
    assert c.state.status is ContainerStatus.STOPPED
    assert c.state.exit_code == code
    c.delete()


def test_timings_mark_every_phase_in_order(run):
    c = run("true")
    c.wait(30)
    c.delete()
    t = c.timings
    marks = [t.create, t.spawned, t.created, t.started, t.exited, t.recorded, t.deleted]
    assert None not in marks and marks == sorted(marks)
    assert set(t.phases()) == {"spawn", "create", "start", "run", "record", "delete"}


def test_timings_mark_every_phase_with_a_store_too(tmp_path, make_bundle, new_id):
    """With a store, the record's reconcile may read the exit first: recorded is marked all the same."""
    with ocirt.Runtime.open(str(tmp_path / "root")) as rt:
        c = rt.create(new_id(), make_bundle("true"))
        c.start()
        c.wait(30)
        c.delete()
    assert set(c.timings.phases()) == {"spawn", "create", "start", "run", "record", "delete"}


def test_create_then_start_states(create, make_bundle, runtime):
    c = create(make_bundle("sleep", "1000"))
    assert c.state.status is ContainerStatus.CREATED
    assert c.update_status().status is ContainerStatus.CREATED
    assert c.state.pid and os.path.exists(f"/proc/{c.state.pid}")
    assert c.spec["process"]["args"] == ["sleep", "1000"]
    c.start()
    assert c.update_status().status is ContainerStatus.RUNNING
    assert c.state.started_at is not None and c.state.finished_at is None
    assert runtime.containers() == {c.id: c}
    c.kill(signal.SIGKILL)
    assert c.wait(30) == 137
    assert c.update_status().status is ContainerStatus.STOPPED
    c.delete()
    assert runtime.containers() == {}
    with pytest.raises(ocirt.ContainerNotFound):
        c.start()
    with pytest.raises(ocirt.ContainerNotFound):
        c.delete()


def test_sigterm_without_pid_namespace_is_143(run):
    # As init of its own pid namespace, a process ignores signals it has no
    # handler for; sharing the host's namespace, SIGTERM kills it.
    c = run("sleep", "1000", pid_ns=False)
    c.kill("TERM")
    assert c.wait(30) == 143


def test_update_status_sees_exit_and_reads_exit_file(run):
    c = run("sh", "-c", "exit 3")
    # wait for the exit without touching state: update_status must get there itself
    assert ocirt.native.wait_file(c._files.exit_dir, c.id, 30)
    st = c.update_status()
    assert (st.status, st.exit_code, st.oom_killed) == (ContainerStatus.STOPPED, 3, False)
    expected = max(os.stat(c._files.exit_file).st_ctime, st.started_at.timestamp())  # clamped to the start
    assert st.finished_at.timestamp() == pytest.approx(expected, abs=1e-5)


def test_stop_escalates_to_sigkill_after_timeout(run):
    c = run("sleep", "1000")  # pid 1 of its namespace: ignores SIGTERM
    start = time.monotonic()
    c.stop(timeout=0.5)
    assert time.monotonic() - start >= 0.5
    assert c.state.exit_code == 137
    before = (c.state.exit_code, c.state.finished_at)
    c.stop()  # stopping a stopped container does nothing
    assert (c.state.exit_code, c.state.finished_at) == before
    c.delete()


def test_stop_uses_the_stop_signal_of_the_spec(run):
    def usr1(spec):
        spec.setdefault("annotations", {})[ocirt.spec.STOP_SIGNAL_ANNOTATION] = "SIGUSR1"

    c = run("sleep", "1000", pid_ns=False, edit=usr1)
    c.stop(timeout=30)
    assert c.state.exit_code == 128 + signal.SIGUSR1


def test_pause_resume_seen_in_freezer(run):
    c = run("sleep", "1000")
    c.pause()
    assert c.state.status is ContainerStatus.PAUSED
    assert frozen(c.state.pid)
    assert c.update_status().status is ContainerStatus.PAUSED
    c.resume()
    assert not frozen(c.state.pid)
    assert c.update_status().status is ContainerStatus.RUNNING
    c.delete(force=True)


def test_stop_of_a_paused_container_resumes_so_sigterm_lands(run):
    c = run("sleep", "1000", pid_ns=False)
    c.pause()
    c.stop(timeout=30)
    assert c.state.exit_code == 143  # SIGTERM did it, not the SIGKILL escalation


def test_kill_of_a_container_that_exited_unseen_records_the_exit(run):
    c = run("true")
    assert ocirt.native.wait_file(c._files.exit_dir, c.id, 30)  # exited; state not told
    assert c.state.status is ContainerStatus.RUNNING
    with pytest.raises(ocirt.InvalidState, match="has exited"):
        c.kill("TERM")
    assert (c.state.status, c.state.exit_code) == (ContainerStatus.STOPPED, 0)


def test_delete_running_needs_force(run):
    c = run("sleep", "1000")
    with pytest.raises(ocirt.InvalidState, match="force"):
        c.delete()
    assert c.update_status().status is ContainerStatus.RUNNING
    c.delete(force=True)


def test_delete_created_container(create, make_bundle):
    c = create(make_bundle("true"))
    c.delete()
    with pytest.raises(ocirt.ContainerNotFound):
        c.update_status()


def test_wait_timeout(run):
    c = run("sleep", "1000")
    with pytest.raises(ocirt.Timeout):
        c.wait(timeout=0.05)
    assert c.state.status is ContainerStatus.RUNNING
    c.delete(force=True)


def test_oom_killed_under_a_small_memory_limit(run):
    # The shell itself holds 64 MB: the OOM killer picks it.
    c = run("sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a)", memory=16 * 1024 * 1024)
    code = c.wait(60)
    assert code == 137
    assert c.state.oom_killed


def test_logs_stdout_stderr_and_partial_lines(run):
    c = run("sh", "-c", "echo out; echo err >&2; printf 'no newline'")
    assert c.wait(30) == 0
    records = list(c.logs())
    assert [(r.stream, r.text) for r in records if r.stream == "stdout"] == [("stdout", "out"), ("stdout", "no newline")]
    assert [(r.stream, r.text) for r in records if r.stream == "stderr"] == [("stderr", "err")]
    assert all(r.time.tzinfo is not None for r in records)


@contextlib.contextmanager
def planted_fd(tmp_path) -> Iterator[str]:
    """An inheritable fd of this process on a uniquely named file: no container or conmon may get it."""
    marker = str(tmp_path / f"leak-marker-{os.urandom(4).hex()}")
    fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(fd, True)
    try:
        yield marker
    finally:
        os.close(fd)


def fd_targets(pid: int) -> set:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return out


def test_container_sees_only_stdio_fds(run, tmp_path):
    with planted_fd(tmp_path):
        # ls lists the shell's fds from a process of its own ("; exit" keeps
        # busybox sh from exec'ing ls in its place).
        c = run("sh", "-c", "ls /proc/$$/fd; exit 0")
    assert c.wait(30) == 0
    assert sorted(r.text for r in c.logs()) == ["0", "1", "2"]


def test_no_fd_of_ours_reaches_conmon_or_the_container(create, make_bundle, tmp_path):
    with planted_fd(tmp_path) as marker:
        c = create(make_bundle("sleep", "1000"))
        # conmon closes its own stray fds only once the container has exited: look now.
        assert marker not in fd_targets(c.conmon_pid)
        assert marker not in fd_targets(c.state.pid)
        c.start()
        assert marker not in fd_targets(c.state.pid)
    c.delete(force=True)


def test_conmon_gets_devnull_its_error_pipe_and_two_sockets_and_its_cgroup_first(tmp_path, fakes_dir, make_bundle, new_id):
    """A recording fake conmon: its fds before the start byte, its cgroups when the byte came."""
    record = str(tmp_path / "record")
    env = {"PATH": os.environ["PATH"], "OCIRT_FAKE_RECORD": record}
    rt = ocirt.Runtime(tmp_path / "rt", conmon_path=os.path.join(fakes_dir, "conmon-record"), conmon_env=env)
    cid = new_id()
    with planted_fd(tmp_path), rt:
        with pytest.raises(ocirt.ConmonError, match="fake conmon: recorded"):
            rt.create(cid, make_bundle())
    with open(record + ".fds") as f:
        fds = {int(line.split()[-3]): line.split()[-1] for line in f if " -> " in line}
    fds = {fd: target for fd, target in fds.items() if target != os.path.join(fakes_dir, "conmon-record")}  # the shell's script
    assert fds[0] == "/dev/null" and fds[1] == fds[2] and fds[1].startswith("pipe:")
    assert fds[3].startswith("socket:") and fds[4].startswith("socket:")
    assert sorted(fds) == [0, 1, 2, 3, 4]
    with open(record + ".cgroup") as f:
        joined = {frozenset(filter(None, line.split(":")[1].split(","))): line.rstrip("\n") for line in f}
    assert all(joined[h.controllers].endswith(f"/ocirt-conmon-{cid}") for h in Cgroupfs().hierarchies())


def test_many_containers_in_parallel(run):
    cs = [run("sh", "-c", f"exit {i}") for i in range(6)]
    assert [c.wait(60) for c in cs] == list(range(6))
    for c in cs:
        c.delete()


def test_runtime_reuses_an_id_after_delete_and_ignores_a_stale_exit_file(create, make_bundle, new_id, runtime):
    cid = new_id()
    c = create(make_bundle("sh", "-c", "exit 5"), cid=cid)
    c.start()
    assert c.wait(30) == 5
    c.delete()
    with open(os.path.join(runtime.dirs.exits, cid), "w") as f:
        f.write("5")  # as if left behind by the first run
    c = create(make_bundle("sh", "-c", "exit 6"), cid=cid)
    c.start()
    assert c.wait(30) == 6
    c.delete()


def test_a_conmon_that_dies_during_wait_leaves_wait_on_the_container_then_an_error(run, runtime):
    """wait follows a container that outlives its conmon to its end (its
    init's pidfd), then raises: conmon recorded no exit code."""
    c = run("sleep", "1000")
    result: dict = {}
    waiter = threading.Thread(target=lambda: result.setdefault("error", _raised(c.wait, 60)))
    waiter.start()
    until(lambda: inotify_watching(runtime.dirs.exits))  # wait() is blocked on the exit file
    fd = ocirt.native.pidfd_open(c.conmon_pid)
    try:
        ocirt.native.pidfd_send_signal(fd, signal.SIGKILL)
        assert ocirt.native.wait_pids([c.conmon_pid], 30) == []
    finally:
        os.close(fd)
    assert waiter.is_alive() and c.state.exit_code is None  # the container runs on
    c.kill()  # through its init's pidfd
    waiter.join(60)
    assert not waiter.is_alive()
    assert isinstance(result["error"], ocirt.ConmonError)
    assert c.state.exit_code == -1
    reap_orphans()
    c.delete(force=True)


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as e:
        return e
    return None


def test_terminal_output_goes_to_the_log(create, make_bundle):
    def tty(spec):
        spec["process"]["terminal"] = True

    c = create(make_bundle("sh", "-c", "tty; echo hi", edit=tty), terminal=True)
    c.start()
    assert c.wait(30) == 0
    assert [r.text for r in c.logs()] == ["/dev/pts/0\r", "hi\r"]  # a terminal writes \r\n
    c.delete()


def test_stop_without_pid_namespace_kills_every_process(run):
    # No pid namespace: SIGKILL to init alone would leave its child; runc kill --all takes both.
    c = run("sh", "-c", "trap '' TERM; echo ready; sleep 1000 & wait", pid_ns=False)
    assert next(c.logs(follow=True)).text == "ready"  # the trap is set
    c.stop(timeout=0.2)
    assert c.state.exit_code == 137
    c.delete()  # would fail (EBUSY on the cgroup) if the sleep survived


def test_whole_lifecycle_on_the_fallback_paths(make_bundle, tmp_path, new_id):
    """No pidfd, no inotify (as on old kernels): kill(pid, 0) and stat backoff."""
    import subprocess
    import sys

    script = (
        "import sys, ocirt; from ocirt import native;"
        "assert not native.PIDFD_DEFAULT and not native.INOTIFY_DEFAULT;"
        f"rt = ocirt.Runtime({str(tmp_path / 'rt')!r});"
        f"c = rt.create({new_id()!r}, {make_bundle('sh', '-c', 'exit 9')!r}); c.start();"
        "code = c.wait(30); c.delete(); print(code)"
    )
    env = dict(os.environ, OCIRT_NO_PIDFD="1", OCIRT_NO_INOTIFY="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    reap_orphans()  # that process was no subreaper: its conmon ended as ours
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "9\n", "")


def test_log_size_max_keeps_the_log_small_and_its_end_with_no_pivot_and_sync_log(make_runtime, make_bundle, new_id):
    rt = make_runtime(log_size_max=4096, no_pivot=True, sync_log=True)
    c = rt.create(new_id(), make_bundle("seq", "1", "2000"))  # about 9 KB of output
    c.start()
    assert c.wait(30) == 0
    assert os.path.getsize(c.log_path) <= 4096
    texts = [r.text for r in c.logs()]
    assert texts[-1] == "2000" and len(texts) < 2000  # conmon keeps the newest lines
    c.delete()


def test_follow_reads_every_line_across_log_rotations(make_runtime, make_bundle, new_id):
    rt = make_runtime(log_size_max=4096)
    c = rt.create(new_id(), make_bundle("sh", "-c", 'while read n; do seq "$n" "$((n + 49))"; done'), stdin=True)
    with attach.connect(os.path.join(rt.dirs.sockets, c.id), send_input=True) as sock:
        c.start()
        follow = c.logs(follow=True)
        seen = []
        # Each batch, about 2.5 KB of log, rotates the 4 KB log at most once: the
        # follower is never more than one log behind (further, it could not see
        # the files it missed: conmon keeps no old ones).
        for first in range(1, 1001, 50):
            sock.sendall(f"{first}\n".encode())
            while not seen or seen[-1] != str(first + 49):
                seen.append(next(follow).text)
        sock.shutdown(socket.SHUT_WR)  # the shell reads EOF and exits: the follow ends
        assert list(follow) == []
    assert seen == [str(i) for i in range(1, 1001)]
    assert c.wait(30) == 0 and os.path.getsize(c.log_path) <= 4096
    c.delete()


def test_logs_tail_since_and_until_choose_records_and_follow_starts_at_the_tail(create, make_bundle):
    c = create(make_bundle("sh", "-c", "seq 1 5; echo e >&2; read x"), stdin=True)  # conmon holds stdin open: it waits
    c.start()
    c.wait_for_log("e")
    records = list(c.logs())
    assert [r.text for r in c.logs(tail=2)] == ["5", "e"]
    assert [r.text for r in c.logs(tail=2, stream="stdout")] == ["4", "5"]
    assert list(c.logs(tail=0)) == []
    middle = records[2].time
    assert [r.text for r in c.logs(since=middle)] == [r.text for r in records if r.time >= middle]
    assert [r.text for r in c.logs(until=middle)] == [r.text for r in records if r.time <= middle]
    follow = c.logs(follow=True, tail=1)
    assert next(follow).text == "e"  # the last one written so far, then what comes
    c.kill(signal.SIGKILL)
    assert list(follow) == []
    with pytest.raises(ocirt.InvalidArgument, match="tail must be a whole number"):
        c.logs(follow=True, tail=-1)
    c.wait(30)
    c.delete()


def test_stdin_gives_the_container_a_pipe_from_conmon(create, make_bundle):
    c = create(make_bundle("sh", "-c", "readlink /proc/self/fd/0"), stdin=True)
    c.start()
    assert c.wait(30) == 0
    assert [r.text for r in c.logs()][0].startswith("pipe:")
    c.delete()


def test_start_reads_runcs_exec_fifo_and_runc_sees_it_running(create, make_bundle, runtime):
    c = create(make_bundle("sleep", "1000"))
    fifo = os.path.join(runtime.oci.state_dir, c.id, "exec.fifo")
    assert os.path.exists(fifo)
    c.start()
    with open(f"/proc/{c.state.pid}/comm") as f:
        assert f.read() == "sleep\n"  # exec'd by the time start returns: signals reach it, not runc init
    assert not os.path.exists(fifo)  # as `runc start` leaves it
    assert runtime.oci.state(c.id)["status"] == "running"
    c.delete(force=True)


def test_start_with_a_poststart_hook_goes_through_runc_start(create, make_bundle, tmp_path):
    marker = tmp_path / "poststart-ran"
    hooks = {"poststart": [{"path": "/bin/touch", "args": ["touch", str(marker)]}]}
    c = create(make_bundle("sleep", "1000", edit=lambda spec: spec.update(hooks=hooks)))
    c.start()
    assert marker.exists()
    with open(f"/proc/{c.state.pid}/comm") as f:
        assert f.read() == "sleep\n"
    c.delete(force=True)


def test_start_after_the_init_died_is_the_runtimes_error_not_a_hang(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    assert c._monitor.init.signal(signal.SIGKILL)
    assert ocirt.native.wait_pids([c.state.pid], 30) == []
    with pytest.raises(ocirt.RuntimeCommandError, match="start"):
        c.start()
    c.delete(force=True)


def test_status_read_from_runcs_files_is_what_runc_state_says(create, make_bundle, runtime):
    c = create(make_bundle("sleep", "1000"))
    seen = []
    for step in (lambda: None, c.start, c.pause, c.resume):
        step()
        seen.append((runtime.oci.status_from_files(c.id, c._freezer_dir()), runtime.oci.state(c.id)["status"]))
    assert seen == [("created", "created"), ("running", "running"), ("paused", "paused"), ("running", "running")]
    # Once started, the exec.fifo is not looked for; the freezer still tells paused from running.
    assert runtime.oci.status_from_files(c.id, c._freezer_dir(), started=True) == "running"
    c.pause()
    assert runtime.oci.status_from_files(c.id, c._freezer_dir(), started=True) == "paused"
    c.delete(force=True)
    assert runtime.oci.status_from_files(c.id, c._freezer_dir() or "/nonexistent") == "stopped"


def test_stop_of_a_created_container_kills_at_once(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    c.stop(timeout=1000)  # would wait it out if it sent SIGTERM to runc's init first
    assert (c.state.status, c.state.exit_code) == (ContainerStatus.STOPPED, 137)
    c.delete()


def test_wait_for_status_sees_a_start_made_elsewhere(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    seen = []
    waiter = threading.Thread(target=lambda: seen.append(c.wait_for_status(["running", "paused"], timeout=30)))
    waiter.start()
    c.start()
    waiter.join()
    assert seen == [ContainerStatus.RUNNING]
    c.delete(force=True)


def test_wait_for_status_stopped_is_the_exit_not_a_poll(run):
    c = run("true")
    # An hour between looks at the record: only the exit's own notice can end this in time.
    assert c.wait_for_status([ContainerStatus.STOPPED], timeout=30, interval=3600) is ContainerStatus.STOPPED
    assert c.state.exit_code == 0
    c.delete()


def test_wait_for_status_errors(run):
    c = run("sleep", "1000")
    with pytest.raises(ocirt.InvalidArgument, match="unknown container status 'exited-ish'"):
        c.wait_for_status(["exited-ish"])
    with pytest.raises(ocirt.InvalidArgument, match="interval"):
        c.wait_for_status(["paused"], interval=0)
    with pytest.raises(ocirt.Timeout, match="still running, not paused"):
        c.wait_for_status(["paused"], timeout=0.2, interval=0.05)
    c.delete(force=True)


def test_wait_for_status_ends_when_another_process_deletes_it(make_bundle, tmp_path):
    root = str(tmp_path / "stored")
    first, second = ocirt.Runtime.open(root), ocirt.Runtime.open(root)
    try:
        c = first.create("waited-on", make_bundle("sleep", "1000"))
        errors = []

        def wait() -> None:
            try:
                c.wait_for_status(["running"], timeout=30, interval=0.01)
            except ocirt.ContainerNotFound as e:
                errors.append(e)

        waiter = threading.Thread(target=wait)
        waiter.start()
        second.get("waited-on").delete(force=True)
        waiter.join()
        assert len(errors) == 1
    finally:
        for rt in (first, second):
            for leftover in rt.list():
                leftover.delete(force=True)
            rt.close()
        reap_orphans()  # the conmon first launched, ended by second
