"""Generate OCI runtime specs in Python: `runc spec`'s default plus options."""

from __future__ import annotations

import copy
import resource
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import InvalidArgument
from .spec import parse_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
CPU_PERIOD = 100_000

# What `runc spec` (runc 1.1) writes, less the terminal and the rootfs path.
_DEFAULT: Dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: DEFAULT_CAPS for k in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "ocirt",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
}  # fmt: skip


def generate(
    args: Sequence[str],
    *,
    rootfs: str,
    env: Optional[Mapping[str, str]] = None,
    cwd: str = "/",
    user: Optional[str] = None,
    hostname: Optional[str] = None,
    tty: bool = False,
    read_only: bool = False,
    memory: Optional[int] = None,
    pids_limit: Optional[int] = None,
    cpus: Optional[float] = None,
    cap_add: Sequence[str] = (),
) -> Dict[str, Any]:
    """A complete spec for `args` on `rootfs` (an absolute path).

    The rootfs is writable unless `read_only`; /tmp is a tmpfs either way.
    Rlimits are capped at this process's hard limits: raising one needs
    CAP_SYS_RESOURCE, which these hosts may lack.
    """
    if not args or not all(isinstance(a, str) and a for a in args):
        raise InvalidArgument("a container needs a command: a non-empty list of non-empty strings")
    if not cwd.startswith("/"):
        raise InvalidArgument(f"working directory must be absolute, not {cwd!r}")
    spec = copy.deepcopy(_DEFAULT)
    process = spec["process"]
    process["args"] = list(args)
    process["cwd"] = cwd
    process["terminal"] = bool(tty)
    for key, value in (env or {}).items():
        if not key or "=" in key:
            raise InvalidArgument(f"invalid environment variable name {key!r}")
        process["env"] = [e for e in process["env"] if not e.startswith(key + "=")] + [f"{key}={value}"]
    if user is not None:
        process["user"] = parse_user(user, rootfs)
    for cap in cap_add:
        name = cap.upper() if cap.upper().startswith("CAP_") else "CAP_" + cap.upper()
        for key in process["capabilities"]:
            if name not in process["capabilities"][key]:
                process["capabilities"][key] = process["capabilities"][key] + [name]
    process["rlimits"] = [_capped(r) for r in process["rlimits"]]
    spec["root"] = {"path": rootfs, "readonly": bool(read_only)}
    spec["hostname"] = hostname or "ocirt"
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
    resources = spec["linux"]["resources"]
    if memory is not None:
        if memory <= 0:
            raise InvalidArgument(f"memory limit must be positive, not {memory}")
        resources["memory"] = {"limit": memory, "swap": memory}
    if pids_limit is not None:
        if pids_limit <= 0:
            raise InvalidArgument(f"pids limit must be positive, not {pids_limit}")
        resources["pids"] = {"limit": pids_limit}
    if cpus is not None:
        if not cpus > 0:
            raise InvalidArgument(f"cpus must be positive, not {cpus}")
        resources["cpu"] = {"quota": int(cpus * CPU_PERIOD), "period": CPU_PERIOD}
    return spec


def _capped(rlimit: Dict[str, Any]) -> Dict[str, Any]:
    name = rlimit["type"]
    number = getattr(resource, name, None)
    if number is None:
        return rlimit
    _, hard = resource.getrlimit(number)
    if hard == resource.RLIM_INFINITY:
        return rlimit
    return {"type": name, "hard": min(rlimit["hard"], hard), "soft": min(rlimit["soft"], hard)}


def parse_size(text: str) -> int:
    """Bytes from "512", "64k", "16m", "1g" (podman's --memory units)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = text.strip().lower()
    factor = 1
    if value and value[-1] in units:
        factor = units[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise InvalidArgument(f"invalid size {text!r}: use a number with an optional unit b, k, m or g") from None
    if number <= 0:
        raise InvalidArgument(f"size must be positive, not {text!r}")
    return int(number * factor)


__all__: List[str] = ["generate", "parse_size", "DEFAULT_PATH"]
