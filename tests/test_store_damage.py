"""A damaged record in the state database: it stands for its container as
unreadable, every other container stays manageable, and rm -f removes it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import subprocess
from typing import Callable, Dict

import pytest

import ocirt
from ocirt.state import ContainerStatus
from ocirt.store import STATUSES, UNREADABLE, Record, Store

from .cli_support import reap_orphans

GOOD = Record(id="victim-id", name="victim", bundle="/b", status="running", pid=10, conmon_pid=9, conmon_start_time=5, created_at=1.7e9)


def edited(**changes: object) -> str:
    data = json.loads(GOOD.to_json())
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not DROP})


DROP = object()

# The review's five, then what else a record must not smuggle in.
DAMAGE: Dict[str, Callable[[str], str]] = {
    "truncated JSON": lambda text: text[:40],
    "a JSON array": lambda text: "[1, 2]",
    "a field missing": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "bundle"}),
    "an unknown status": lambda text: json.dumps(dict(json.loads(text), status="zombie")),
    "cgroup_dirs a number": lambda text: json.dumps(dict(json.loads(text), cgroup_dirs=5)),
}


@pytest.mark.parametrize(
    "text",
    [
        "", "{", "[]", "null", '"x"', "[" * 100_000 + "]" * 100_000,
        edited(bundle=DROP), edited(cgroup_dirs=5), edited(cgroup_dirs=["/a", 1]), edited(pid="10"), edited(pid=True),
        edited(pid=-1), edited(pid=1 << 40), edited(conmon_start_time=-5), edited(exit_code=1.5), edited(oom_killed=0),
        edited(created_at="today"), edited(created_at=1e300), edited(started_at=float("nan")), edited(labels={"k": 1}),
        edited(labels=[]), edited(launch=None), edited(note=None), edited(id="../x"),
        edited(exec_sessions={"../../etc": {"pid": 3}}), edited(exec_sessions={"s": {"pid": "3"}}),
        edited(exec_sessions={"s": {"cmd": "sh"}}), edited(exec_sessions={"s": {"exit_code": 0}}), edited(exec_sessions={"s": []}),
    ],
)  # fmt: skip
def test_a_record_unlike_what_ocirt_writes_is_a_store_error(text):
    with pytest.raises(ocirt.StoreError, match="^the record"):
        Record.from_json(text)


def test_a_record_that_is_not_json_is_chained_from_the_parsers_error():
    with pytest.raises(ocirt.StoreError) as raised:
        Record.from_json("{")
    assert isinstance(raised.value.__cause__, json.JSONDecodeError)
    assert Record.from_json(GOOD.to_json()) == GOOD
    assert Record.from_json(edited(unknown="kept out", exec_sessions={"s": {"pid": 3, "exit_code": 0, "finished_at": None}}))


def test_the_store_knows_every_status_and_checks_every_field():
    from ocirt import store

    assert STATUSES == {s.value for s in ContainerStatus}
    assert set(store._FIELD_CHECKS) == {f.name for f in dataclasses.fields(Record)}


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state.db"), str(tmp_path / "locks"), bundles=str(tmp_path / "bundles"))
    yield s
    s.close()


def damage(store: Store, cid: str, text: object) -> None:
    """Write `text` as the record of `cid`, as another process (or a disk) would."""
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE containers SET record = ? WHERE id = ?", (text, cid))
    db.close()


def stored(store: Store, cid: str) -> object:
    with sqlite3.connect(store.path) as db:
        (text,) = db.execute("SELECT record FROM containers WHERE id = ?", (cid,)).fetchone()
    db.close()
    return text


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_record_stands_for_its_container_and_the_others_are_read(store, how, caplog, tmp_path):
    before, after = Record(id="before", name="b", bundle="/b"), Record(id="after", name="a", bundle="/a")
    store.insert(before)
    store.insert(GOOD)
    store.insert(after)
    os.makedirs(tmp_path / "bundles" / GOOD.id)  # the bundle ocirt made for it
    bad = DAMAGE[how](GOOD.to_json())
    damage(store, GOOD.id, bad)
    with caplog.at_level(logging.WARNING, logger="ocirt"):
        listed = store.all()
        assert store.all()[1] == listed[1]
    assert [r.id for r in listed] == ["before", GOOD.id, "after"] and (listed[0], listed[2]) == (before, after)
    stand_in = listed[1]
    assert (stand_in.name, stand_in.status, stand_in.pid, stand_in.conmon_pid) == ("victim", "configured", None, None)
    assert (stand_in.bundle, stand_in.owned_bundle) == (str(tmp_path / "bundles" / GOOD.id), True)
    assert stand_in.note.startswith(UNREADABLE) and store.unreadable(GOOD.id) == stand_in.note
    assert [r.getMessage() for r in caplog.records] == [f"state database {store.path}: container victim ({GOOD.id}): {stand_in.note}"]
    assert store.get(GOOD.id) == stand_in
    store.save(dataclasses.replace(stand_in, note="half-created"))
    assert stored(store, GOOD.id) == bad  # never written over
    store.delete(GOOD.id)
    assert [r.id for r in store.all()] == ["before", "after"] and store.unreadable(GOOD.id) is None


def test_a_record_mended_by_hand_is_read_again(store):
    store.insert(GOOD)
    damage(store, GOOD.id, "[]")
    assert store.get(GOOD.id).status == "configured"  # type: ignore[union-attr]
    damage(store, GOOD.id, GOOD.to_json())
    assert store.all() == [GOOD] and store.get(GOOD.id) == GOOD and store.unreadable(GOOD.id) is None


def test_records_of_another_container_or_not_text_are_unreadable(store):
    store.insert(GOOD)
    store.insert(Record(id="other", name="o", bundle="/o"))
    damage(store, GOOD.id, Record(id="other", name="o", bundle="/o").to_json())  # a row copied over another
    assert "that of 'o' (other)" in store.get(GOOD.id).note  # type: ignore[union-attr]
    damage(store, GOOD.id, b"\x00binary")
    assert "is bytes, not text" in store.get(GOOD.id).note  # type: ignore[union-attr]
    assert store.get("other") == Record(id="other", name="o", bundle="/o")


def test_a_row_whose_id_is_no_container_id_is_passed_over(store, caplog):
    store.insert(GOOD)
    with sqlite3.connect(store.path) as db:
        db.execute("INSERT INTO containers VALUES (?, ?, ?)", ("../../etc", "evil", GOOD.to_json()))
    db.close()
    with caplog.at_level(logging.WARNING, logger="ocirt"):
        assert store.all() == [GOOD]
    assert "'../../etc', is not a container id" in caplog.text
    with pytest.raises(ocirt.StoreError, match="not a container id"):
        store.get("../../etc")


# -- real containers, through the command line ---------------------------------


def damage_row(cli, name: str, change: Callable[[str], str]) -> str:
    """Damage the record of container `name` in the CLI's root; the damaged text."""
    with sqlite3.connect(os.path.join(cli.root, "state.db")) as db:
        (text,) = db.execute("SELECT record FROM containers WHERE name = ?", (name,)).fetchone()
        bad = change(text)
        db.execute("UPDATE containers SET record = ? WHERE name = ?", (bad, name))
    db.close()
    return bad


def row_of(cli, name: str) -> str:
    with sqlite3.connect(os.path.join(cli.root, "state.db")) as db:
        (text,) = db.execute("SELECT record FROM containers WHERE name = ?", (name,)).fetchone()
    db.close()
    return text


@pytest.mark.parametrize("how", DAMAGE)
def test_every_command_works_past_a_damaged_record_and_rm_f_removes_its_container(ocirt, how):
    victim = ocirt.ok("run", "-d", "--name", "victim", "busybox", "sleep", "1000").strip()
    ocirt.ok("run", "-d", "--name", "other", "busybox", "sleep", "1000")
    bad = damage_row(ocirt, "victim", DAMAGE[how])

    ps = ocirt("ps", "-a", "--format", "json")
    assert ps.returncode == 0, ps.stderr
    assert [(c["Names"], c["State"], c["Status"][:2]) for c in json.loads(ps.stdout)] == [
        (["victim"], "configured", "Ha"), (["other"], "running", "Up"),
    ]  # fmt: skip
    assert f"container victim ({victim}): {UNREADABLE}" in ps.stderr  # a warning on stderr, once
    state = json.loads(ocirt.ok("inspect", "victim"))[0]["State"]
    assert state["Status"] == "configured" and state["Note"].startswith(UNREADABLE)
    refused = ocirt("rm", "victim")
    assert refused.returncode == 125 and "rm -f" in refused.stderr
    assert row_of(ocirt, "victim") == bad  # read, reconciled and refused: never written over

    assert ocirt("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    ocirt.ok("stop", "-t", "0", "other")
    assert ocirt.ok("rm", "-f", "victim") == "victim\n"
    assert ocirt.ok("ps", "-a", "--format", "{{.Names}}") == "other\n"
    ocirt.ok("rm", "other")
    assert [os.listdir(os.path.join(ocirt.root, d)) for d in ("bundles", "run/containers", "run/exits")] == [[], [], []]


def test_rm_f_a_removes_a_container_whose_record_is_damaged_and_signals_no_pid_it_names(ocirt):
    bystander = subprocess.Popen(["sleep", "1000"])  # a process the damaged record claims
    try:
        made = [ocirt.ok("run", "-d", "--name", name, "busybox", "sleep", "1000").strip() for name in ("victim", "other")]
        ocirt.ok("exec", "-d", "victim", "sleep", "1000")  # an exec conmon too, in the victim's conmon cgroup
        claims = dict(pid=bystander.pid, conmon_pid=bystander.pid, status="zombie", exec_sessions={"s": {"pid": bystander.pid}})
        damage_row(ocirt, "victim", lambda text: json.dumps(dict(json.loads(text), **claims)))
        assert ocirt.ok("rm", "-f", "-a").split() == made
        assert ocirt.ok("ps", "-a", "-q") == ""
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        reap_orphans()


def test_the_library_lists_and_deletes_past_a_damaged_record(tmp_path, make_bundle, new_id):
    root = str(tmp_path / "root")
    with ocirt.Runtime.open(root) as rt:
        victim = rt.create(new_id(), make_bundle("sleep", "1000"), name="victim")
        victim.start()
        other = rt.create(new_id(), make_bundle("sleep", "1000"), name="other")
        other.start()
        with sqlite3.connect(os.path.join(root, "state.db")) as db:
            db.execute("UPDATE containers SET record = '[' WHERE id = ?", (victim.id,))
        db.close()
        with ocirt.Runtime.open(root) as another:  # another process's view
            found = {c.name: c for c in another.list()}
            assert found["victim"].state.status is ContainerStatus.CONFIGURED and found["victim"].note.startswith(UNREADABLE)
            assert another.list(status="running") == [found["other"]]
            found["other"].stop(0)
            found["other"].delete()
            with pytest.raises(ocirt.InvalidState):
                found["victim"].delete()
            found["victim"].delete(force=True)
            assert another.list() == []
        assert rt.traces([victim.id, other.id]) == {"runtime_state": 0, "run_files": 0, "cgroups": 0, "conmons": 0}
