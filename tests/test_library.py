"""The high-level library for test code: run in one line, specs without a
bundle, context managers, exec_run, waiting for a log line, labels, prune."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import os
import struct
import subprocess
import termios
from datetime import timedelta

import pytest

import ocirt


def tree_digest(path: str) -> str:
    """Names, sizes and modes of everything under `path`: what a write would change."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        for name in sorted(dirs + files):
            st = os.lstat(os.path.join(root, name))
            h.update(f"{root}/{name} {st.st_size} {st.st_mode} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def test_run_gives_exit_code_and_output_and_leaves_nothing(runtime):
    result = runtime.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert (result.stdout_bytes, result.stderr_bytes) == (b"out\n", b"err\n")
    assert set(result.timings.phases()) >= {"create", "start", "run"}
    assert runtime.list() == []


def test_run_options_reach_the_container(runtime, tmp_path, rootfs):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "file").write_text("from the host\n")
    result = runtime.run(
        ["sh", "-c", "id -u; pwd; echo $GREETING; cat /data/file; touch /data/new 2>/dev/null || echo read-only; ls /sys/class/net"],
        rootfs=rootfs, env={"GREETING": "hello"}, user="nobody", workdir="/tmp", mounts=[(str(shared), "/data", "ro")],
    )  # fmt: skip
    assert result.stdout.splitlines() == ["65534", "/tmp", "hello", "from the host", "read-only", "lo"]  # network "none": loopback only
    assert not (shared / "new").exists()
    on_host = runtime.run(["ls", "/sys/class/net"], network="host").stdout.split()
    assert sorted(on_host) == sorted(os.listdir("/sys/class/net"))


def test_run_with_check_raises_container_error_and_removes_it(runtime):
    with pytest.raises(ocirt.ContainerError) as info:
        runtime.run(["sh", "-c", "echo broken >&2; exit 4"], check=True)
    assert (info.value.exit_code, info.value.stderr) == (4, "broken\n")
    assert "status 4: broken" in str(info.value)
    assert runtime.list() == []


def test_run_past_its_timeout_is_killed_and_removed(runtime):
    with pytest.raises(ocirt.Timeout, match="still running after 0.5s"):
        runtime.run(["sleep", "1000"], timeout=0.5)
    assert runtime.list() == []


def test_bad_run_options_are_refused_before_anything_is_made(runtime, tmp_path):
    for bad, words in (
        (dict(network="nosuch"), "no network named"), (dict(mounts=[("relative", "/x")]), "mount source"),
        (dict(mounts=[(str(tmp_path), "/a/../b")]), "mount destination"), (dict(labels={"a=b": "c"}), "label name"),
        (dict(limits=ocirt.Limits(memory=-1), memory="1g"), "memory limit"),
        (dict(stdin=42), "stdin must be bytes or str"), (dict(stdin=b"x", detach=True), "not with detach"),
    ):  # fmt: skip
        with pytest.raises(ocirt.InvalidArgument, match=words):
            runtime.run(["true"], **bad)
    bundles = os.path.join(runtime.tmp_dir, "bundles")
    assert runtime.list() == [] and (not os.path.exists(bundles) or os.listdir(bundles) == [])


def test_detached_run_and_create_are_deleted_when_their_with_block_ends(runtime, make_bundle, new_id):
    with runtime.run(["sleep", "1000"], detach=True) as c:
        assert c.state.status is ocirt.ContainerStatus.RUNNING
        code, out, err = c.exec_run(["sh", "-c", "echo hi; echo oops >&2; exit 2"])
        assert (code, out, err) == (2, "hi\n", "oops\n")
        with c.exec(["sleep", "1000"]) as session:
            pass
        assert session.exit_code == 137  # the block's end stopped it
    assert runtime.list() == []
    with pytest.raises(RuntimeError, match="boom"):
        with runtime.create(new_id(), make_bundle("sleep", "1000")) as created:
            raise RuntimeError("boom")
    assert created._deleted and runtime.list() == []


def test_create_from_a_spec_and_a_rootfs_writes_none_of_the_callers_files(runtime, base_spec, rootfs, new_id):
    spec = copy.deepcopy(base_spec)
    spec["process"]["args"] = ["sh", "-c", "echo from a spec"]
    spec["root"] = {"path": "rootfs", "readonly": True}
    kept, before = copy.deepcopy(spec), tree_digest(rootfs)
    c = runtime.create(new_id(), spec=spec, rootfs=rootfs)
    c.start()
    assert c.wait(30) == 0 and [r.text for r in c.logs()] == ["from a spec"]
    c.delete()
    assert spec == kept and tree_digest(rootfs) == before
    with pytest.raises(ocirt.InvalidArgument, match="absolute root.path"):
        runtime.create(new_id(), spec=spec)  # relative root, no rootfs
    with pytest.raises(ocirt.InvalidArgument, match="not both"):
        runtime.create(new_id(), "/tmp", spec=spec, rootfs=rootfs)
    with pytest.raises(ocirt.InvalidArgument, match="needs a bundle"):
        runtime.create(new_id())


def test_wait_for_log_wakes_on_the_line_and_times_out_without_it(runtime, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    script = "echo starting; while [ ! -e /gate/go ]; do sleep 0.01; done; echo ready now; echo after >&2; sleep 1000"
    with runtime.run(["sh", "-c", script], mounts=[(str(gate), "/gate")], detach=True) as c:
        assert c.wait_for_log("starting", timeout=30).text == "starting"
        with pytest.raises(ocirt.Timeout, match="no line matching 'ready'"):
            c.wait_for_log("ready", timeout=0.3)  # it waits for the gate: not yet
        (gate / "go").touch()
        record = c.wait_for_log(r"ready \w+", timeout=30)
        assert record.text == "ready now" and record.stream == "stdout"
        assert c.wait_for_log(lambda r: r.stream == "stderr", timeout=30).text == "after"
        records = list(c.logs())
        assert [r.text for r in c.logs(tail=1)] == ["after"]
        assert [r.text for r in c.logs(stream="stderr")] == ["after"]
        assert [r.text for r in c.logs(since=records[1].time)] == ["ready now", "after"]
        assert [r.text for r in c.logs(until=records[0].time + timedelta(microseconds=0))] == ["starting"]
    with runtime.run(["echo", "done"], detach=True) as c:
        with pytest.raises(ocirt.InvalidState, match="without a line matching 'never'"):
            c.wait_for_log("never", timeout=30)


def test_labels_filter_lists_and_prune(tmp_path, make_bundle, new_id):
    with ocirt.Runtime.open(tmp_path / "root") as rt:
        a = rt.create(new_id(), make_bundle("sleep", "1000"), labels={"suite": "x", "kind": "db"})
        a.start()
        b = rt.create(new_id(), make_bundle("true"), labels={"suite": "y"}, name="bee")
        b.start()
        b.wait(30)
        assert [c.id for c in rt.list(label="suite=x")] == [a.id]
        assert [c.id for c in rt.list(label="suite")] == [a.id, b.id]
        assert [c.id for c in rt.list(label={"suite": "x", "kind": "db"})] == [a.id]
        assert [c.id for c in rt.list(status="stopped")] == [b.id]
        assert [c.id for c in rt.list(name="bee")] == [b.id]
        with pytest.raises(ocirt.InvalidArgument, match="status must be"):
            rt.list(status="sleeping")
        with ocirt.Runtime.open(tmp_path / "root") as other:  # another process's view
            assert other.get(a.id).labels == {"suite": "x", "kind": "db"}
        assert rt.oci.state(a.id).get("annotations", {}).get("kind") == "db"
        assert rt.prune() == [b.id]
        assert [c.id for c in rt.list()] == [a.id]
        assert rt.prune(label="suite=x") == [a.id]
        assert rt.list() == []


def test_errors_carry_the_container_and_the_status_that_refused(runtime, make_bundle, new_id):
    c = runtime.create(new_id(), make_bundle("sleep", "1000"))
    c.start()
    with pytest.raises(ocirt.InvalidState) as info:
        c.start()
    assert (info.value.container_id, info.value.status, info.value.verb) == (c.id, ocirt.ContainerStatus.RUNNING, "start")
    c.delete(force=True)
    with pytest.raises(ocirt.ContainerNotFound) as gone:
        c.kill()
    assert gone.value.container_id == c.id


def test_run_takes_the_id_it_is_given(runtime, new_id):
    cid = new_id()
    assert runtime.run(["true"], container_id=cid).container_id == cid
    with pytest.raises(ocirt.InvalidArgument, match="invalid container id"):
        runtime.run(["true"], container_id="no/slashes")


def test_run_sends_stdin_and_ends_it(runtime):
    assert runtime.run(["cat"], stdin=b"hello\nworld\n").stdout == "hello\nworld\n"
    assert runtime.run(["sh", "-c", "cat; echo end"], stdin="").stdout == "end\n"  # EOF at once
    assert runtime.run(["wc", "-c"], stdin="é").stdout.strip() == "2"  # str goes as UTF-8


def test_megabytes_of_binary_stdin_arrive_unchanged(runtime):
    data = os.urandom(3 << 20)  # far more than the socket buffers, and every byte value
    result = runtime.run(["md5sum"], stdin=data)
    assert result.stdout.split() == [hashlib.md5(data).hexdigest(), "-"]


def test_a_container_that_reads_no_stdin_still_ends(runtime):
    result = runtime.run(["sh", "-c", "exit 4"], stdin=os.urandom(1 << 20))
    assert result.exit_code == 4
    assert runtime.list() == []


def test_exec_run_sends_stdin_and_an_exec_without_attach_refuses_it(runtime):
    data = os.urandom(2 << 20)
    with runtime.run(["sleep", "1000"], detach=True) as c:
        code, out, _ = c.exec_run(["md5sum"], stdin=data)
        assert (code, out.split()) == (0, [hashlib.md5(data).hexdigest(), "-"])
        assert c.exec_run(["sh", "-c", "cat; echo end"], stdin="")[1] == "end\n"
        assert c.exec_run(["cat"], stdin=bytearray(b"ab\n"))[1] == "ab\n"
        with pytest.raises(ocirt.InvalidArgument, match="stdin must be bytes or str, not int"):
            c.exec_run(["cat"], stdin=42)
        with pytest.raises(ocirt.InvalidArgument, match="needs attach=True"):
            c.exec(["cat"], stdin=True)
        with pytest.raises(ocirt.Timeout):
            c.exec_run(["sh", "-c", "cat; sleep 1000"], stdin=b"x", timeout=0.5)
    assert runtime.list() == []


def test_run_takes_a_ready_bundle_and_never_writes_it(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo from the bundle; echo ${A:-unset}")
    before = tree_digest(bundle)
    assert runtime.run([], bundle=bundle).stdout == "from the bundle\nunset\n"  # its own process
    result = runtime.run(["sh", "-c", "echo $A; cat /sys/fs/cgroup/memory/memory.limit_in_bytes"], bundle=bundle,
                         env={"A": "given"}, memory=64 << 20)  # fmt: skip
    assert result.stdout.split() == ["given", str(64 << 20)]
    assert tree_digest(bundle) == before
    for bad, words in ((dict(user="nobody"), "give no user"), (dict(network="host"), "give no network"), (dict(memory=-2), "memory")):
        with pytest.raises(ocirt.InvalidArgument, match=words):
            runtime.run([], bundle=bundle, **bad)
    assert runtime.list() == []


def test_attach_sends_input_and_hands_output_to_fds_and_functions(runtime, make_bundle, new_id):
    c = runtime.create(new_id(), make_bundle("sh", "-c", "read x; echo got $x; echo err >&2; exit 5"), stdin=True)
    c.start()  # it reads before it writes: nothing is missed
    chunks: list = []
    out_r, out_w = os.pipe()
    try:
        assert c.attach(stdin=b"hello\n", stdout=out_w, stderr=chunks.append) is False  # ended, not detached
        assert os.read(out_r, 100) == b"got hello\n"
    finally:
        os.close(out_r)
        os.close(out_w)
    assert chunks == [b"err\n"]
    assert c.wait(30) == 5
    with pytest.raises(ocirt.InvalidState, match="cannot attach to container .*: it is stopped"):
        c.attach()
    c.delete()


def test_several_attachers_each_get_all_output_and_what_cannot_work_is_refused(runtime, make_bundle, new_id):
    c = runtime.create(new_id(), make_bundle("sh", "-c", "echo one; echo two >&2"))
    with c.connect() as first, c.connect() as second:
        c.start()
        for sock in (first, second):
            packets = []
            while packet := sock.recv(100):
                packets.append(packet)
            assert sorted(packets) == [b"\x02one\n", b"\x03two\n"]  # 2: stdout, 3: stderr
    assert c.wait(30) == 0
    c.delete()
    quiet = runtime.create(new_id(), make_bundle("true"))
    with pytest.raises(ocirt.InvalidState, match="created without stdin"):
        quiet.attach(stdin=b"x")
    with pytest.raises(ocirt.InvalidArgument, match="output target"):
        quiet.attach(stdout=1.5)
    with pytest.raises(ocirt.InvalidState, match="has no terminal"):
        quiet.resize(24, 80)
    with pytest.raises(ocirt.InvalidArgument, match="rows and columns from 1 to 65535"):
        quiet.resize(0, 80)
    os.unlink(os.path.join(runtime.dirs.sockets, quiet.id))  # the attach socket's link, gone
    with pytest.raises(ocirt.InvalidState, match="its attach socket is gone"):
        quiet.attach()
    quiet.delete()


def test_resize_sets_a_terminals_size_before_and_after_start(runtime, make_bundle, new_id):
    def tty(spec):
        spec["process"]["terminal"] = True

    c = runtime.create(new_id(), make_bundle("sh", "-c", "stty size; read x; stty size", edit=tty), terminal=True, stdin=True)
    c.resize(33, 111)  # before the start: the process starts at that size
    with c.connect(stdin=True) as sock:
        c.start()
        assert c.wait_for_log("^33 111").text == "33 111\r"
        c.resize(44, 122)
        sock.sendall(b"go\n")
        assert c.wait_for_log("^44 122").text == "44 122\r"
    assert c.wait(30) == 0
    with pytest.raises(ocirt.InvalidState, match="cannot resize the terminal of container .*: it is stopped"):
        c.resize(24, 80)
    c.delete()


def test_resize_returns_once_the_processs_terminal_has_the_size_and_times_out_if_never(tmp_path, monkeypatch):
    """terminal.resize reads the size back from the process's own terminal:
    it returns at once when that already is the size asked for, and raises
    Timeout when no conmon ever applies it (here: a FIFO nobody acts on)."""
    from ocirt import terminal
    from ocirt.process import ProcessHandle

    master, slave = os.openpty()
    ctl = str(tmp_path / "ctl")
    os.mkfifo(ctl)
    reader = os.open(ctl, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the resize line can be written
    child = subprocess.Popen(["sleep", "60"], stdin=slave, stdout=subprocess.DEVNULL)
    handle = ProcessHandle.open(child.pid)
    try:
        assert handle is not None
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 122, 0, 0))
        terminal.resize(ctl, 44, 122, handle)  # already that size: returns
        assert os.read(reader, 100) == b"1 44 122\n"
        monkeypatch.setattr(terminal, "SIZE_TAKEN_WITHIN", 0.05)
        with pytest.raises(ocirt.Timeout, match="still 44 x 122, not 30 x 100"):
            terminal.resize(ctl, 30, 100, handle)
    finally:
        child.kill()
        child.wait()
        if handle is not None:
            handle.close()
        for fd in (master, slave, reader):
            os.close(fd)
