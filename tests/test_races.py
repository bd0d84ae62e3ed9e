"""Two processes racing on the same container, released at the same instant."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import ocirt

from .cli_support import reap_orphans


@pytest.fixture
def root(tmp_path):
    path = str(tmp_path / "root")
    yield path
    with ocirt.Runtime.open(path) as rt:
        left = rt.list()
        for c in left:
            c.delete(force=True)
    reap_orphans()
    assert not left, f"left containers: {[c.name for c in left]}"


def race(root: str, *sides: list) -> list:
    """Start each side, wait until all hold what they race for, fire, collect."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.race_helper", root, *side],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        for side in sides
    ]  # fmt: skip
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n"
        for p in procs:
            p.stdin.write("x")
            p.stdin.flush()
        return [json.loads(p.stdout.readline()) for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(60)
            p.stdout.close()


def test_concurrent_stops_both_succeed_and_record_the_exit_once(root, make_bundle):
    with ocirt.Runtime.open(root) as rt:
        c = rt.create("racer", make_bundle("sleep", "1000"))
        c.start()
        a, b = race(root, ["stop", "racer"], ["stop", "racer"])
        assert a["ok"] and b["ok"]
        assert a["exit_code"] == b["exit_code"] == 137
        assert a["finished_at"] == b["finished_at"]
        st = rt.get("racer").state
        assert (st.exit_code, st.finished_at.isoformat()) == (137, a["finished_at"])
        rt.get("racer").delete()


def test_concurrent_removals_both_succeed(root, make_bundle):
    with ocirt.Runtime.open(root) as rt:
        c = rt.create("doomed", make_bundle("sleep", "1000"))
        c.start()
        a, b = race(root, ["rm", "doomed"], ["rm", "doomed"])
        assert a["ok"] and b["ok"]
        assert rt.list() == []


def test_concurrent_creates_of_one_name_one_wins(root, make_bundle):
    bundle = make_bundle("true")
    results = race(root, ["create", "taken", bundle], ["create", "taken", bundle])
    winners = [r for r in results if r["ok"]]
    losers = [r for r in results if not r["ok"]]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0]["error"] == "ContainerExists" and "taken" in losers[0]["message"]
    with ocirt.Runtime.open(root) as rt:
        assert [c.id for c in rt.list()] == [winners[0]["id"]]
        rt.get("taken").delete()


def test_get_by_name_id_and_prefix(root, make_bundle):
    with ocirt.Runtime.open(root) as rt, ocirt.Runtime.open(root) as other:
        c = rt.create("a" * 64, make_bundle("true"), name="named")
        assert other.get("named").id == c.id  # another Runtime sees it through the store
        assert other.get("a" * 64).name == "named"
        assert other.get("aaaa").id == c.id
        with pytest.raises(ocirt.ContainerNotFound):
            other.get("nope")
        c2 = rt.create("a" * 63 + "b", make_bundle("true"))
        with pytest.raises(ocirt.InvalidArgument, match="matches 2"):
            other.get("aaaa")
        for x in (c, c2):
            x.delete()
        assert other.list() == []
