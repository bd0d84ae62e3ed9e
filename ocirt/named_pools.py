"""Pools kept in the store under a name: warm containers that outlive the
process that made them, for the command line (see ocirt.pool for how a
pooled container runs its job).

    ROOT/pools/NAME.json   the pool: its size and the options its containers are made with (0600)
    ROOT/pools/NAME.lock   flock(2)ed while a job claims a container
    ROOT/pools/NAME.fill   flock(2)ed by the one process filling the pool

A ready container carries NAME_LABEL; its stub listens on a socket in its
bundle (JOB_SOCKET), which the job's process connects to and sends the job
down. A job claims a container under the pool's lock by taking that label
away (Recipe.assign), so two jobs never share one; a container whose stub
is gone (its connect refused) is deleted and the next one tried. No
process holds the pool: `fill` makes containers up to its size, and
whoever takes one starts a fill in the background.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple

from .container import Container
from .errors import ContainerNotFound, InvalidState, OcirtError
from .layout import PRIVATE_DIR, read_small
from .pool import Job, Recipe, check_size, delete_quietly
from .spec import POOL_NAME_LABEL as NAME_LABEL
from .state import ContainerStatus
from .validate import check_name

if TYPE_CHECKING:
    from .runtime import Runtime

JOB_SOCKET = "job.sock"  # in a ready container's bundle


@dataclass(frozen=True)
class PoolInfo:
    """A named pool as `pool ls` shows it: containers `ready` of `size`."""

    name: str
    size: int
    ready: int
    options: Dict[str, Any]
    created_at: float


class NamedPool:
    """The pool `name` of `runtime`'s store: see the module docstring. Make
    one with `create`, find one with `NamedPool(runtime, name)`
    (ContainerNotFound when there is none)."""

    def __init__(self, runtime: "Runtime", name: str) -> None:
        self._rt = runtime
        self.name = check_name(name)
        self._dir = _pools_dir(runtime)
        self._path = os.path.join(self._dir, f"{name}.json")
        record = _read(self._path)
        if record is None:
            raise ContainerNotFound(f"no pool named {name!r}")
        self.size: int = record["size"]
        self.options: Dict[str, Any] = record["options"]
        self.created_at: float = record["created_at"]

    @classmethod
    def create(cls, runtime: "Runtime", name: str, size: int, **options: Any) -> "NamedPool":
        """Record the pool `name` of `size` containers made with `options`
        (Pool's create-time options; an image must be in the store: pull it
        first), then fill it. InvalidArgument for bad options, InvalidState
        for a name taken, before anything is made."""
        check_name(name)
        check_size(size)
        Recipe(runtime, options, pull="never")  # checks the options and the image
        directory = _pools_dir(runtime)
        os.makedirs(directory, mode=PRIVATE_DIR, exist_ok=True)
        record = {"size": size, "options": options, "created_at": time.time()}
        path = os.path.join(directory, f"{name}.json")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise InvalidState(f"a pool named {name!r} exists already") from None
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        pool = cls(runtime, name)
        try:
            pool.fill()
        except BaseException:
            pool.remove()
            raise
        return pool

    @staticmethod
    def names(runtime: "Runtime") -> List[str]:
        """The names of the pools of `runtime`'s store."""
        try:
            entries = os.listdir(_pools_dir(runtime))
        except FileNotFoundError:
            return []
        return sorted(e[: -len(".json")] for e in entries if e.endswith(".json"))

    def info(self) -> PoolInfo:
        return PoolInfo(self.name, self.size, len(self.ready()), self.options, self.created_at)

    def recipe(self) -> Recipe:
        """What this pool's containers are made from (its image must be held)."""
        return Recipe(self._rt, _options(self.options), pull="never")

    def ready(self) -> List[Container]:
        """Its containers waiting for a job, oldest first."""
        return self._rt.list(status=ContainerStatus.CREATED, label={NAME_LABEL: self.name})

    def _ready_only(self) -> List[Container]:
        """ready, once the pool's containers that died waiting (their stub
        killed: stopped, never given a job) are deleted."""
        members = self._rt.list(label={NAME_LABEL: self.name})
        for c in members:
            if c.state.status is not ContainerStatus.CREATED:
                delete_quietly(c)
        return [c for c in members if c.state.status is ContainerStatus.CREATED]

    # -- jobs -------------------------------------------------------------------

    def claim(self, job: Job) -> Tuple[Container, socket.socket]:
        """A ready container made `job`'s (see Recipe.assign), and a socket
        connected to its stub to send the job on (see ocirt.pool.send_ahead);
        None found: a container made cold for it. Its container is then no
        longer the pool's."""
        with self._locked("lock"):
            for c in self._ready_only():
                try:
                    sock = _connect(os.path.join(c.bundle, JOB_SOCKET))
                except OSError:
                    delete_quietly(c)  # its stub is gone: it can take no job
                    continue
                try:
                    Recipe.assign(c, job, (NAME_LABEL,))
                except BaseException:
                    sock.close()
                    raise
                return c, sock
        c = self._make()  # cold, rather than wait for a fill
        try:
            sock = _connect(os.path.join(c.bundle, JOB_SOCKET))
            Recipe.assign(c, job, (NAME_LABEL,))
        except BaseException:
            delete_quietly(c)
            raise
        return c, sock

    # -- the containers ---------------------------------------------------------

    def fill(self) -> int:
        """Make containers until `size` are ready, unless another process is
        filling it (that one then sees what was taken meanwhile); how many
        this call made. Stops when the pool is removed."""
        made = 0
        while True:
            with self._locked("fill", wait=False) as filling:
                if not filling:
                    return made
                while os.path.exists(self._path) and len(self._ready_only()) < self.size:
                    self._make(pooled=True)
                    made += 1
            if not os.path.exists(self._path) or len(self.ready()) >= self.size:
                return made  # checked after the lock went: a job that found it held is seen

    def _make(self, pooled: bool = False) -> Container:
        """A new container of this pool, created, its stub listening on its
        bundle's JOB_SOCKET; with NAME_LABEL when `pooled`."""
        recipe = self.recipe()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            return recipe.make(listener, {NAME_LABEL: self.name} if pooled else {}, before=lambda bundle: _listen(listener, bundle))
        finally:
            listener.close()  # the stub's copy is the one that counts

    def remove(self) -> List[str]:
        """Remove the pool: its record first (a fill stops), then, once no
        fill runs, its ready containers; their ids. Jobs' containers are theirs."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        with self._locked("fill"):
            removed = []
            for c in self._rt.list(label={NAME_LABEL: self.name}):
                delete_quietly(c)
                removed.append(c.id)
        for suffix in ("lock", "fill"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._dir, f"{self.name}.{suffix}"))
        return removed

    @contextlib.contextmanager
    def _locked(self, which: str, wait: bool = True) -> Iterator[bool]:
        """flock(2) ROOT/pools/NAME.`which`; whether it was taken (always, with `wait`)."""
        fd = os.open(os.path.join(self._dir, f"{self.name}.{which}"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


def _pools_dir(runtime: "Runtime") -> str:
    if runtime.root is None:
        raise InvalidState("a named pool lives in a store: open the runtime with Runtime.open(root)")
    return os.path.join(runtime.root, "pools")


def _read(path: str) -> Optional[Dict[str, Any]]:
    """A pool's record, or None when there is none; OcirtError for one that is not a pool's."""
    try:
        record = json.loads(read_small(path, 1 << 20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise OcirtError(f"the pool record {path} cannot be read: {e}") from e
    if not isinstance(record, dict) or not isinstance(record.get("size"), int) or not isinstance(record.get("options"), dict):
        raise OcirtError(f"the pool record {path} is not a pool's")
    record.setdefault("created_at", 0.0)
    return record


def _options(stored: Mapping[str, Any]) -> Dict[str, Any]:
    """Options as Recipe takes them, from their JSON form (lists where tuples were)."""
    options = dict(stored)
    if "ulimits" in options and options["ulimits"] is not None:
        options["ulimits"] = {k: tuple(v) for k, v in options["ulimits"].items()}
    if "mounts" in options:
        options["mounts"] = [tuple(m) for m in options["mounts"]]
    return options


def _listen(listener: socket.socket, bundle: str) -> None:
    """Bind `listener` to the bundle's JOB_SOCKET and listen (one job: a backlog of one)."""
    with _in_dir(bundle) as short:
        listener.bind(os.path.join(short, JOB_SOCKET))
    listener.listen(1)


def _connect(path: str) -> socket.socket:
    """A socket connected to the listening socket at `path` (OSError when none listens there)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with _in_dir(os.path.dirname(path)) as short:
            sock.connect(os.path.join(short, os.path.basename(path)))
    except BaseException:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def _in_dir(directory: str) -> Iterator[str]:
    """A short name for `directory`, /proc/self/fd/N: a socket's path is limited to 108 bytes."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)

