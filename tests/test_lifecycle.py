"""Every verb on real containers (runc + conmon + busybox)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import ocirt
from ocirt import ContainerStatus

from .cli_support import reap_orphans


def freezer_state(pid: int) -> str:
    """The freezer state of the cgroup `pid` is in (cgroup v1)."""
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if ":freezer:" in line)
    with open(f"/sys/fs/cgroup/freezer{path}/freezer.state") as f:
        return f.read().strip()


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
    assert c.state.started_at <= c.state.finished_at
    c.delete()
    assert c.state.status is ContainerStatus.STOPPED


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
    assert st.finished_at.timestamp() == pytest.approx(os.stat(c._files.exit_file).st_ctime)


def test_stop_escalates_to_sigkill_after_timeout(run):
    c = run("sleep", "1000")  # pid 1 of its namespace: ignores SIGTERM
    start = time.monotonic()
    c.stop(timeout=0.5)
    assert time.monotonic() - start >= 0.5
    assert c.state.exit_code == 137
    c.stop()  # stopping a stopped container does nothing
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
    assert freezer_state(c.state.pid) == "FROZEN"
    assert c.update_status().status is ContainerStatus.PAUSED
    c.resume()
    assert freezer_state(c.state.pid) == "THAWED"
    assert c.update_status().status is ContainerStatus.RUNNING
    c.delete(force=True)


def test_stop_of_a_paused_container_resumes_so_sigterm_lands(run):
    c = run("sleep", "1000", pid_ns=False)
    c.pause()
    c.stop(timeout=30)
    assert c.state.exit_code == 143  # SIGTERM did it, not the SIGKILL escalation


def test_kill_of_exited_container_is_invalid_state(run):
    c = run("true")
    c.wait(30)
    with pytest.raises(ocirt.InvalidState):
        c.kill("TERM")


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


def test_container_sees_only_stdio_fds(run):
    leak = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        # ls lists the shell's fds from a process of its own ("; exit" keeps
        # busybox sh from exec'ing ls in its place).
        c = run("sh", "-c", "ls /proc/$$/fd; exit 0")
    finally:
        os.close(leak)
    assert c.wait(30) == 0
    assert sorted(r.text for r in c.logs()) == ["0", "1", "2"]


def test_conmon_gets_no_caller_stdio_and_no_stray_fds(create, make_bundle):
    leak = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        c = create(make_bundle("sleep", "1000"))
    finally:
        os.close(leak)
    fds = {int(fd): os.readlink(f"/proc/{c.conmon_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{c.conmon_pid}/fd")}
    assert fds[0] == fds[1] == fds[2] == "/dev/null"
    for fd in (0, 1, 2):
        assert os.readlink(f"/proc/self/fd/{fd}") != fds[fd] or fds[fd] == "/dev/null"
    assert all(not target.startswith("/proc") for target in fds.values())


def test_many_containers_in_parallel(run):
    cs = [run("sh", "-c", f"exit {i}") for i in range(6)]
    assert [c.wait(60) for c in cs] == list(range(6))
    for c in cs:
        c.delete()


def test_runtime_reuses_an_id_after_delete(create, make_bundle, new_id):
    cid = new_id()
    bundle = make_bundle("sh", "-c", "exit 5")
    for _ in range(2):
        c = create(bundle, cid=cid)
        c.start()
        assert c.wait(30) == 5  # never the previous run's exit file
        c.delete()


def test_terminal_output_goes_to_the_log(create, make_bundle):
    def tty(spec):
        spec["process"]["terminal"] = True

    c = create(make_bundle("sh", "-c", "tty; echo hi", edit=tty), terminal=True)
    c.start()
    assert c.wait(30) == 0
    assert [r.text for r in c.logs()] == ["/dev/pts/0", "hi"]
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


def test_stop_of_a_created_container_kills_at_once(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    c.stop(timeout=1000)  # would wait it out if it sent SIGTERM to runc's init first
    assert (c.state.status, c.state.exit_code) == (ContainerStatus.STOPPED, 137)
    c.delete()
