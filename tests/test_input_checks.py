"""Bad input to the library: an InvalidArgument naming what is wrong, raised
before anything is made (no container, no bundle, no process run), for
Runtime.run, Runtime.create and CreateOptions alike."""

from __future__ import annotations

import math
import os

import pytest

import ocirt
from ocirt.options import CreateOptions


def nothing_made(rt: ocirt.Runtime) -> bool:
    bundles = os.path.join(rt.tmp_dir, "bundles")
    return rt.list() == [] and (not os.path.exists(bundles) or os.listdir(bundles) == [])


def test_run_refuses_a_bad_option_before_it_runs_anything(runtime, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    touch = ["touch", "/shared/ran"]  # what would show that the command ran
    for bad, words in (
        (dict(timeout="30"), "timeout must be a non-negative number"), (dict(timeout=-1), "timeout"),
        (dict(timeout=math.nan), "timeout"), (dict(env="x"), "env must be a dict"),
        (dict(env={"K": None}), "value None of environment variable 'K'"), (dict(env={"K": 1}), "environment variable 'K'"),
        (dict(env={"K": "a\0b"}), "environment variable 'K'"), (dict(env={"K\0": "v"}), "environment variable name"),
        (dict(workdir=["/"]), "workdir must be a string"), (dict(network=1), "network must be a string"),
        (dict(user=0), "user must be a string"), (dict(mounts=5), "mounts must be a list"), (dict(name=""), "name"),
        (dict(labels="a=b"), "labels must be a dict"), (dict(limits="big"), "limits must be an ocirt.Limits"),
        (dict(limits="big", memory=1 << 30), "limits must be an ocirt.Limits"),
    ):  # fmt: skip
        with pytest.raises(ocirt.InvalidArgument, match=words):
            runtime.run(touch, **{"mounts": [(str(shared), "/shared")], **bad})
        assert not (shared / "ran").exists(), bad
    assert nothing_made(runtime)


def test_a_str_is_never_split_into_a_command(runtime, make_bundle, new_id):
    for cmd, words in (("echo hi", "cmd must be a list or tuple, not str 'echo hi'"), (b"true", "cmd"), (["echo", "a\0b"], "cmd")):
        with pytest.raises(ocirt.InvalidArgument, match=words):
            runtime.run(cmd)
    with pytest.raises(ocirt.InvalidArgument, match="exit_command must be a list or tuple, not str"):
        runtime.create(new_id(), make_bundle("true"), exit_command="rm -rf /")
    assert nothing_made(runtime)


def test_an_empty_rootfs_is_refused_not_taken_for_the_current_directory(runtime, make_bundle, base_spec, new_id, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(ocirt.InvalidArgument, match="rootfs must be a non-empty path, not ''"):
        runtime.run(["true"], rootfs="")
    with pytest.raises(ocirt.InvalidArgument, match="rootfs must be a non-empty path, not ''"):
        runtime.create(new_id(), spec=base_spec, rootfs="")
    with pytest.raises(ocirt.InvalidArgument, match="bundle must be a non-empty path, not ''"):
        runtime.create(new_id(), "")
    (cwd / "config.json").symlink_to(os.path.join(make_bundle("true"), "config.json"))  # what "" would have found
    with pytest.raises(ocirt.InvalidArgument, match="bundle must be a non-empty path"):
        runtime.run([], bundle="")
    assert sorted(os.listdir(cwd)) == ["config.json"]  # runc made no dev, proc, sys or tmp here
    assert nothing_made(runtime)


def test_create_refuses_what_conmon_or_runc_would_only_refuse_after_spawning(runtime, make_bundle, new_id):
    bundle = make_bundle("true")
    for bad, words in (
        (dict(log_size_max=2**70), "log_size_max must be -1 .* up to 9223372036854775807, not 1180591620717411303424"),
        (dict(exit_command="rm -rf /"), "exit_command must be a list or tuple, not str"),
        (dict(exit_command=["/bin/echo", "a\0b"]), "in exit_command"), (dict(exit_command=[1]), "in exit_command"),
        (dict(listen_fds=3), "listen_fds must be a list or tuple"), (dict(rootfs=5), "rootfs must be a non-empty path"),
        (dict(timeout="1"), "timeout"), (dict(kill_after=math.nan), "kill_after"), (dict(kill_after=math.inf), "kill_after"),
    ):  # fmt: skip
        with pytest.raises(ocirt.InvalidArgument, match=words):
            runtime.create(new_id(), bundle, **bad)
    assert nothing_made(runtime)
    with pytest.raises(ocirt.InvalidArgument, match="log_size_max"):
        ocirt.Runtime(runtime.tmp_dir, log_size_max=2**63)


def test_create_options_check_their_fields_as_they_are_made():
    for bad, words in (
        (dict(exit_command=("/bin/echo", "")), "in exit_command"), (dict(timeout=-1), "timeout"), (dict(name="a/b"), "container name"),
        (dict(labels={"": "x"}), "label name"), (dict(limits={"memory": 1}), "limits"), (dict(rootfs=""), "rootfs"),
        (dict(log_size_max=-2), "log_size_max"), (dict(kill_after=0.5), "kill_after"),
    ):  # fmt: skip
        with pytest.raises(ocirt.InvalidArgument, match=words):
            CreateOptions(**bad)
    assert CreateOptions(exit_command=("/bin/echo", "done"), log_size_max=(1 << 63) - 1).exit_command == ("/bin/echo", "done")


def test_exec_asyncio_create_and_a_runtime_dir_refuse_bad_input(runtime, tmp_path):
    import asyncio

    from ocirt.aio import AsyncRuntime

    with pytest.raises(ocirt.InvalidArgument, match="tmp_dir must be a non-empty path"):
        ocirt.Runtime("")  # never the current directory
    c = runtime.run(["sleep", "1000"], detach=True)
    try:
        for bad in ("true", ["echo", "a\0b"], [], ["sh", ""]):
            with pytest.raises(ocirt.InvalidArgument, match="exec's command"):
                c.exec(bad)
    finally:
        c.delete(force=True)

    async def create_with(exit_command: object) -> None:
        rt = AsyncRuntime(runtime=runtime)
        await rt.create("x", str(tmp_path), exit_command=exit_command)

    with pytest.raises(ocirt.InvalidArgument, match="exit_command"):
        asyncio.run(create_with("ocirt cleanup"))  # a str: never its characters
    assert nothing_made(runtime)
