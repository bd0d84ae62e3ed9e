"""Generate OCI runtime specs in Python: `runc spec`'s default plus options."""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import InvalidArgument
from .layout import make_private_dirs, write_private
from .rootfs import busybox_rootfs
from .spec import STOP_SIGNAL_ANNOTATION, STOP_TIMEOUT_ANNOTATION, Root, parse_user
from .validate import check_argv, check_env, check_path, check_sequence, check_text, parse_signal

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ENV = (f"PATH={DEFAULT_PATH}", "TERM=xterm")
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
CPU_PERIOD = 100_000
MIN_CPUS = 0.01  # the smallest --cpus: a quota of 1000 us a period (runc reads a quota of 0 as no limit)
MIN_QUOTA = 1000
INT64_MAX = 2**63 - 1  # runc's limits are int64

# What `runc spec` (runc 1.1) writes, less the terminal and the rootfs path.
_DEFAULT: Dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": list(DEFAULT_ENV),
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
_DEFAULT_JSON = json.dumps(_DEFAULT)  # each spec starts as a copy of it: json.loads copies in a quarter of deepcopy's time


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
    layer: Optional[Tuple[str, str]] = None,
    lowers: Sequence[str] = (),
    accounts: Optional[Root] = None,
    mounts: Sequence[Sequence[str]] = (),
    network: str = "none",
    cap_drop: Sequence[str] = (),
    tmpfs: Sequence[str] = (),
    ulimits: Optional[Mapping[str, Tuple[int, int]]] = None,
    annotations: Optional[Mapping[str, str]] = None,
    stop_signal: Optional[str] = None,
    stop_timeout: Optional[float] = None,
) -> Dict[str, Any]:
    """A complete spec for `args` on `rootfs` (an absolute path).

    The rootfs is writable unless `read_only`; /tmp is a tmpfs either way.
    With `layer` = (upper, work), two directories of the container's own,
    the rootfs is only the lower layer of an overlay mounted at / inside the
    container: what the container writes lands in `upper`, and `rootfs`
    itself (a tree shared by many containers) is never written. `lowers`
    (an image's layers, topmost first) stand for `rootfs` in that overlay
    (then an empty directory), and users are named in `accounts` (the root,
    or the layers, whose /etc/passwd and /etc/group count) instead of `rootfs`.
    Rlimits are capped at this process's hard limits: raising one needs
    CAP_SYS_RESOURCE, which these hosts may lack. `mounts` are bind mounts,
    each (host path, container path) or (host path, container path, "ro").
    `network` is "none" (a network namespace of its own, loopback only),
    "host" (the host's) or "ns:PATH" (the namespace a file names, e.g. one
    made with `ip netns add`). `cap_drop` takes capabilities away (after
    `cap_add`); `tmpfs` are container paths to mount a tmpfs on;
    `ulimits` are {name: (soft, hard)} with names as podman's --ulimit
    (nofile, nproc, core...); `stop_signal` is the signal stop sends first,
    `stop_timeout` how long `ocirt stop` waits for it before SIGKILL when
    not told.
    """
    args = check_argv(args, "command")
    if not check_text(cwd, "working directory").startswith("/"):
        raise InvalidArgument(f"working directory must be absolute, not {cwd!r}")
    spec: Dict[str, Any] = json.loads(_DEFAULT_JSON)
    process = spec["process"]
    process["args"] = list(args)
    process["cwd"] = cwd
    process["terminal"] = bool(tty)
    for key, value in check_env(env).items():
        process["env"] = [e for e in process["env"] if not e.startswith(key + "=")] + [f"{key}={value}"]
    if user is not None:
        process["user"] = parse_user(check_text(user, "user"), accounts or rootfs)
    for cap in check_sequence(cap_add, "cap_add"):
        name = _cap_name(check_text(cap, "capability"))
        for key in process["capabilities"]:
            if name not in process["capabilities"][key]:
                process["capabilities"][key] = process["capabilities"][key] + [name]
    for cap in check_sequence(cap_drop, "cap_drop"):
        name = _cap_name(check_text(cap, "capability"))
        for key in process["capabilities"]:
            process["capabilities"][key] = [c for c in process["capabilities"][key] if c != name]
    for name, (soft, hard) in (ulimits or {}).items():
        kind = "RLIMIT_" + name.upper()
        whole = all(isinstance(n, int) and not isinstance(n, bool) for n in (soft, hard))
        if not hasattr(resource, kind) or not whole or not (0 <= soft <= hard < 2**64):
            raise InvalidArgument(f"invalid ulimit {name}={soft}:{hard}: a name like nofile or nproc, and whole numbers 0 <= soft <= hard < 2**64")
        process["rlimits"] = [r for r in process["rlimits"] if r["type"] != kind] + [{"type": kind, "soft": soft, "hard": hard}]
    process["rlimits"] = [_capped(r) for r in process["rlimits"]]
    if stop_signal is not None:
        parse_signal(stop_signal)  # refused now, not when stop needs it
        spec["annotations"] = dict(spec.get("annotations") or {}, **{STOP_SIGNAL_ANNOTATION: stop_signal})
    if stop_timeout is not None:
        if isinstance(stop_timeout, bool) or not isinstance(stop_timeout, (int, float)) or not 0 <= stop_timeout < math.inf:
            raise InvalidArgument(f"stop_timeout must be a finite number of seconds from 0, not {stop_timeout!r}")
        spec["annotations"] = dict(spec.get("annotations") or {}, **{STOP_TIMEOUT_ANNOTATION: f"{stop_timeout:g}"})
    if annotations:
        spec["annotations"] = dict(spec.get("annotations") or {}, **dict(annotations))
    spec["root"] = {"path": rootfs, "readonly": bool(read_only)}
    if layer is not None:
        spec["mounts"].insert(0, _overlay(list(lowers) or [rootfs], *layer))
    spec["hostname"] = check_text(hostname, "hostname") if hostname else "ocirt"
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
    spec["mounts"] += [_bind(m) for m in check_sequence(mounts, "mounts")]
    for given in check_sequence(tmpfs, "tmpfs"):
        destination = check_text(given, "tmpfs destination")
        if not destination.startswith("/") or ".." in destination.split("/"):
            raise InvalidArgument(f"tmpfs destination {destination!r} must be an absolute path without '..'")
        spec["mounts"].append({"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]})
    if check_text(network, "network").startswith("ns:"):
        path = network[3:]
        if not os.path.isabs(path) or not os.path.exists(path):
            raise InvalidArgument(f"network namespace {path!r} must be an absolute path that exists (e.g. /run/netns/NAME)")
        spec["linux"]["namespaces"] = [ns if ns["type"] != "network" else {"type": "network", "path": path} for ns in spec["linux"]["namespaces"]]
    elif network == "host":
        spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"]
        # sysfs mounts only in a network namespace of one's own: the host's, read-only, instead
        host_sys = {"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
        spec["mounts"] = [host_sys if m["destination"] == "/sys" else m for m in spec["mounts"]]
    elif network != "none":
        raise InvalidArgument(f"network must be 'none', 'host' or 'ns:PATH', not {network!r}")
    resources = spec["linux"]["resources"]
    if memory is not None:
        memory = _limit(memory, "memory limit")
        resources["memory"] = {"limit": memory, "swap": memory}
    if pids_limit is not None:
        resources["pids"] = {"limit": _limit(pids_limit, "pids limit")}
    if cpus is not None:
        resources["cpu"] = {"quota": _cpu_quota(cpus), "period": CPU_PERIOD}
    return spec


def network_mode(network: Optional[str]) -> Tuple[str, Optional[str]]:
    """(the spec's network: "none", "host" or "ns:PATH"; the bridge network
    to join, or None) of `network` as run and create take it: one of those
    three, or a bridge network's name ("bridge": the default one), whose
    container has a namespace of its own, as with "none"."""
    if network is None or network in ("none", "host") or network.startswith("ns:"):
        return network or "none", None
    return "none", network


def write_bundle(
    bundle: str, args: Sequence[str], *, rootfs: Optional[str], cache_dir: str, image_layers: Sequence[str] = (), **options: Any
) -> None:
    """Make `bundle`, a new private directory, an OCI bundle for `args`.

    Its config.json is `generate(args, **options)` on `rootfs`; when that
    is None, on `image_layers` (an image's unpacked layers, topmost first),
    or else on the busybox tree built once in `cache_dir` (see
    rootfs.busybox_rootfs) and shared: each container writes to an overlay
    layer of its own inside its bundle. Bad options raise before anything is
    made; a failure leaves nothing behind.
    """
    layer = None
    if image_layers:
        if rootfs is not None:
            raise InvalidArgument("give an image or a rootfs, not both")
        fs = os.path.join(bundle, "rootfs")  # empty: the overlay of the layers is mounted over it
        layer = (os.path.join(bundle, "upper"), os.path.join(bundle, "work"))
        options = dict(options, lowers=list(image_layers), accounts=tuple(image_layers))
    elif rootfs is not None:
        fs = os.path.abspath(check_path(rootfs, "rootfs"))  # never "": that would be the current directory
        if not os.path.isdir(fs):
            raise InvalidArgument(f"root filesystem {fs} does not exist or is not a directory")
    else:
        fs = busybox_rootfs(cache_dir)
        layer = (os.path.join(bundle, "upper"), os.path.join(bundle, "work"))
    spec = generate(args, rootfs=fs, layer=layer, **options)
    make_private_dirs(os.path.dirname(bundle))
    os.mkdir(bundle, 0o700)
    try:
        if layer is not None:
            os.mkdir(layer[0], 0o755)  # the container's / : others need to get through
            os.mkdir(layer[1], 0o700)
        if image_layers:
            os.mkdir(fs, 0o755)
        write_private(os.path.join(bundle, "config.json"), json.dumps(spec).encode())  # env may hold secrets
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise


def _limit(value: object, what: str) -> int:
    """`value` if it is a whole number from 1 to INT64_MAX, else InvalidArgument naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INT64_MAX:
        raise InvalidArgument(f"{what} must be a whole number from 1 to {INT64_MAX}, not {value!r}")
    return int(value)


def _cpu_quota(cpus: object) -> int:
    """The CFS quota (us per CPU_PERIOD) for `cpus` CPUs: at least MIN_QUOTA; InvalidArgument
    unless `cpus` is a finite number from MIN_CPUS whose quota fits in an int64."""
    problem = f"cpus must be a finite number of at least {MIN_CPUS}, not {cpus!r}"
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)):
        raise InvalidArgument(problem)
    try:
        number = float(cpus)
    except OverflowError:
        raise InvalidArgument(f"cpus {cpus} is too large") from None
    if not math.isfinite(number) or number < MIN_CPUS:
        raise InvalidArgument(problem)
    quota = max(MIN_QUOTA, round(number * CPU_PERIOD))
    if quota > INT64_MAX:
        raise InvalidArgument(f"cpus {cpus} is too large")
    return quota


def _bind(mount: object) -> Dict[str, Any]:
    """A bind mount from (host path, container path[, "ro" or "rw"]); InvalidArgument if malformed."""
    parts = check_sequence(mount, "a mount")
    strings = [p for p in parts if isinstance(p, str)]
    if len(parts) not in (2, 3) or len(strings) != len(parts):
        raise InvalidArgument(f"a mount is (host path, container path[, 'ro']), not {mount!r}")
    source, destination, mode = (*strings, "rw")[:3]
    if not os.path.isabs(source) or not os.path.exists(source):
        raise InvalidArgument(f"mount source {source!r} must be an absolute path that exists")
    if not destination.startswith("/") or "\0" in destination or ".." in destination.split("/"):
        raise InvalidArgument(f"mount destination {destination!r} must be an absolute path without '..'")
    if mode not in ("ro", "rw"):
        raise InvalidArgument(f"mount mode must be 'ro' or 'rw', not {mode!r}")
    return {"destination": destination, "type": "bind", "source": source, "options": ["rbind", "nosuid", "nodev", mode]}


OVERLAY_OPTIONS_MAX = 4000  # the kernel takes an overlay's mount options in one page (4096 bytes, less runc's own)


def _overlay(lowers: Sequence[str], upper: str, work: str) -> Dict[str, Any]:
    """An overlay at / (mounted in the container's own mount namespace: nothing on the host to leak)."""
    for path in (*lowers, upper, work):
        if not path.startswith("/") or any(c in path for c in ",:\\"):
            raise InvalidArgument(f"an overlay layer needs an absolute path without ',', ':' or '\\', not {path!r}")
    options = [f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}"]
    if len(",".join(options)) > OVERLAY_OPTIONS_MAX:
        # Past one page the kernel answers a misleading ENOENT: say what it is instead.
        raise InvalidArgument(f"{len(lowers)} layers make the overlay's mount options longer than one page: too many layers for this root's path")
    return {"destination": "/", "type": "overlay", "source": "overlay", "options": options}


def _cap_name(cap: str) -> str:
    name = cap.upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def _capped(rlimit: Dict[str, Any]) -> Dict[str, Any]:
    name = rlimit["type"]
    number = getattr(resource, name, None)
    if number is None:
        return rlimit
    _, hard = resource.getrlimit(number)
    if hard == resource.RLIM_INFINITY:
        return rlimit
    return {"type": name, "hard": min(rlimit["hard"], hard), "soft": min(rlimit["soft"], hard)}


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:([kmgtp])i?b?|b)?", re.ASCII | re.IGNORECASE)
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """Bytes from a size as podman's --memory takes it (go-units RAMInBytes).

    A number (whole or decimal), an optional space, then an optional unit
    k, m, g, t or p (binary: 1k = 1024) with optional "i" and "b", or just
    "b", in any case: "512", "512b", "64k", "512mb", "512MiB", "1.5g".
    A fraction of a byte is dropped. InvalidArgument unless the result is
    from 1 to 2**63-1 bytes.
    """
    found = _SIZE.fullmatch(text.strip()) if isinstance(text, str) and text.isascii() and len(text) <= 64 else None
    if found is None:
        raise InvalidArgument(f"invalid size {text!r}: use a number with an optional unit k, m, g, t or p (e.g. 64m, 1.5g, 512MiB)")
    number, unit = found.groups()
    from fractions import Fraction  # exact sizes ("1.5g"); imported only when a size is given

    size = int(Fraction(number) * _SIZE_UNITS[unit.lower()] if unit else Fraction(number))
    if size <= 0:
        raise InvalidArgument(f"size must be at least 1 byte, not {text!r}")
    if size > INT64_MAX:
        raise InvalidArgument(f"size {text!r} is too large: at most {INT64_MAX} bytes")
    return size


__all__: List[str] = ["generate", "parse_size", "DEFAULT_PATH"]
