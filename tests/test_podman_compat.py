"""The same command lines through ocirt and podman, on the same image pulled
from the same local registry: what scripts read (exit codes, ps JSON keys and types, inspect
templates, logs, rm/stop -a) must agree. The ocirt half always runs; the
podman half is skipped, saying so, where podman is not installed."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest

from .cli_support import Ocirt, reap_orphans
from .image_support import busybox_files, tar_layer, write_layout
from .podman_support import PODMAN, Podman

PS_KEYS = {
    "Id": str, "Names": list, "Command": list, "Created": int, "CreatedAt": str, "State": str, "Status": str,
    "ExitCode": int, "Exited": bool, "ExitedAt": int, "Pid": int, "StartedAt": int, "AutoRemove": bool, "Mounts": list,
}  # fmt: skip
INSPECT = (
    "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.ExitCode}} {{.Path}} {{json .Args}} {{json .Config.Cmd}}"
    " {{.HostConfig.AutoRemove}}"
)


@pytest.fixture(scope="module")
def image(tmp_path_factory, registry) -> str:
    """A busybox image (Cmd sh, as a registry's busybox) in the registry on 127.0.0.1, built here and pushed with skopeo."""
    layout = str(tmp_path_factory.mktemp("compat") / "layout")
    write_layout(layout, [tar_layer(busybox_files())], {"Cmd": ["sh"]}, tag="1")
    return registry.push(f"oci:{layout}:1", "compat/busybox:1")


@pytest.fixture(params=["ocirt", "podman"])
def tool(request, tmp_path, image) -> Iterator[Any]:
    """`ocirt`, or `podman` with a store of its own; either pulls the registry's image on its first run/create."""
    if request.param == "podman":
        if PODMAN is None:
            pytest.skip("podman is not installed: the podman half of the compatibility tests did not run")
        podman = Podman()
        try:
            yield _OnImage(podman, image)
        finally:
            podman.close()
            reap_orphans()  # podman's conmons end as this subreaper's children
    else:
        cli = Ocirt(str(tmp_path / "root"))
        yield _OnImage(cli, image)
        cli("rm", "-a", "-f")
        reap_orphans()


class _OnImage:
    """A tool whose run/create take the registry's image where a test names
    `busybox` (the registry is plain HTTP: --tls-verify=false, as podman)."""

    def __init__(self, tool: Any, image: str) -> None:
        self.tool, self.image = tool, image

    def __call__(self, *args: str, **kw: Any) -> Any:
        if args and args[0] in ("run", "create"):
            args = (args[0], "--tls-verify=false", *(self.image if a == "busybox" else a for a in args[1:]))
        return self.tool(*args, **kw)

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)
        return str(proc.stdout)


def test_exit_codes(tool):
    assert tool("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert tool("run", "--rm", "busybox", "no-such-binary").returncode == 127
    assert tool("run", "--rm", "busybox", "/etc").returncode == 126  # not executable
    assert tool("run", "--rm", "--timeout", "1", "busybox", "sleep", "100").returncode == 255  # killed by conmon
    tool.ok("run", "-d", "--name", "live", "busybox", "sleep", "1000")
    assert tool("start", "live").returncode == 0  # running already
    assert tool("rm", "live").returncode == 2  # running, no -f
    assert tool("rm", "nosuch").returncode == 1
    assert tool("rm", "-i", "nosuch").returncode == 0
    assert tool("stop", "nosuch").returncode == 125
    assert tool("inspect", "nosuch").returncode == 125
    assert tool("run", "--no-such-flag", "busybox", "true").returncode == 125
    tool.ok("rm", "-f", "live")


def test_ps_json_keys_and_types(tool):
    tool.ok("run", "-d", "--name", "up", "busybox", "sleep", "1000")
    assert tool("run", "--name", "done", "busybox", "sh", "-c", "exit 3").returncode == 3
    tool.ok("create", "--name", "new", "busybox", "true")
    records: Dict[str, Dict[str, Any]] = {r["Names"][0]: r for r in json.loads(tool.ok("ps", "-a", "--format", "json"))}
    assert sorted(records) == ["done", "new", "up"]
    for name, record in records.items():
        for key, kind in PS_KEYS.items():
            assert isinstance(record[key], kind), (name, key, record[key])
    assert [records[n]["State"] for n in ("up", "done", "new")] == ["running", "exited", "created"]
    assert [records[n]["ExitCode"] for n in ("up", "done", "new")] == [0, 3, 0]
    assert [records[n]["Exited"] for n in ("up", "done", "new")] == [False, True, False]
    assert records["new"]["StartedAt"] == records["up"]["ExitedAt"] == -62135596800  # Go's zero time: never
    assert records["new"]["Status"] == "Created" and records["done"]["Status"].startswith("Exited (3) ")
    assert records["up"]["Command"] == ["sleep", "1000"]
    tool.ok("rm", "-f", "up", "done", "new")


def test_inspect_templates(tool):
    tool.ok("run", "-d", "--name", "up", "busybox", "sleep", "1000")
    assert tool("run", "--name", "done", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert tool.ok("inspect", "--format", INSPECT, "up", "done").splitlines() == [
        'running true false 0 sleep ["1000"] ["sleep","1000"] false',
        'exited false false 3 sh ["-c","exit 3"] ["sh","-c","exit 3"] false',
    ]
    assert tool.ok("inspect", "--format", "{{range .Config.Cmd}}<{{.}}>{{end}}", "up") == "<sleep><1000>\n"
    assert sorted(tool.ok("ps", "-a", "--format", "{{.Names}}").split()) == ["done", "up"]
    assert tool.ok("ps", "-q") == tool.ok("inspect", "--format", "{{.Id}}", "up")[:12] + "\n"
    tool.ok("rm", "-f", "up", "done")


def test_logs_tail_and_since(tool):
    tool.ok("run", "--name", "talk", "busybox", "sh", "-c", "echo 1; echo 2; echo 3")
    assert tool.ok("logs", "--tail", "2", "talk") == "2\n3\n"
    assert tool.ok("logs", "--since", "10m", "talk") == "1\n2\n3\n"
    assert tool.ok("logs", "--until", "10m", "talk") == "1\n2\n3\n"  # a duration ahead of now
    assert tool.ok("logs", "--until", "2000-01-01T00:00:00Z", "talk") == ""
    stamped = tool.ok("logs", "-t", "--tail", "1", "talk").split()
    assert stamped[1] == "3" and stamped[0].endswith("Z") and "T" in stamped[0]
    tool.ok("rm", "talk")


def test_rm_and_stop_all(tool):
    for name in ("one", "two"):
        tool.ok("run", "-d", "--name", name, "busybox", "sleep", "1000")
    tool.ok("stop", "-a", "-t", "0")
    states: List[str] = sorted(r["State"] for r in json.loads(tool.ok("ps", "-a", "--format", "json")))
    assert states == ["exited", "exited"]
    tool.ok("rm", "-a")
    assert json.loads(tool.ok("ps", "-a", "--format", "json")) == []


def test_restart_and_wait_condition(tool):
    tool.ok("run", "-d", "--name", "again", "busybox", "sleep", "1000")
    pid = tool.ok("inspect", "--format", "{{.State.Pid}}", "again")
    assert tool.ok("restart", "-t", "0", "again") == "again\n"
    assert tool.ok("inspect", "--format", "{{.State.Status}}", "again") == "running\n"
    assert tool.ok("inspect", "--format", "{{.State.Pid}}", "again") != pid
    assert tool.ok("wait", "--condition", "running", "again") == "-1\n"  # a state other than the exit: -1
    tool.ok("stop", "-t", "0", "again")
    assert tool.ok("wait", "--condition", "exited", "again") == "137\n"
    tool.ok("restart", "again")  # exited: started again
    assert tool.ok("inspect", "--format", "{{.State.Status}}", "again") == "running\n"
    tool.ok("rm", "-f", "again")
