"""Two processes racing on the same container, released at the same instant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional, Tuple

import pytest

import ocirt

from .cli_support import reap_orphans
from .gates import Gate, blocked_on_flock


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


class Side:
    """One racing process (tests/race_helper.py), started and held at "ready"."""

    def __init__(self, root: str, *args: str, env: Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.race_helper", root, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(__file__)), env=dict(os.environ, **(env or {})),
        )  # fmt: skip
        assert self.proc.stdout.readline() == "ready\n"

    def fire(self) -> "Side":
        self.proc.stdin.write("x")
        self.proc.stdin.flush()
        return self

    def result(self) -> dict:
        try:
            return json.loads(self.proc.stdout.readline())
        finally:
            self.close()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)
        self.proc.stdout.close()


def race(root: str, *sides: list) -> list:
    """Start each side, wait until all hold what they race for, fire, collect."""
    started = [Side(root, *side) for side in sides]
    for side in started:
        side.fire()
    return [side.result() for side in started]


def gated_race(root: str, gate: Gate, verb: str, name: str, lock: bool) -> Tuple[dict, dict]:
    """Race on the container whose id and name are `name`. Side a enters the gated runtime holding the container's lock; then side b starts.

    With the lock, b must block on the lock file and never reach the gate;
    without it (the test of the test), b reaches the gate while a is inside.
    Returns both results once a (then b) is released.
    """
    env = {"RACE_RUNTIME": gate.runtime("kill" if verb == "stop" else "delete")}
    if not lock:
        env["OCIRT_TEST_NO_LOCK"] = "1"
    a = Side(root, verb, name, env=dict(env, GATE_SIDE="a"))
    b = Side(root, verb, name, env=dict(env, GATE_SIDE="b"))
    try:
        a.fire()
        gate.reached("reached.a")
        b.fire()  # a holds the container's lock, inside the runtime
        if lock:
            blocked_on_flock(b.proc.pid, os.path.join(root, "run", "locks", name))  # name == id here
            assert not gate.has("reached.b")
            gate.open()  # once a is out, b may run the runtime as it likes
        else:
            gate.reached("reached.b")
            gate.release("b")
        gate.release("a")
        return a.result(), b.result()
    finally:
        for side in (a, b):
            if side.proc.returncode is None:
                side.proc.kill()
                side.close()


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "lock-disabled"])
def test_concurrent_stops_one_kills_and_both_record_the_exit(root, make_bundle, new_id, gate, lock):
    with ocirt.Runtime.open(root) as rt:
        name = new_id()
        # No pid namespace: stop ends the container with `runc kill --all`, which is gated.
        rt.create(name, make_bundle("sleep", "1000", pid_ns=False)).start()
        a, b = gated_race(root, gate, "stop", name, lock)
        assert a["ok"] and b["ok"], (a, b)
        assert a["exit_code"] == b["exit_code"] == 137
        st = rt.get(name).state
        assert (st.exit_code, st.finished_at.isoformat()) == (137, a["finished_at"])
        rt.get(name).delete()
    assert gate.has("done.a")


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "lock-disabled"])
def test_concurrent_removals_one_deletes_the_other_finds_it_gone(root, make_bundle, new_id, gate, lock):
    with ocirt.Runtime.open(root) as rt:
        name = new_id()
        rt.create(name, make_bundle("sleep", "1000")).start()
        a, b = gated_race(root, gate, "rm", name, lock)
        assert rt.list() == []
    if lock:
        assert a == {"ok": True}
        assert (b["ok"], b["error"]) == (False, "ContainerNotFound")
        assert not gate.has("reached.b")
    else:
        assert gate.has("done.b")  # both ran the runtime's delete: nothing excluded them


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
    base = os.urandom(31).hex() + "aa"  # unique in runc's global namespace, two ids sharing a prefix
    with ocirt.Runtime.open(root) as rt, ocirt.Runtime.open(root) as other:
        c = rt.create(base + "a", make_bundle("true"), name="named")
        assert other.get("named").id == c.id  # another Runtime sees it through the store
        assert other.get(base + "a").name == "named"
        assert other.get(base[:8]).id == c.id
        with pytest.raises(ocirt.ContainerNotFound):
            other.get("nope")
        c2 = rt.create(base + "b", make_bundle("true"))
        with pytest.raises(ocirt.InvalidArgument, match="matches 2"):
            other.get(base[:8])
        for x in (c, c2):
            x.delete()
        assert other.list() == []
