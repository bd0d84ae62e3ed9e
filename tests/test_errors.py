"""Bad input and failures: a clear error, and nothing left behind."""

from __future__ import annotations

import json
import os

import pytest

import ocirt
from ocirt import ContainerStatus
from ocirt.cgroups.systemd import systemd_running


def assert_nothing_made(runtime: ocirt.Runtime) -> None:
    runtime.close()  # and the cgroup parents it kept for its next container go
    for d in (runtime.dirs.containers, runtime.dirs.exits, runtime.dirs.sockets):
        assert os.listdir(d) == [], d
    assert runtime.containers() == {}


@pytest.mark.parametrize(
    "cid, words",
    [
        ("", "empty"),
        (".", "invalid"),
        ("..", "invalid"),
        ("a/b", "invalid"),
        ("-lead", "invalid"),
        ("sp ace", "invalid"),
        ("x" * 129, "129"),
        (7, "string"),
    ],
)
def test_bad_container_ids(runtime, make_bundle, cid, words):
    with pytest.raises(ocirt.InvalidArgument, match=words):
        runtime.create(cid, make_bundle())
    assert_nothing_made(runtime)


def test_longest_id_is_fine(create, make_bundle, new_id):
    cid = new_id().ljust(128, "x")
    c = create(make_bundle(), cid=cid)
    assert (c.id, c.state.status) == (cid, ContainerStatus.CREATED)
    assert os.path.isdir(f"/run/runc/{cid}")
    c.delete()


def test_duplicate_id_leaves_the_first_untouched(runtime, run, make_bundle, make_runtime):
    c = run("sleep", "1000")
    with pytest.raises(ocirt.ContainerExists):
        runtime.create(c.id, make_bundle())
    assert c.update_status().status is ContainerStatus.RUNNING
    assert os.path.exists(c._files.config)
    other = make_runtime()  # another tmp_dir, same runc
    with pytest.raises(ocirt.ContainerExists):
        other.create(c.id, make_bundle())
    assert c.update_status().status is ContainerStatus.RUNNING
    c.delete(force=True)


def test_missing_bundle_and_config(runtime, tmp_path):
    with pytest.raises(ocirt.InvalidArgument, match="does not exist"):
        runtime.create("x", tmp_path / "nope")
    with pytest.raises(ocirt.InvalidArgument, match="no config.json"):
        runtime.create("x", tmp_path)
    assert_nothing_made(runtime)


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "cannot read"),
        ("[]", "not a JSON object"),
        (json.dumps({"root": {"path": "rootfs"}}), "process.args"),
        (json.dumps({"process": {"args": ["true"]}}), "root.path"),
        (json.dumps({"process": {"args": ["true"]}, "root": {"path": "missing"}}), "root filesystem"),
    ],
)
def test_malformed_config(runtime, tmp_path, content, words):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ocirt.InvalidArgument, match=words):
        runtime.create("x", tmp_path)
    assert_nothing_made(runtime)


@pytest.mark.parametrize("sig", [0, -1, 65, 1000, "NOPE", True, 1.5])
def test_bad_signals(run, sig):
    c = run("sleep", "1000")
    with pytest.raises(ocirt.InvalidArgument):
        c.kill(sig)
    assert c.update_status().status is ContainerStatus.RUNNING
    c.delete(force=True)


def test_verbs_in_the_wrong_state(create, make_bundle):
    c = create(make_bundle("sleep", "1000"))
    for verb in (c.pause, c.resume):
        with pytest.raises(ocirt.InvalidState, match="created"):
            verb()
    c.start()
    with pytest.raises(ocirt.InvalidState, match="running"):
        c.start()
    with pytest.raises(ocirt.InvalidState, match="running"):
        c.resume()
    c.stop(timeout=0)
    for verb in (c.start, c.pause, lambda: c.kill("TERM"), lambda: c.exec(["true"])):
        with pytest.raises(ocirt.InvalidState, match="stopped"):
            verb()
    c.delete()


@pytest.mark.parametrize("timeout", [-1, "5", float("nan")])
def test_bad_timeouts(run, timeout):
    c = run("sleep", "1000")
    with pytest.raises(ocirt.InvalidArgument, match="timeout"):
        c.stop(timeout=timeout)
    with pytest.raises(ocirt.InvalidArgument, match="timeout"):
        c.wait(timeout=timeout)
    c.delete(force=True)


def test_runtime_arguments(tmp_path):
    with pytest.raises(ocirt.InvalidArgument, match="'cgroupfs', 'systemd'"):
        ocirt.Runtime(tmp_path, cgroup_manager="nope")
    with pytest.raises(ocirt.BinaryNotFound, match="/no/such/runc"):
        ocirt.Runtime(tmp_path, runtime_path="/no/such/runc")
    with pytest.raises(ocirt.BinaryNotFound, match="/no/such/conmon"):
        ocirt.Runtime(tmp_path, conmon_path="/no/such/conmon")
    with pytest.raises(ocirt.InvalidArgument, match="log_size_max"):
        ocirt.Runtime(tmp_path, log_size_max=-5)
    assert not os.path.exists(tmp_path / "exits")


def test_runtime_makes_its_dirs_and_accepts_existing(tmp_path):
    ocirt.Runtime(tmp_path / "rt")
    rt = ocirt.Runtime(tmp_path / "rt")
    assert os.path.isdir(rt.dirs.exits) and os.path.isdir(rt.dirs.sockets)


@pytest.mark.skipif(systemd_running(), reason="systemd runs here: the manager would go ahead")
def test_systemd_manager_without_systemd_fails_cleanly(make_runtime, make_bundle):
    rt = make_runtime(cgroup_manager="systemd")
    with pytest.raises(ocirt.CgroupError, match="systemd"):
        rt.create("ocirt-test-systemd", make_bundle())
    assert_nothing_made(rt)


@pytest.mark.parametrize("where", ["/proc/x", "/dev/null/x"])
def test_an_unusable_run_directory_is_an_ocirt_error(where):
    with pytest.raises(ocirt.InvalidArgument, match=f"cannot keep ocirt's run files in {where}"):
        ocirt.Runtime(where)


def test_a_corrupt_state_database_is_an_ocirt_error_and_leaves_nothing(tmp_path):
    (tmp_path / "state.db").write_bytes(b"not a database" * 100)
    with pytest.raises(ocirt.StoreError, match="not a database"):
        ocirt.Runtime.open(str(tmp_path))
    assert os.listdir(tmp_path) == ["state.db"]  # no run dir made for nothing


def test_a_conmon_that_exits_at_once_is_a_conmon_error(tmp_path, make_bundle, new_id):
    rt = ocirt.Runtime(tmp_path / "rt", conmon_path="/bin/false")
    with pytest.raises(ocirt.ConmonError, match="status 1"):
        rt.create(new_id(), make_bundle())
    assert_nothing_made(rt)


# -- fault injection: a fake runtime and fake conmons ----------------------


@pytest.fixture
def failing_runtime(make_runtime, fakes_dir):
    def make(fail: str = "", **env: str) -> ocirt.Runtime:
        conmon_env = {"PATH": os.environ["PATH"], "OCIRT_FAKE_FAIL": fail, **env}
        return make_runtime(runtime_path=os.path.join(fakes_dir, "runc-failing"), conmon_env=conmon_env)

    return make


def test_runtime_create_failure_carries_its_message(failing_runtime, make_bundle, new_id):
    rt = failing_runtime("create")
    with pytest.raises(ocirt.ConmonError, match="fake runtime: create failed on purpose"):
        rt.create(new_id(), make_bundle())
    assert_nothing_made(rt)


def test_real_runtime_create_failure_leaves_nothing(runtime, make_bundle, new_id):
    bundle = make_bundle("/no/such/program")
    with pytest.raises(ocirt.ConmonError, match="no such file|not found"):
        runtime.create(new_id(), bundle)
    assert_nothing_made(runtime)


def test_runtime_start_failure_is_a_command_error(failing_runtime, make_bundle, new_id, monkeypatch):
    rt = failing_runtime()
    c = rt.create(new_id(), make_bundle("true"))
    try:
        monkeypatch.setenv("OCIRT_FAKE_FAIL", "start")
        with pytest.raises(ocirt.RuntimeCommandError) as info:
            c.start()
        err = info.value
        assert err.argv[-2:] == ["start", c.id] and err.status == 3
        assert "failed on purpose" in err.stderr and "start" in str(err)
        assert c.state.status is ContainerStatus.CREATED
    finally:
        monkeypatch.delenv("OCIRT_FAKE_FAIL")
        c.delete()


@pytest.mark.parametrize(
    "output, error, words",
    [
        ("not json", ocirt.RuntimeCommandError, "unparsable"),
        ('{"id": "x"}', ocirt.RuntimeCommandError, "without status"),
        ('{"status": "exploded"}', ocirt.OcirtError, "unknown status 'exploded'"),
    ],
)
def test_runtime_state_garbage(failing_runtime, make_bundle, new_id, monkeypatch, output, error, words):
    rt = failing_runtime()
    c = rt.create(new_id(), make_bundle("true"))
    try:
        monkeypatch.setenv("OCIRT_FAKE_STATE", output)
        with pytest.raises(error, match=words):
            c.update_status()
    finally:
        monkeypatch.delenv("OCIRT_FAKE_STATE")
        c.delete()


@pytest.mark.parametrize(
    "fake, error, words",
    [
        ("conmon-crash", ocirt.ConmonError, "status 1: conmon: option parsing failed: fake crash"),
        ("conmon-garbage", ocirt.ConmonError, "garbage on the sync pipe: b'this is not json'"),
        ("conmon-silent", ocirt.ConmonError, "without reporting"),
        ("conmon-hang", ocirt.Timeout, "sync message"),
    ],
)
def test_broken_conmon(tmp_path, fakes_dir, make_bundle, new_id, fake, error, words):
    rt = ocirt.Runtime(tmp_path / "rt", conmon_path=os.path.join(fakes_dir, fake))
    with pytest.raises(error, match=words):
        rt.create(new_id(), make_bundle(), timeout=0.5)
    assert_nothing_made(rt)


def test_missing_conmon_at_create_is_reported(tmp_path, make_bundle, new_id):
    fake = tmp_path / "conmon"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    rt = ocirt.Runtime(tmp_path / "rt", conmon_path=str(fake))
    fake.unlink()  # gone between Runtime() and create()
    with pytest.raises(ocirt.ConmonError, match="cannot run conmon"):
        rt.create(new_id(), make_bundle())
    assert_nothing_made(rt)


def test_terminal_must_match_the_spec(runtime, make_bundle):
    with pytest.raises(ocirt.InvalidArgument, match="terminal"):
        runtime.create("ocirt-test-tty", make_bundle(), terminal=True)
    assert_nothing_made(runtime)


def test_runtime_gone_at_create_is_reported(tmp_path, make_bundle, new_id):
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\nexec runc \"$@\"\n")
    fake.chmod(0o755)
    rt = ocirt.Runtime(tmp_path / "rt", runtime_path=str(fake))
    fake.unlink()  # gone between Runtime() and create(): conmon refuses it
    with pytest.raises(ocirt.ConmonError, match=str(fake)):
        rt.create(new_id(), make_bundle())
    assert_nothing_made(rt)
