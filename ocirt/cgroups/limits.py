"""A container's limits and statistics, read and written in its cgroup's
files directly (v1 and v2 names and units), never through a subprocess.

`Limits` is what a caller asks for (at create, or `Container.update` on a
running container); `Stats` is what the kernel counts. Both work from a
cgroup's `controllers` map ({v1 controller or "v2": directory}): a v1
controller's hierarchy wins over the v2 one, as on a hybrid host the v2
mount carries no controller.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import CgroupError, InvalidArgument
from ..layout import read_small

INT64_MAX = (1 << 63) - 1
UNLIMITED = -1  # a limit of -1 lifts it
V1_NO_LIMIT = 1 << 62  # v1 reports "no limit" as a page-rounded INT64_MAX: anything above this
CPU_PERIOD = 100_000  # us: the kernel's default CFS period


@dataclass(frozen=True)
class Limits:
    """Resource limits; None leaves one as it is (or as the spec has it).

    memory, memory_reservation, memory_swap (memory plus swap): bytes, or
    -1 for none. cpus: CPUs' worth of time per period (sets cpu_quota);
    cpu_quota, cpu_period: microseconds (quota -1: none); cpu_shares: the
    v1 weight, 2-262144 (converted to cpu.weight on v2); cpuset_cpus,
    cpuset_mems: lists like "0-1,3"; pids_limit: processes, or -1;
    blkio_weight: 10-1000.
    """

    memory: Optional[int] = None
    memory_reservation: Optional[int] = None
    memory_swap: Optional[int] = None
    cpus: Optional[float] = None
    cpu_quota: Optional[int] = None
    cpu_period: Optional[int] = None
    cpu_shares: Optional[int] = None
    cpuset_cpus: Optional[str] = None
    cpuset_mems: Optional[str] = None
    pids_limit: Optional[int] = None
    blkio_weight: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("memory", "memory_reservation", "memory_swap", "pids_limit", "cpu_quota"):
            check_limit(name, getattr(self, name))
        check_range("cpu_period", self.cpu_period, 1000, 1_000_000)
        check_range("cpu_shares", self.cpu_shares, 2, 262_144)
        check_range("blkio_weight", self.blkio_weight, 10, 1000)
        if self.cpus is not None:
            check_cpus("cpus", self.cpus)
            if self.cpu_quota is not None:
                raise InvalidArgument("cpus and cpu_quota both set the CPU quota: give one")
        for name in ("cpuset_cpus", "cpuset_mems"):
            check_cpuset(name, getattr(self, name))
        memory, swap = self.memory, self.memory_swap
        if swap is not None and swap != UNLIMITED and (memory is None or memory == UNLIMITED or swap < memory):
            raise InvalidArgument(f"memory_swap ({swap}) is memory plus swap: it needs a memory limit no larger than it")

    def is_empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def quota(self) -> Optional[int]:
        """The CFS quota in microseconds per period (-1: none), from cpus or cpu_quota."""
        if self.cpus is not None:
            return max(1000, round(self.cpus * (self.cpu_period or CPU_PERIOD)))
        return self.cpu_quota

    def merged_into(self, resources: Mapping[str, Any]) -> Dict[str, Any]:
        """A copy of an OCI `linux.resources` with these limits laid over it."""
        out = dict(resources)
        memory = dict(out.get("memory") or {})
        for key, value in (("limit", self.memory), ("reservation", self.memory_reservation), ("swap", self.memory_swap)):
            if value is not None:
                memory[key] = value
        cpu = dict(out.get("cpu") or {})
        cpu_values: Dict[str, Any] = {
            "quota": self.quota(), "period": self.cpu_period or (CPU_PERIOD if self.cpus is not None else None),
            "shares": self.cpu_shares, "cpus": self.cpuset_cpus, "mems": self.cpuset_mems,
        }  # fmt: skip
        cpu.update({k: v for k, v in cpu_values.items() if v is not None})
        for key, section in (("memory", memory), ("cpu", cpu)):
            if section:
                out[key] = section
        if self.pids_limit is not None:
            out["pids"] = {"limit": self.pids_limit}
        if self.blkio_weight is not None:
            out["blockIO"] = dict(out.get("blockIO") or {}, weight=self.blkio_weight)
        return out


LIMIT_FIELDS = tuple(f.name for f in fields(Limits))


def check_limit(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not (value == UNLIMITED or 0 < value <= INT64_MAX):
        raise InvalidArgument(f"{name} must be a whole number from 1 to {INT64_MAX}, or -1 for no limit, not {value!r}")


def check_range(name: str, value: object, low: int, high: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        raise InvalidArgument(f"{name} must be a whole number from {low} to {high}, not {value!r}")


def check_cpus(name: str, value: object) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0.01 <= value <= 1_000_000
    if not ok:
        raise InvalidArgument(f"{name} must be a number of CPUs from 0.01, not {value!r}")


def check_cpuset(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or not all(_is_range(part) for part in value.split(",")):
        raise InvalidArgument(f"{name} must list CPUs or memory nodes like '0-2,4', not {value!r}")


def _is_range(part: str) -> bool:
    ends = part.split("-")
    return 1 <= len(ends) <= 2 and all(e.isdigit() and e.isascii() for e in ends) and int(ends[0]) <= int(ends[-1])


# -- writing ---------------------------------------------------------------


def apply(controllers: Mapping[str, str], limits: Limits) -> None:
    """Write `limits` into the cgroup files they live in, in an order the
    kernel accepts. If the kernel refuses one (a memory limit below what the
    container holds and cannot give back, say), every file written so far
    gets its old value back and CgroupError names the file and the value.
    """
    writes = _writes(controllers, limits)
    done: List[Tuple[str, bytes]] = []
    try:
        for path, value in writes:
            old = read_small(path).strip()
            _write(path, value)
            done.append((path, old))
    except OSError as e:
        for path, old in reversed(done):
            try:
                _write(path, _restorable(path, old))
            except OSError:
                pass
        reason = "the kernel cannot reclaim enough memory to go below it" if e.errno == errno.EBUSY else e.strerror
        failed = writes[len(done)]
        raise CgroupError(f"cannot set {failed[0]} to {failed[1]}: {reason}; the limits stay as they were") from e


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _restorable(path: str, old: bytes) -> str:
    if path.endswith("io.weight"):  # read as "default 100" and per-device lines
        return old.split(b"\n")[0].decode()
    return old.decode()


def _writes(controllers: Mapping[str, str], limits: Limits) -> List[Tuple[str, str]]:
    """(file, value) for each limit set, in order; CgroupError if no hierarchy has its controller."""
    out: List[Tuple[str, str]] = []

    def where(v1: str, v2_file: str, what: str) -> Tuple[Optional[str], Optional[str]]:
        if v1 in controllers:
            return controllers[v1], None
        v2 = controllers.get("v2")
        if v2 is not None and os.path.exists(os.path.join(v2, v2_file)):
            return None, v2
        raise CgroupError(f"cannot set {what}: the container's cgroup has no {v1} controller")

    if limits.memory is not None or limits.memory_swap is not None or limits.memory_reservation is not None:
        v1, v2 = where("memory", "memory.max", "memory limits")
        if v1 is not None:
            memory = [(os.path.join(v1, "memory.limit_in_bytes"), limits.memory)]
            swap = [(os.path.join(v1, "memory.memsw.limit_in_bytes"), limits.memory_swap)]
            # memsw must stay >= limit: raise memsw first when growing, the limit first when shrinking
            current = _read_int(os.path.join(v1, "memory.limit_in_bytes"))
            growing = limits.memory is not None and (limits.memory == UNLIMITED or (current is not None and limits.memory > current))
            memsw = _read_int(os.path.join(v1, "memory.memsw.limit_in_bytes"))
            if growing and limits.memory_swap is None and memsw is not None and memsw < V1_NO_LIMIT:
                wanted = INT64_MAX if limits.memory == UNLIMITED else limits.memory
                if wanted is not None and wanted > memsw:
                    raise CgroupError(f"memory {limits.memory} is above the memory plus swap limit {memsw}: give memory_swap too")
            pairs = swap + memory if growing else memory + swap
            out += [(path, str(value)) for path, value in pairs if value is not None]
            if limits.memory_reservation is not None:
                out.append((os.path.join(v1, "memory.soft_limit_in_bytes"), str(limits.memory_reservation)))
        elif v2 is not None:
            if limits.memory is not None:
                out.append((os.path.join(v2, "memory.max"), _v2_max(limits.memory)))
            if limits.memory_swap is not None:
                swap_only = UNLIMITED if limits.memory_swap == UNLIMITED else limits.memory_swap - (limits.memory or 0)
                out.append((os.path.join(v2, "memory.swap.max"), _v2_max(swap_only)))
            if limits.memory_reservation is not None:
                out.append((os.path.join(v2, "memory.low"), _v2_max(limits.memory_reservation)))
    quota = limits.quota()
    if quota is not None or limits.cpu_period is not None or limits.cpu_shares is not None:
        v1, v2 = where("cpu", "cpu.max", "CPU limits")
        if v1 is not None:
            if limits.cpu_period is not None:
                out.append((os.path.join(v1, "cpu.cfs_period_us"), str(limits.cpu_period)))
            if quota is not None:
                out.append((os.path.join(v1, "cpu.cfs_quota_us"), str(quota)))
            if limits.cpu_shares is not None:
                out.append((os.path.join(v1, "cpu.shares"), str(limits.cpu_shares)))
        elif v2 is not None:
            if quota is not None or limits.cpu_period is not None:
                q = "max" if quota is None or quota == UNLIMITED else str(quota)
                out.append((os.path.join(v2, "cpu.max"), f"{q} {limits.cpu_period or CPU_PERIOD}"))
            if limits.cpu_shares is not None:
                out.append((os.path.join(v2, "cpu.weight"), str(shares_to_weight(limits.cpu_shares))))
    for value, knob in ((limits.cpuset_cpus, "cpuset.cpus"), (limits.cpuset_mems, "cpuset.mems")):
        if value is not None:
            v1, v2 = where("cpuset", knob, knob)
            out.append((os.path.join(v1 or v2 or "", knob), value))
    if limits.pids_limit is not None:
        v1, v2 = where("pids", "pids.max", "the pids limit")
        out.append((os.path.join(v1 or v2 or "", "pids.max"), _v2_max(limits.pids_limit)))
    if limits.blkio_weight is not None:
        v1, v2 = where("blkio", "io.weight", "the block I/O weight")
        if v1 is not None:
            weight = next((k for k in ("blkio.weight", "blkio.bfq.weight") if os.path.exists(os.path.join(v1, k))), None)
            if weight is None:
                raise CgroupError(f"cannot set the block I/O weight: {v1} has no blkio.weight (no proportional I/O scheduler)")
            out.append((os.path.join(v1, weight), str(limits.blkio_weight)))
        elif v2 is not None:
            out.append((os.path.join(v2, "io.weight"), f"default {limits.blkio_weight}"))
    return out


def _v2_max(value: int) -> str:
    return "max" if value == UNLIMITED else str(value)


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2-262144) as cgroup v2's cpu.weight (1-10000), as runc converts it."""
    return 1 + ((shares - 2) * 9999) // 262142


# -- reading ---------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """What the kernel counts for a container's cgroup; None where no
    hierarchy has the controller (limits: also where there is none)."""

    memory_usage: Optional[int]  # bytes
    memory_peak: Optional[int]
    memory_limit: Optional[int]
    cpu_total_ns: Optional[int]
    cpu_user_ns: Optional[int]
    cpu_system_ns: Optional[int]
    pids_current: Optional[int]
    pids_limit: Optional[int]
    oom_kills: Optional[int]
    frozen: Optional[bool]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


STAT_FIELDS = tuple(f.name for f in fields(Stats))


def reset_peak(controllers: Mapping[str, str]) -> None:
    """Start the cgroup's memory peak over from its usage now (v1; v2 where
    the kernel lets memory.peak be written): a pooled container's stats are
    then its job's, not its create's."""
    memory, v2 = controllers.get("memory"), controllers.get("v2")
    path = os.path.join(memory, "memory.max_usage_in_bytes") if memory else os.path.join(v2, "memory.peak") if v2 else None
    if path is None:
        return
    try:
        with open(path, "w") as f:
            f.write("0")
    except OSError:
        pass  # a kernel whose memory.peak is read-only: the peak stays the container's


def read_stats(controllers: Mapping[str, str]) -> Stats:
    """The cgroup's statistics, read from its files (a few reads of small files)."""
    v2 = controllers.get("v2")
    memory, cpuacct, pids, freezer = (controllers.get(c) for c in ("memory", "cpuacct", "pids", "freezer"))
    if memory is not None:
        usage = _read_int(os.path.join(memory, "memory.usage_in_bytes"))
        peak = _read_int(os.path.join(memory, "memory.max_usage_in_bytes"))
        limit = _limit_or_none(_read_int(os.path.join(memory, "memory.limit_in_bytes")))
        ooms = _read_keyed(os.path.join(memory, "memory.oom_control")).get("oom_kill")
    elif v2 is not None:
        usage = _read_int(os.path.join(v2, "memory.current"))
        peak = _read_int(os.path.join(v2, "memory.peak"))
        limit = _limit_or_none(_read_int(os.path.join(v2, "memory.max")))
        ooms = _read_keyed(os.path.join(v2, "memory.events")).get("oom_kill")
    else:
        usage = peak = limit = ooms = None
    if cpuacct is not None:
        total = _read_int(os.path.join(cpuacct, "cpuacct.usage"))
        user = _read_int(os.path.join(cpuacct, "cpuacct.usage_user"))
        system = _read_int(os.path.join(cpuacct, "cpuacct.usage_sys"))
    elif v2 is not None:
        stat = _read_keyed(os.path.join(v2, "cpu.stat"))
        total, user, system = (stat[k] * 1000 if k in stat else None for k in ("usage_usec", "user_usec", "system_usec"))
    else:
        total = user = system = None
    where = pids if pids is not None else v2
    current = _read_int(os.path.join(where, "pids.current")) if where else None
    pids_limit = _limit_or_none(_read_int(os.path.join(where, "pids.max"))) if where else None
    if freezer is not None:
        state = _read(os.path.join(freezer, "freezer.state"))
        frozen = None if state is None else state.strip() == b"FROZEN"
    elif v2 is not None:
        events = _read_keyed(os.path.join(v2, "cgroup.events"))
        frozen = bool(events["frozen"]) if "frozen" in events else None
    else:
        frozen = None
    return Stats(usage, peak, limit, total, user, system, current, pids_limit, ooms, frozen)


def oom_kills(controllers: Mapping[str, str]) -> int:
    """How many processes of the cgroup the OOM killer has killed (0 if it cannot tell)."""
    memory, v2 = controllers.get("memory"), controllers.get("v2")
    if memory is not None:
        return _read_keyed(os.path.join(memory, "memory.oom_control")).get("oom_kill", 0)
    if v2 is not None:
        return _read_keyed(os.path.join(v2, "memory.events")).get("oom_kill", 0)
    return 0


def read_limits(controllers: Mapping[str, str]) -> Dict[str, Any]:
    """The limits in force, as Limits' field names (-1: none; None: unknown)."""
    v2 = controllers.get("v2")
    out: Dict[str, Any] = {}
    memory, cpu, cpuset, pids = (controllers.get(c) for c in ("memory", "cpu", "cpuset", "pids"))
    if memory is not None:
        out["memory"] = _no_limit(_read_int(os.path.join(memory, "memory.limit_in_bytes")))
        out["memory_swap"] = _no_limit(_read_int(os.path.join(memory, "memory.memsw.limit_in_bytes")))
        out["memory_reservation"] = _no_limit(_read_int(os.path.join(memory, "memory.soft_limit_in_bytes")))
    elif v2 is not None:
        out["memory"] = _no_limit(_read_int(os.path.join(v2, "memory.max")))
        swap = _no_limit(_read_int(os.path.join(v2, "memory.swap.max")))
        out["memory_swap"] = swap + out["memory"] if swap not in (None, UNLIMITED) and out["memory"] not in (None, UNLIMITED) else swap
        out["memory_reservation"] = _no_limit(_read_int(os.path.join(v2, "memory.low")))
    if cpu is not None:
        out["cpu_quota"] = _read_int(os.path.join(cpu, "cpu.cfs_quota_us"))
        out["cpu_period"] = _read_int(os.path.join(cpu, "cpu.cfs_period_us"))
        out["cpu_shares"] = _read_int(os.path.join(cpu, "cpu.shares"))
    elif v2 is not None:
        raw = _read(os.path.join(v2, "cpu.max"))
        if raw:
            quota, period = raw.split()
            out["cpu_quota"] = UNLIMITED if quota == b"max" else int(quota)
            out["cpu_period"] = int(period)
    cpuset_dir = cpuset or v2
    if cpuset_dir is not None:
        for name in ("cpus", "mems"):
            raw = _read(os.path.join(cpuset_dir, f"cpuset.{name}"))
            out[f"cpuset_{name}"] = raw.strip().decode() if raw is not None else None
    pids_dir = pids or v2
    if pids_dir is not None:
        out["pids_limit"] = _no_limit(_read_int(os.path.join(pids_dir, "pids.max")))
    return out


def _read(path: str) -> Optional[bytes]:
    try:
        return read_small(path, 1 << 16)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno in (errno.ENODEV, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise CgroupError(f"cannot read {path}: {e.strerror}") from e


def _read_int(path: str) -> Optional[int]:
    raw = _read(path)
    if raw is None:
        return None
    raw = raw.strip()
    if raw == b"max":
        return INT64_MAX
    try:
        return int(raw)
    except ValueError:
        return None


def _read_keyed(path: str) -> Dict[str, int]:
    """A file of "key value" lines (cpu.stat, memory.events, memory.oom_control)."""
    out: Dict[str, int] = {}
    for line in (_read(path) or b"").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0].decode()] = int(parts[1])
    return out


def _limit_or_none(value: Optional[int]) -> Optional[int]:
    return None if value is None or value >= V1_NO_LIMIT else value


def _no_limit(value: Optional[int]) -> Optional[int]:
    return UNLIMITED if value is not None and value >= V1_NO_LIMIT else value
