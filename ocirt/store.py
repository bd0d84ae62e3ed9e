"""Persistent container records: one SQLite database per ocirt root.

WAL mode and a busy timeout let several processes share the database; every
change is committed before the call that made it returns. Cross-process
exclusion for one container is a flock on its lock file (`lock(id)`), held
for the span of a verb.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional

from .errors import ContainerExists, ContainerNotFound, InvalidArgument, StoreError
from .layout import check_private_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
)
"""



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

    def to_json(self) -> str:
        # Field by field, not dataclasses.asdict: that deep-copies every list
        # and dict only for json to read them, a third of a save's CPU.
        return json.dumps({name: getattr(self, name) for name in _RECORD_FIELD_NAMES})

    @classmethod
    def from_json(cls, text: str) -> "Record":
        data = json.loads(text)
        known = _RECORD_FIELDS
        return cls(**{k: v for k, v in data.items() if k in known})


_RECORD_FIELD_NAMES = tuple(f.name for f in fields(Record))
_RECORD_FIELDS = frozenset(_RECORD_FIELD_NAMES)


class Store:
    """The database at `path` plus the lock files in `lock_dir`."""

    def __init__(self, path: str, lock_dir: str) -> None:
        """Open (or make) the database; StoreError if it cannot be used, leaving
        no directory behind that this call made."""
        self._parsed: Dict[str, Record] = {}  # all()'s records by their JSON
        self.path = path
        self.lock_dir = lock_dir
        self._conn: Optional[sqlite3.Connection] = None
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
    def _db(self) -> Iterator[sqlite3.Connection]:
        """The shared connection; sqlite3 errors (but integrity errors) become StoreError."""
        with self._mutex:
            try:
                if self._conn is None:
                    conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                    self._conn = conn
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                yield self._conn
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as e:
                raise StoreError(f"state database {self.path}: {e}") from e

    def insert(self, record: Record) -> None:
        """Add a new record; ContainerExists if the id or the name is taken."""
        with self._db() as db:
            try:
                db.execute("INSERT INTO containers VALUES (?, ?, ?)", (record.id, record.name, record.to_json()))
            except sqlite3.IntegrityError:
                raise ContainerExists(f"a container named {record.name!r} or with id {record.id} exists") from None

    def save(self, record: Record) -> None:
        with self._db() as db:
            db.execute("UPDATE containers SET record = ? WHERE id = ?", (record.to_json(), record.id))

    def delete(self, cid: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def get(self, cid: str) -> Optional[Record]:
        with self._db() as db:
            row = db.execute("SELECT record FROM containers WHERE id = ?", (cid,)).fetchone()
        return Record.from_json(row[0]) if row else None

    def all(self) -> List[Record]:
        """Every record, oldest first. A record unchanged since the last call is
        the very same object (so it compares equal at once), not parsed again."""
        with self._db() as db:
            rows = db.execute("SELECT record FROM containers ORDER BY rowid").fetchall()
        before, now = self._parsed, {}
        for (text,) in rows:
            now[text] = before.get(text) or Record.from_json(text)
        self._parsed = now
        return [now[text] for (text,) in rows]

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
