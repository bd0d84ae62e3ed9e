"""Persistent container records: one SQLite database per ocirt root.

WAL mode and a busy timeout let several processes share the database; every
change is committed before the call that made it returns. Cross-process
exclusion for one container is a flock on its lock file (`lock(id)`), held
for the span of a verb.

A stored record is not trusted: one that is not what ocirt writes stands
for its container as an unreadable record (see `Record.unreadable`), and
never stops the others from being read. On a full filesystem the database
is still read (see `Store`); writing needs space again.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import sys
import threading
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .errors import ContainerExists, ContainerNotFound, InvalidArgument, StoreError, StoreFull
from .layout import check_private_dir
from .steps import Readable, Steps
from .validate import ID_MAX_LENGTH, ID_PATTERN

log = logging.getLogger("ocirt")

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
)
"""

STATUSES = frozenset({"configured", "created", "running", "paused", "stopped"})  # state.ContainerStatus's values
UNREADABLE = "its record in the store is unreadable"
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT
_TIME_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
_NOTHING = object()


def from_timestamp(value: Optional[float]) -> Optional[datetime]:
    """A record's time (POSIX seconds) as an aware datetime; None stays None."""
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)

@dataclass(frozen=True)
class Record:
    """Everything a later process needs to manage a container (never changed once made)."""

    id: str
    name: str
    bundle: str
    status: str = "configured"
    pid: Optional[int] = None
    conmon_pid: Optional[int] = None
    conmon_start_time: Optional[int] = None  # /proc/<pid>/stat field 22: guards pid reuse
    exit_code: Optional[int] = None
    oom_killed: bool = False
    created_at: Optional[float] = None
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    cgroup_dirs: List[str] = field(default_factory=list)
    cgroup_parents: List[str] = field(default_factory=list)
    container_cgroup_dirs: List[str] = field(default_factory=list)  # the runtime's, beside conmon's
    owned_bundle: bool = False  # ocirt generated the bundle: remove it with the container
    auto_remove: bool = False
    stdin: bool = False  # conmon -i: the attach socket takes input
    exec_sessions: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # id -> pid, conmon_pid, cmd, times, exit code (exec.Sessions)
    note: str = ""  # why the status is what it is, when not obvious (e.g. "conmon died")
    labels: Dict[str, str] = field(default_factory=dict)
    launch: Dict[str, Any] = field(default_factory=dict)  # launcher.LaunchOptions.to_dict(): how a restart launches it
    network: Dict[str, Any] = field(default_factory=dict)  # networks.Attachment.to_dict() of a bridged container

    def to_json(self) -> str:
        # Field by field, not dataclasses.asdict: that deep-copies every list
        # and dict only for json to read them, a third of a save's CPU.
        return json.dumps({name: getattr(self, name) for name in _RECORD_FIELD_NAMES})

    @classmethod
    def from_json(cls, text: object) -> "Record":
        """The record `text` holds: a JSON object whose fields each have the
        type ocirt writes (unknown fields are ignored; a missing one takes its
        default, but id, name and bundle have none). StoreError saying what is
        wrong otherwise, chained from the parser's error where there is one."""
        if not isinstance(text, str):
            raise StoreError(f"the record is {type(text).__name__}, not text")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise StoreError(f"the record is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise StoreError(f"the record is a JSON {type(data).__name__}, not an object")
        for name in _REQUIRED_FIELDS:
            if name not in data:
                raise StoreError(f"the record has no {name!r}")
        for name, valid in _FIELD_CHECKS.items():
            if name in data and not valid(data[name]):
                raise StoreError(f"the record's {name!r} is {_shown(data[name])}")
        return cls(**{k: v for k, v in data.items() if k in _FIELD_CHECKS})

    @classmethod
    def unreadable(cls, cid: str, name: str, why: str, owned_bundle: str = "") -> "Record":
        """What stands for container `cid` named `name` when its record cannot
        be read (`why`): nothing else is known of it, so it is half-created
        (status configured: only a forced delete removes it, and that finds
        its conmon, runtime state, cgroups and run files by its id alone);
        `owned_bundle`, if given, is the bundle ocirt made for it there."""
        return cls(
            id=cid, name=name, bundle=owned_bundle, owned_bundle=bool(owned_bundle), note=f"{UNREADABLE} ({why}); rm -f removes it"
        )


def _flock_in_thread(path: str) -> "Steps[int]":
    """Store._flock(path) in a thread of its own, waited for as steps (see Store.lock_steps)."""
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    guard = threading.Lock()
    got: Dict[str, Any] = {}

    def wait() -> None:
        try:
            fd = Store._flock(path, blocking=True)
        except BaseException as e:  # noqa: B036  (handed to the steps, which raise it)
            got["error"] = e
            fd = None
        with guard:
            if got.get("abandoned") and fd is not None:
                os.close(fd)  # nobody waits for it any more
            else:
                got["fd"] = fd
        try:
            os.write(done_w, b"!")
        except OSError:
            pass  # the steps were closed: nobody reads
        finally:
            os.close(done_w)

    threading.Thread(target=wait, name="ocirt-lock-wait", daemon=True).start()
    try:
        yield Readable((done_r,))
    finally:
        with guard:
            if "fd" not in got and "error" not in got:
                got["abandoned"] = True
            elif sys.exc_info()[0] is not None and got.get("fd") is not None:
                os.close(got.pop("fd"))
        os.close(done_r)
    if "error" in got:
        raise got["error"]
    return int(got["fd"])


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pid(value: object) -> bool:
    return value is None or (_whole(value) and 0 < value <= PID_MAX)  # type: ignore[operator]


def _count(value: object) -> bool:
    return value is None or (_whole(value) and value >= 0)  # type: ignore[operator]


def _code(value: object) -> bool:
    return value is None or _whole(value)


def _time(value: object) -> bool:
    """None, or POSIX seconds that from_timestamp takes (from 1970)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= _TIME_MAX)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _session(value: object) -> bool:
    """An exec session as exec.Sessions records it (an ended one has its finish time)."""
    if not isinstance(value, dict):
        return False
    return (
        _count(value.get("pid")) and _count(value.get("conmon_pid")) and _strings(value.get("cmd", []))
        and _time(value.get("started_at")) and _time(value.get("finished_at")) and _code(value.get("exit_code"))
        and (value.get("exit_code") is None or "finished_at" in value)
    )  # fmt: skip


def _sessions(value: object) -> bool:
    """Sessions by id; an id names a directory, so it follows the id rules."""
    return isinstance(value, dict) and all(_is_id(sid) and _session(s) for sid, s in value.items())


def _is_id(value: object) -> bool:
    """What validate.check_id accepts."""
    return isinstance(value, str) and len(value) <= ID_MAX_LENGTH and ID_PATTERN.fullmatch(value) is not None


# What each field of a stored record may hold (the status's value is checked by the store).
_FIELD_CHECKS: Dict[str, Callable[[Any], bool]] = {
    "id": _is_id, "name": lambda v: isinstance(v, str), "bundle": lambda v: isinstance(v, str),
    "status": lambda v: isinstance(v, str), "pid": _pid, "conmon_pid": _pid, "conmon_start_time": _count,
    "exit_code": _code, "oom_killed": lambda v: isinstance(v, bool), "created_at": _time, "started_at": _time,
    "finished_at": _time, "cgroup_dirs": _strings, "cgroup_parents": _strings, "container_cgroup_dirs": _strings,
    "owned_bundle": lambda v: isinstance(v, bool), "auto_remove": lambda v: isinstance(v, bool),
    "stdin": lambda v: isinstance(v, bool), "exec_sessions": _sessions, "note": lambda v: isinstance(v, str),
    "labels": _string_map, "launch": lambda v: isinstance(v, dict), "network": lambda v: isinstance(v, dict),
}  # fmt: skip
_REQUIRED_FIELDS = tuple(f.name for f in fields(Record) if f.default is MISSING and f.default_factory is MISSING)
_RECORD_FIELD_NAMES = tuple(f.name for f in fields(Record))


class Store:
    """The database at `path` plus the lock files in `lock_dir`; `bundles` is
    where ocirt makes the bundles it owns, one named after each container.

    A record that cannot be read (not JSON, a field of the wrong type, an
    unknown status, another container's) is logged once, stands for its
    container as `Record.unreadable` says (with its bundle in `bundles`, if
    there is one), and is never written over: only `delete` removes it. A
    row whose id is not a container id is passed over by `all` (logged
    once), as nothing of it can be found.

    On a full filesystem reading still works: where a connection that can
    write cannot be had (the first one to open grows SQLite's -shm file), a
    read-only one is used until something is to be written. That one writes
    nothing: it keeps its index of the WAL in its own memory, and needs the
    -shm file only to exist (the failed open leaves it, empty files taking
    no space). Writing needs space: a forced delete frees the container's
    log before its record goes.
    """

    def __init__(self, path: str, lock_dir: str, bundles: Optional[str] = None) -> None:
        """Open (or make) the database; StoreError if it cannot be used, leaving
        no directory behind that this call made."""
        self.bundles = bundles
        self._parsed: Dict[Tuple[object, object, object], Record] = {}  # all()'s records by their rows
        self._unreadable: Dict[str, str] = {}  # id -> its stand-in's note, for the records last read unreadable
        self._warned: Dict[str, object] = {}  # id -> the unreadable row's record, as last logged
        self.path = path
        self.lock_dir = lock_dir
        self._conn: Optional[sqlite3.Connection] = None
        self._read_only = False  # _conn cannot write (see _connect)
        self._mutex = threading.Lock()  # one connection, shared by this process's threads
        made: List[str] = []
        try:
            for d in (os.path.dirname(path), lock_dir):
                _makedirs(d, made)
                check_private_dir(d)
            # Switching a new database to WAL fails at once (no busy wait) while
            # another process does the same: opening is serialised.
            with self.lock(".open"):
                _private_database(path)
                with self._db() as db:
                    db.execute(SCHEMA)
        except BaseException as e:
            self.close()
            for d in reversed(made):
                shutil.rmtree(d, ignore_errors=True)
            if isinstance(e, OSError):
                raise StoreError(f"cannot keep ocirt's state in {os.path.dirname(path)}: {e.strerror}") from e
            raise

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The shared connection (one that can write, for `write`); sqlite3 errors
        (but integrity errors) become StoreError."""
        with self._mutex:
            try:
                if self._conn is not None and write and self._read_only:
                    self._conn.close()
                    self._conn = None
                if self._conn is None:
                    self._conn, self._read_only = self._connect(write)
                yield self._conn
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:
                if _full(self.path):
                    raise StoreFull(f"state database {self.path}: {e} (its filesystem is full)") from e
                raise StoreError(f"state database {self.path}: {e}") from e

    def _connect(self, write: bool) -> Tuple[sqlite3.Connection, bool]:
        """A connection that can write, and False; else, unless to `write`, a
        read-only one (see the class), and True. The first error if neither
        can be had."""
        try:
            return _open(self.path, read_only=False), False
        except sqlite3.OperationalError as e:
            if write:
                raise
            try:
                return _open(self.path, read_only=True), True
            except sqlite3.Error:
                raise e from None

    def insert(self, record: Record) -> None:
        """Add a new record; ContainerExists if the id or the name is taken."""
        with self._db(write=True) as db:
            try:
                db.execute("INSERT INTO containers VALUES (?, ?, ?)", (record.id, record.name, record.to_json()))
            except sqlite3.IntegrityError:
                raise ContainerExists(f"a container named {record.name!r} or with id {record.id} exists") from None

    def save(self, record: Record) -> None:
        """Replace the container's record (its name too: ContainerExists if
        another container has it), unless the stored one was unreadable when
        last read here (that one stays until deleted)."""
        if record.id in self._unreadable:
            return
        with self._db(write=True) as db:
            try:
                db.execute("UPDATE containers SET name = ?, record = ? WHERE id = ?", (record.name, record.to_json(), record.id))
            except sqlite3.IntegrityError:
                raise ContainerExists(f"a container named {record.name!r} exists") from None

    def delete(self, cid: str) -> None:
        with self._db(write=True) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (cid,))
        self._unreadable.pop(cid, None)
        self._warned.pop(cid, None)

    def get(self, cid: str) -> Optional[Record]:
        """The container's record (a stand-in for an unreadable one); None if there is none.
        StoreError for a row whose id is not a container id."""
        with self._db() as db:
            row = db.execute("SELECT id, name, record FROM containers WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return None
        record = self._read(*row)
        if record is None:
            raise StoreError(f"state database {self.path}: {cid!r} is not a container id")
        return record

    def all(self) -> List[Record]:
        """Every record, oldest first (stand-ins for unreadable ones). A record
        unchanged since the last call is the very same object (so it compares
        equal at once), not parsed again."""
        with self._db() as db:
            rows = db.execute("SELECT id, name, record FROM containers ORDER BY rowid").fetchall()
        before, now = self._parsed, {}
        out = []
        for row in rows:
            record = before.get(row) or self._read(*row)
            if record is None:
                continue
            if record.id not in self._unreadable:
                now[row] = record
            out.append(record)
        self._parsed = now
        return out

    def unreadable(self, cid: str) -> Optional[str]:
        """Why the container's record was unreadable when last read here (its
        stand-in's note); None if it was read."""
        return self._unreadable.get(cid)

    def _read(self, cid: object, name: object, text: object) -> Optional[Record]:
        """The record of a row, or its stand-in; None for a row whose id is not
        a container id. What is wrong with a row is logged once."""
        if not _is_id(cid):
            self._warn_once(str(cid), text, f"a row's id, {_shown(cid)}, is not a container id: it is passed over")
            return None
        assert isinstance(cid, str)
        try:
            record = Record.from_json(text)
            if (record.id, record.name) != (cid, name):
                raise StoreError(f"the record is that of {record.name!r} ({record.id})")
            if record.status not in STATUSES:
                raise StoreError(f"the record's status is {_shown(record.status)}")
        except StoreError as e:
            bundle = os.path.join(self.bundles, cid) if self.bundles is not None else ""
            stand_in = Record.unreadable(cid, name if isinstance(name, str) else cid, str(e), bundle if os.path.isdir(bundle) else "")
            self._unreadable[cid] = stand_in.note
            self._warn_once(cid, text, f"container {stand_in.name} ({cid}): {stand_in.note}")
            return stand_in
        self._unreadable.pop(cid, None)
        self._warned.pop(cid, None)
        return record

    def _warn_once(self, key: str, text: object, message: str) -> None:
        """Log `message` about row `key`, unless already logged for this `text`."""
        if self._warned.get(key, _NOTHING) != text:
            self._warned[key] = text
            log.warning("state database %s: %s", self.path, message)

    def resolve(self, name_or_id: str) -> str:
        """The id of the container `name_or_id` names: an exact id, else an exact
        name, else a unique id prefix (as podman does); all case-sensitive.

        An id always wins over a name, so no container can shadow another
        by taking its id as a name. InvalidArgument for an empty string or a
        prefix of several ids; ContainerNotFound if nothing matches.
        """
        if not isinstance(name_or_id, str) or not name_or_id:
            raise InvalidArgument(f"container name or id must be a non-empty string, not {name_or_id!r}")
        try:
            name_or_id.encode("utf-8")
        except UnicodeEncodeError:  # e.g. undecodable bytes of a command line: no id or name is like that
            raise ContainerNotFound(f"no container named {name_or_id!r} or with an id starting with it") from None
        with self._db() as db:
            for query in ("SELECT id FROM containers WHERE id = ?", "SELECT id FROM containers WHERE name = ?"):
                row = db.execute(query, (name_or_id,)).fetchone()
                if row:
                    return str(row[0])
            rows = db.execute("SELECT id FROM containers WHERE substr(id, 1, length(?)) = ?", (name_or_id, name_or_id)).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        if len(rows) > 1:
            raise InvalidArgument(f"{name_or_id!r} matches {len(rows)} containers; give more of the id")
        raise ContainerNotFound(f"no container named {name_or_id!r} or with an id starting with it")

    @contextmanager
    def lock(self, cid: str, *, blocking: bool = True) -> Iterator[bool]:
        """Hold the container's lock file; yields False if not blocking and taken."""
        fd = self._flock(os.path.join(self.lock_dir, cid), blocking)
        if fd is None:
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)

    @staticmethod
    def _flock(path: str, blocking: bool) -> Optional[int]:
        """An fd holding the flock of the file at `path` now; None if taken (not blocking).

        A removal unlinks the lock file while holding it: a process that was
        waiting on the old file then holds a lock nobody else will ever see,
        while a newcomer locks a new file. So the lock counts only if the
        file locked is still the one at `path`; else it is taken again.
        """
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def lock_steps(self, cid: str, *, blocking: bool = True) -> "Steps[Optional[int]]":
        """The container's lock file, held: an fd to close to release it; None
        if not blocking and taken. Steps (see ocirt.steps): while another
        process holds it, a thread of its own waits in flock(2) and the steps
        wait on a pipe it writes, so an event loop is never blocked. Closed
        early (cancelled), they leave nothing held: a lock the thread gets
        afterwards is released at once."""
        path = os.path.join(self.lock_dir, cid)
        fd = self._flock(path, blocking=False)
        if fd is not None or not blocking:
            return fd
        return (yield from _flock_in_thread(path))

    def remove_lock(self, cid: str) -> None:
        try:
            os.unlink(os.path.join(self.lock_dir, cid))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Close the database connection (it reopens if used again)."""
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _open(path: str, *, read_only: bool) -> sqlite3.Connection:
    """A connection to the database at `path`, in WAL mode. Read-only, it
    writes nothing at all, the -shm file included (SQLite then needs that
    file to exist)."""
    if read_only:
        escaped = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
        conn = sqlite3.connect(f"file:{escaped}?mode=ro&readonly_shm=1", uri=True, timeout=30, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _full(path: str) -> bool:
    """Whether the database's filesystem is full (why SQLite's error may have come)."""
    try:
        return os.statvfs(os.path.dirname(path)).f_bavail == 0
    except OSError:
        return False


def _private_database(path: str) -> None:
    """The database file (SQLite gives its -wal and -shm files the same mode) is 0600."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for extra in ("-wal", "-shm"):
        try:
            os.chmod(path + extra, 0o600)
        except FileNotFoundError:
            pass


def _makedirs(path: str, made: List[str]) -> None:
    """os.makedirs, noting in `made` the top directory it created (if any)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        _makedirs(parent, made)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    if not any(path.startswith(m + "/") for m in made):
        made.append(path)
