"""exec sessions in real containers."""

from __future__ import annotations

import select
import threading

import pytest

import ocirt
from ocirt import attach
from ocirt.exec import ExecSession

from .observe import until


@pytest.fixture
def sleeper(run):
    c = run("sleep", "1000")
    yield c
    c.delete(force=True)


def texts(session):
    return [r.text for r in session.logs()]


def test_exec_env_user_cwd_and_exit_code(sleeper):
    s = sleeper.exec(["sh", "-c", 'echo "$FOO"; id -u; id -g; pwd; exit 4'], env={"FOO": "bar"}, user="nobody", cwd="/tmp")
    assert s.wait(30) == 4
    assert texts(s) == ["bar", "65534", "65534", "/tmp"]
    assert sleeper.state.exec_sessions[s.id] is s
    assert s.wait() == 4  # idempotent


def test_exec_numeric_user_and_group(sleeper):
    s = sleeper.exec(["id"], user="123:456")
    assert s.wait(30) == 0
    assert texts(s)[0].startswith("uid=123 gid=456")


def test_exec_inherits_container_env(run):
    c = run("sleep", "1000", env=["FROM_SPEC=yes"])
    s = c.exec(["sh", "-c", 'echo "$FROM_SPEC"'])
    assert s.wait(30) == 0
    assert texts(s) == ["yes"]
    c.delete(force=True)


def test_exec_stderr_and_stream(sleeper):
    s = sleeper.exec(["sh", "-c", "echo oops >&2"])
    assert s.wait(30) == 0
    assert [(r.stream, r.text) for r in s.logs()] == [("stderr", "oops")]


def test_exec_stop_terminates_all_sessions(sleeper):
    sessions = [sleeper.exec(["sleep", "1000"]) for _ in range(2)]
    sleeper.exec_stop(timeout=30)
    assert [s.exit_code for s in sessions] == [143, 143]


def test_exec_stop_escalates_to_sigkill(sleeper):
    s = sleeper.exec(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"], attach=True)
    assert s.attach.recv(100) == b"\x02ready\n"  # the trap is set (2: stdout)
    sleeper.exec_stop(timeout=0.2)
    assert s.exit_code == 137


def test_exec_of_missing_binary_reports_runtime_error(sleeper):
    with pytest.raises(ocirt.OcirtError, match="no-such-binary"):
        sleeper.exec(["no-such-binary"])
    assert sleeper.state.exec_sessions == {}


def status_fields(c, **kw):
    s = c.exec(["sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"], **kw)
    assert s.wait(30) == 0
    return dict(t.split(":\t") for t in texts(s))


def test_exec_cap_add(sleeper):
    assert not int(status_fields(sleeper)["CapEff"], 16) & (1 << 21)
    assert int(status_fields(sleeper, cap_add=["SYS_ADMIN"])["CapEff"], 16) & (1 << 21)  # CAP_SYS_ADMIN


def test_exec_no_new_privs_overrides_the_spec_either_way(run):
    on = run("sleep", "1000")  # runc spec's default: noNewPrivileges true
    off = run("sleep", "1000", edit=lambda spec: spec["process"].update(noNewPrivileges=False))
    try:
        assert status_fields(on)["NoNewPrivs"] == "1"
        assert status_fields(on, no_new_privs=False)["NoNewPrivs"] == "0"
        assert status_fields(off)["NoNewPrivs"] == "0"
        assert status_fields(off, no_new_privs=True)["NoNewPrivs"] == "1"
    finally:
        on.delete(force=True)
        off.delete(force=True)


def test_exec_session_fileno_is_readable_once_it_ends(sleeper):
    s = sleeper.exec(["sh", "-c", "exit 3"])
    readable, _, _ = select.select([s], [], [], 30)
    assert readable == [s] and s.wait(0) == 3


def test_exec_with_a_terminal(sleeper):
    s = sleeper.exec(["sh", "-c", "tty"], tty=True)
    assert s.wait(30) == 0
    assert texts(s)[0].startswith("/dev/pts/")


def test_exec_session_pid_is_the_exec_process(sleeper):
    s = sleeper.exec(["sh", "-c", "echo ready; exec sleep 1000"], attach=True)
    assert s.attach.recv(100) == b"\x02ready\n"

    def cmdline() -> bytes:
        with open(f"/proc/{s.pid}/cmdline", "rb") as f:
            return f.read()

    # "ready" comes just before the shell's exec, during which the command line reads empty
    until(lambda: cmdline() == b"sleep\x001000\x00", 30)
    assert cmdline() == b"sleep\x001000\x00"
    sleeper.exec_stop(timeout=0)  # SIGTERM first, then at once SIGKILL
    assert s.exit_code == 143


def test_exec_session_id_must_be_unique(sleeper):
    s = sleeper.exec(["true"], session_id="one")
    assert s.id == "one" and s.wait(30) == 0
    with pytest.raises(ocirt.InvalidArgument, match="already exists"):
        sleeper.exec(["true"], session_id="one")


@pytest.mark.parametrize("cmd", [[], "ls", [1], None])
def test_exec_bad_command(sleeper, cmd):
    with pytest.raises(ocirt.InvalidArgument):
        sleeper.exec(cmd)


def test_exec_bad_user_and_cwd(sleeper):
    with pytest.raises(ocirt.InvalidArgument, match="nosuchuser"):
        sleeper.exec(["true"], user="nosuchuser")
    with pytest.raises(ocirt.InvalidArgument, match="absolute"):
        sleeper.exec(["true"], cwd="relative")


def test_exec_needs_a_running_container(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    with pytest.raises(ocirt.InvalidState):
        c.exec(["true"])
    c.delete()


def test_delete_ends_exec_sessions(run):
    c = run("sleep", "1000")
    s = c.exec(["sleep", "1000"])
    c.delete(force=True)
    with pytest.raises(ocirt.ContainerNotFound):
        s.wait(1)


def test_exec_attached_gets_every_byte_live(sleeper):
    import os

    from ocirt import attach

    s = sleeper.exec(["sh", "-c", "echo early; echo err >&2; exit 2"], attach=True)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        attach.relay(s.attach, out_w, err_w)
    finally:
        os.close(out_w)
        os.close(err_w)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        assert (out.read(), err.read()) == ("early\n", "err\n")  # nothing lost to a late attach
    assert s.wait(30) == 2


def test_exec_sessions_lists_every_session_with_its_command_and_exit_code(sleeper):
    ended = sleeper.exec(["sh", "-c", "exit 3"])
    assert ended.wait(30) == 3
    running = sleeper.exec(["sleep", "1000"])
    infos = sleeper.exec_sessions()
    assert [(i.id, i.command, i.exit_code, i.running) for i in infos] == [
        (ended.id, ["sh", "-c", "exit 3"], 3, False),
        (running.id, ["sleep", "1000"], None, True),
    ]
    assert infos[0].started_at <= infos[0].finished_at <= infos[1].started_at and infos[1].finished_at is None
    assert sleeper.exec_info(running.id).pid == running.pid
    with pytest.raises(ocirt.ExecSessionNotFound, match=f"container {sleeper.id} has no exec session nosuch"):
        sleeper.exec_info("nosuch")
    running.__exit__(None, None, None)
    assert sleeper.exec_info(running.id).exit_code == 137


def test_only_the_newest_ended_sessions_are_kept_with_their_files(sleeper, monkeypatch):
    import os

    from ocirt import exec as execs

    monkeypatch.setattr(execs, "KEPT_ENDED", 2)
    sessions = [sleeper.exec(["true"]) for _ in range(4)]
    for s in sessions:
        assert s.wait(30) == 0
    assert [i.id for i in sleeper.exec_sessions()] == [s.id for s in sessions[2:]]
    exec_dir = os.path.join(os.path.dirname(sleeper.log_path), "exec")
    assert sorted(os.listdir(exec_dir)) == sorted(s.id for s in sessions[2:])


def test_exec_run_stdin_has_a_socket_its_session_never_closes_under_it(runtime, monkeypatch):
    """The feeder thread may only reach its socket once the session is left
    (its process ignored stdin and exited): then the session's socket is
    closed, and a feeder on it failed (or, a moment earlier, polled fd -1 forever)."""
    left = threading.Event()
    exit_session = ExecSession.__exit__

    def exit_and_tell(session, *exc):
        exit_session(session, *exc)
        left.set()

    real_feed, failures = attach.feed, []

    def late_feed(sock, data):
        assert left.wait(60)
        try:
            real_feed(sock, data)
        except BaseException as e:
            failures.append(e)

    monkeypatch.setattr(ExecSession, "__exit__", exit_and_tell)
    monkeypatch.setattr(attach, "feed", late_feed)
    with runtime.run(["sleep", "1000"], detach=True) as c:
        assert c.exec_run(["true"], stdin="ignored") == (0, "", "")
    assert failures == []
