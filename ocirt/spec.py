"""OCI bundles: reading a caller's config.json and deriving what ocirt needs."""

from __future__ import annotations

import copy
import errno
import json
import os
import signal as _signal
import stat
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import native as _native
from .errors import InvalidArgument
from .validate import parse_signal

Spec = Dict[str, Any]

STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"
IMAGE_ANNOTATION = "io.ocirt.image.name"  # the image a container was made from, by name
IMAGE_ID_ANNOTATION = "io.ocirt.image.id"  # and by id: its config digest
POOL_NAME_LABEL = "io.ocirt.pool"  # the named pool a ready container waits in (see named_pools.py)
POOL_OWNER_LABEL = "io.ocirt.pool.owner"  # "<pid>:<start time>" of the process whose pool made the container (see pool.py)
STOP_TIMEOUT_ANNOTATION = "io.ocirt.stop-timeout"  # seconds `ocirt stop` waits before SIGKILL, when not told
DEFAULT_STOP_TIMEOUT = 10.0


def load_bundle(bundle: str | os.PathLike[str]) -> tuple[str, Spec]:
    """Return (absolute bundle path, parsed config.json), or raise InvalidArgument.

    Checks what runc would otherwise reject later and less clearly: the
    bundle and its config.json exist, the JSON is an object with a
    `process.args` list and a `root.path`.
    """
    path = os.path.abspath(os.fspath(bundle))
    if not os.path.isdir(path):
        raise InvalidArgument(f"bundle {path} does not exist or is not a directory")
    config = os.path.join(path, "config.json")
    try:
        with open(config, "rb") as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"bundle {path} has no config.json") from None
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read {config}: {e}") from e
    check_spec(spec, path, what=config)
    return path, spec


def check_spec(spec: object, base: str, what: str = "the spec") -> None:
    """InvalidArgument unless `spec` is an object with a `process.args` list
    and a `root.path` (resolved against `base`) that is a directory."""
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{what} is not a JSON object")
    process = spec.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("args"), list) or not process["args"]:
        raise InvalidArgument(f"{what} has no process.args")
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise InvalidArgument(f"{what} has no root.path")
    rootfs = os.path.join(base, root["path"])
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"root filesystem {rootfs} of {what} does not exist")
    try:
        stop_signal(spec)  # refused now, not when stop would need it
    except InvalidArgument as e:
        raise InvalidArgument(f"{what}: annotation {STOP_SIGNAL_ANNOTATION}: {e}") from None


def spec_on(spec: Mapping[str, Any], rootfs: Optional[str]) -> tuple[str, Spec]:
    """(a base directory, a checked copy of `spec`) for a spec given as an
    object rather than a bundle: its root.path is `rootfs` when given (made
    absolute), else its own, which must then be absolute."""
    if not isinstance(spec, Mapping):
        raise InvalidArgument(f"spec must be a dict (an OCI runtime spec), not {type(spec).__name__}")
    out = copy.deepcopy(dict(spec))
    if rootfs is not None:
        out["root"] = dict(out.get("root") or {}, path=os.path.abspath(os.fspath(rootfs)))
    root = out.get("root")
    if isinstance(root, dict) and isinstance(root.get("path"), str) and not os.path.isabs(root["path"]):
        raise InvalidArgument(f"a spec given without a bundle needs an absolute root.path (or rootfs=), not {root['path']!r}")
    check_spec(out, "/", "the spec")
    return os.path.dirname(out["root"]["path"].rstrip("/")) or "/", out


def runtime_spec(bundle: str, spec: Spec) -> Spec:
    """A copy of `spec` that works from another directory than `bundle`.

    ocirt hands the runtime its own per-container bundle directory, so the
    caller's bundle is never written to and can back many containers. The
    paths the OCI spec resolves against the bundle (root.path and relative
    bind mount sources) are made absolute here.
    """
    out = dict(spec)
    out["root"] = dict(spec["root"], path=os.path.join(bundle, spec["root"]["path"]))
    mounts = spec.get("mounts")
    if isinstance(mounts, list):
        fixed = []
        for m in mounts:
            src = m.get("source") if isinstance(m, dict) else None
            if isinstance(src, str) and src and not os.path.isabs(src) and _is_bind(m):
                m = dict(m, source=os.path.join(bundle, src))
            fixed.append(m)
        out["mounts"] = fixed
    return out


def _is_bind(mount: Dict[str, Any]) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def stop_signal(spec: Spec) -> int:
    """The signal that asks this container to stop: the image's, else SIGTERM."""
    value: Optional[str] = (spec.get("annotations") or {}).get(STOP_SIGNAL_ANNOTATION)
    if not value:
        return int(_signal.SIGTERM)
    return parse_signal(value)


def stop_timeout(spec: Spec) -> float:
    """Seconds a stop waits before SIGKILL unless told: the container's own (run --stop-timeout), else 10."""
    value = (spec.get("annotations") or {}).get(STOP_TIMEOUT_ANNOTATION)
    try:
        seconds = float(value) if value is not None else DEFAULT_STOP_TIMEOUT
    except ValueError:
        return DEFAULT_STOP_TIMEOUT
    return seconds if 0 <= seconds < float("inf") else DEFAULT_STOP_TIMEOUT


def has_poststart_hooks(spec: Spec) -> bool:
    return bool((spec.get("hooks") or {}).get("poststart"))


def controllers_used(spec: Spec) -> List[str]:
    """The cgroup (v2) controllers the limits in `spec` need."""
    resources = (spec.get("linux") or {}).get("resources") or {}
    if not isinstance(resources, dict):
        return []
    cpu = resources.get("cpu") or {}
    used = {
        "memory": bool(resources.get("memory")),
        "pids": bool(resources.get("pids")),
        "io": bool(resources.get("blockIO")),
        "cpu": isinstance(cpu, dict) and any(cpu.get(k) is not None for k in ("shares", "quota", "period")),
        "cpuset": isinstance(cpu, dict) and any(cpu.get(k) for k in ("cpus", "mems")),
    }
    return [c for c, yes in used.items() if yes]


def has_own_pid_namespace(spec: Spec) -> bool:
    """True when killing the container's init kills all its processes."""
    namespaces = (spec.get("linux") or {}).get("namespaces") or []
    return any(ns.get("type") == "pid" and not ns.get("path") for ns in namespaces)


def exec_process(
    spec: Spec,
    args: list[str],
    *,
    env: Optional[Dict[str, str]] = None,
    user: Optional[Spec] = None,
    cwd: Optional[str] = None,
    tty: bool = False,
    cap_add: tuple[str, ...] | list[str] = (),
    no_new_privs: Optional[bool] = None,
) -> Spec:
    """The OCI process for an exec: the container's process with overrides.

    `env` entries are added to (and override) the container's environment;
    `user` is {"uid", "gid"} (see parse_user); `cap_add` names are added to
    every capability set.
    """
    base = dict(spec["process"])
    process: Spec = {
        "args": list(args),
        "env": _merge_env(base.get("env") or [], env or {}),
        "cwd": cwd if cwd is not None else base.get("cwd", "/"),
        "terminal": bool(tty),
        "user": user if user is not None else base.get("user", {"uid": 0, "gid": 0}),
    }
    if tty:
        process["consoleSize"] = {"height": 24, "width": 80}
    for key in ("apparmorProfile", "selinuxLabel", "oomScoreAdj"):
        if key in base:
            process[key] = base[key]
    caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
    for cap in cap_add:
        name = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            values = caps.setdefault(key, [])
            if name not in values:
                values.append(name)
    if caps:
        process["capabilities"] = caps
    nnp = base.get("noNewPrivileges", False) if no_new_privs is None else no_new_privs
    process["noNewPrivileges"] = bool(nnp)
    if not process["cwd"].startswith("/"):
        raise InvalidArgument(f"exec working directory must be absolute, not {process['cwd']!r}")
    return process


def _merge_env(base: list[str], extra: Dict[str, str]) -> list[str]:
    merged: Dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        merged[key] = value
    for key, value in extra.items():
        if not key or "=" in key:
            raise InvalidArgument(f"invalid environment variable name {key!r}")
        merged[key] = str(value)
    return [f"{k}={v}" for k, v in merged.items()]


ACCOUNTS_MAX = 1 << 20  # a passwd or group file larger than this is refused
ID_MAX = 2**32 - 2  # (uid_t)-1 means "no change" to the kernel

# A root filesystem directory, an open directory fd (a container's /proc/<pid>/root),
# or an overlay's layers, topmost first (an image's: see shown_by).
Root = Union[str, int, Tuple[str, ...]]


def parse_user(user: str | int, root: Optional[Root]) -> Spec:
    """{"uid", "gid"} from an int, "uid", "uid:gid", "name" or "name:group".

    Names are looked up in /etc/passwd and /etc/group of `root`. Those files
    belong to the container: they are opened inside that root (no symlink or
    ".." leads out of it), must be regular files (a FIFO cannot hang the
    lookup) and are read up to ACCOUNTS_MAX bytes. InvalidArgument otherwise.
    """
    text = str(user)
    name, _, group = text.partition(":")
    if not name:
        raise InvalidArgument(f"invalid user {user!r}")
    uid, gid = _lookup(name, root, "etc/passwd", user)
    if group:
        gid = _lookup(group, root, "etc/group", user)[0]
    return {"uid": uid, "gid": gid}


def home_of(uid: int, root: Optional[Root]) -> str:
    """The home directory of `uid` in the root's /etc/passwd, else "/" (as runc sets HOME)."""
    if root is None:
        return "/"
    try:
        text = _read_in_root(root, "etc/passwd", ACCOUNTS_MAX).decode("utf-8", errors="replace")
    except OSError:
        return "/"
    for line in text.split("\n"):
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid) and fields[5].startswith("/"):
            return fields[5]
    return "/"


def _lookup(name: str, root: Optional[Root], table: str, user: object) -> tuple[int, int]:
    """(id, primary gid) for a number or a name in the root's passwd/group file."""
    number = _id_number(name, user)
    if number is not None:
        return number, (number if table == "etc/group" else 0)
    if root is None:
        raise InvalidArgument(f"user {user!r}: a name needs the container's /{table}, and there is no root to read it from")
    try:
        text = _read_in_root(root, table, ACCOUNTS_MAX).decode("utf-8", errors="replace")
    except OSError as e:
        raise InvalidArgument(f"user {user!r}: cannot read the container's /{table}: {e.strerror}") from e
    for line in text.split("\n"):
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            found = _id_number(fields[2], user)
            gid = _id_number(fields[3], user) if table == "etc/passwd" and len(fields) > 3 else found
            if found is not None and gid is not None:
                return found, gid
    raise InvalidArgument(f"user {user!r}: no {name!r} in the container's /{table}")


def _id_number(text: str, user: object) -> Optional[int]:
    """A uid/gid written in ASCII decimal, or None for a name."""
    if not (text.isascii() and text.isdecimal()):
        return None
    value = int(text)
    if value > ID_MAX:
        raise InvalidArgument(f"user {user!r}: id {value} is out of range 0-{ID_MAX}")
    return value


def shown_by(layers: Sequence[str], path: str) -> Optional[str]:
    """The layer (of `layers`, topmost first) whose `path` an overlay of
    them shows, as overlayfs decides it: the topmost layer holding the path;
    none where a higher layer whites it (or a directory above it) out,
    makes a directory above it opaque, or holds a non-directory there.
    Nothing is followed: a link on the way counts as a non-directory."""
    parts = [p for p in path.split("/") if p]
    for layer in layers:
        at, opaque = layer, False
        for depth, part in enumerate(parts):
            at = os.path.join(at, part)
            try:
                st = os.lstat(at)
            except FileNotFoundError:
                break
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # a whiteout
            if depth == len(parts) - 1:
                return layer
            if not stat.S_ISDIR(st.st_mode):
                return None
            opaque = opaque or _is_opaque(at)
        if opaque:
            return None  # the layers below are hidden there
    return None


def _is_opaque(directory: str) -> bool:
    try:
        return os.getxattr(directory, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _read_in_root(root: Root, path: str, limit: int) -> bytes:
    """The regular file `path` of `root`, opened inside it; OSError(EFBIG) above `limit` bytes."""
    if isinstance(root, tuple):
        layer = shown_by(root, path)
        if layer is None:
            raise OSError(errno.ENOENT, "no such file in the image's layers", path)
        root = layer
    dirfd = root if isinstance(root, int) else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _native.open_in_root(dirfd, path)
    finally:
        if dirfd is not root:
            os.close(dirfd)
    try:
        data = b""
        while len(data) <= limit and (chunk := os.read(fd, limit + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data
