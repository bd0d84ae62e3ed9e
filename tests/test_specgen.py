"""Spec generation and the busybox root filesystem."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

import ocirt
from ocirt import rootfs, specgen


def test_default_spec_is_runc_spec_minus_terminal(base_spec, tmp_path):
    spec = specgen.generate(["sh"], rootfs=str(tmp_path))
    for key in ("ociVersion", "linux"):
        assert spec[key] == base_spec[key]
    assert spec["mounts"][:-1] == base_spec["mounts"]
    assert spec["mounts"][-1]["destination"] == "/tmp"
    process = dict(base_spec["process"], terminal=False)
    assert spec["process"] == process
    assert spec["root"] == {"path": str(tmp_path), "readonly": False}


def test_options(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("app:x:7:8::/:/bin/sh\n")
    spec = specgen.generate(
        ["run", "it"], rootfs=str(tmp_path), env={"A": "1", "PATH": "/bin"}, cwd="/srv", user="app",
        hostname="h", tty=True, read_only=True, memory=1 << 20, pids_limit=10, cpus=1.5, cap_add=["sys_admin"],
    )  # fmt: skip
    p = spec["process"]
    assert p["args"] == ["run", "it"] and p["cwd"] == "/srv" and p["terminal"] is True
    assert p["env"] == ["TERM=xterm", "A=1", "PATH=/bin"]
    assert p["user"] == {"uid": 7, "gid": 8}
    assert all("CAP_SYS_ADMIN" in caps for caps in p["capabilities"].values())
    assert spec["hostname"] == "h" and spec["root"]["readonly"] is True
    r = spec["linux"]["resources"]
    assert r["memory"] == {"limit": 1 << 20, "swap": 1 << 20}
    assert r["pids"] == {"limit": 10} and r["cpu"] == {"quota": 150000, "period": 100000}


def test_rlimits_never_above_the_hard_limit():
    # In a child whose hard limit is below runc spec's 1024 (this process's
    # limit could not be raised back).
    code = (
        "import json, resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256));"
        "from ocirt import specgen;"
        "print(json.dumps(specgen.generate(['true'], rootfs='/')['process']['rlimits']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [{"type": "RLIMIT_NOFILE", "hard": 256, "soft": 256}]
    assert specgen.generate(["true"], rootfs="/")["process"]["rlimits"][0]["hard"] <= resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"args": []}, "command"),
        ({"args": [""]}, "command"),
        ({"cwd": "rel"}, "absolute"),
        ({"memory": 0}, "memory"),
        ({"pids_limit": -1}, "pids"),
        ({"cpus": 0}, "cpus"),
        ({"env": {"A=B": "x"}}, "environment"),
        ({"user": "ghost"}, "ghost"),
    ],
)
def test_bad_options(tmp_path, kw, words):
    args = kw.pop("args", ["true"])
    with pytest.raises(ocirt.InvalidArgument, match=words):
        specgen.generate(args, rootfs=str(tmp_path), **kw)


@pytest.mark.parametrize("text, size", [("512", 512), ("64k", 65536), ("16m", 16 << 20), ("1g", 1 << 30), ("1.5k", 1536)])
def test_parse_size(text, size):
    assert specgen.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1m", "0"])
def test_parse_size_rejects(text):
    with pytest.raises(ocirt.InvalidArgument):
        specgen.parse_size(text)


def test_busybox_rootfs_is_built_once(tmp_path):
    path = rootfs.busybox_rootfs(str(tmp_path))
    assert os.path.isfile(os.path.join(path, "bin", "busybox"))
    assert os.readlink(os.path.join(path, "bin", "sh")) == "busybox"
    assert "nobody:x:65534" in open(os.path.join(path, "etc", "passwd")).read()
    for d in ("proc", "sys", "dev", "tmp"):
        assert os.path.isdir(os.path.join(path, d))
    marker = os.path.join(path, "marker")
    open(marker, "w").close()
    assert rootfs.busybox_rootfs(str(tmp_path)) == path and os.path.exists(marker)  # not rebuilt
    assert sorted(os.listdir(tmp_path)) == [".lock", ".ocirt-rootfs", "busybox"]  # no temporary build dirs left


def test_concurrent_builders_agree_on_one_rootfs(tmp_path):
    code = "import sys, ocirt.rootfs as r; print(r.busybox_rootfs(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    paths = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0] * 4
    assert paths == {str(tmp_path / "busybox")}
    assert sorted(os.listdir(tmp_path)) == [".lock", ".ocirt-rootfs", "busybox"]
    assert os.path.isfile(tmp_path / "busybox" / "bin" / "busybox")


def test_only_a_static_busybox_will_do():
    assert rootfs._is_static(rootfs.find_busybox())
    assert not rootfs._is_static("/bin/ls")  # dynamically linked: useless in a bare rootfs
