"""What the command line shows of containers, in podman's shapes.

`ps --format json` and `inspect` give podman 4's keys and types for what
ocirt knows (plus a few of ocirt's own, under names podman does not use);
`ps` templates see podman's ps fields; status words and durations are
podman's (docker/go-units' HumanDuration). Nothing here changes anything.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from . import spec as specs
from .container import Container
from .errors import InvalidArgument
from .logs import format_time
from .specgen import DEFAULT_CAPS
from .state import ContainerStatus

GO_ZERO_UNIX = -62135596800  # Go's zero time as Unix seconds: podman's "never"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
PS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Command": "COMMAND", "CreatedAt": "CREATED", "RunningFor": "CREATED"}
COMMAND_WIDTH = 20  # ps truncates commands to this many characters (the last an ellipsis) unless --no-trunc


def human_duration(seconds: float) -> str:
    """A duration in podman's words: "Less than a second", "1 second",
    "About a minute", "5 minutes", "About an hour", "3 hours", "2 days"..."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def state_word(c: Container) -> str:
    """podman's state: created, running, paused, exited (configured: not yet created, or half-created)."""
    status = c.state.status
    return "exited" if status is ContainerStatus.STOPPED else status.value


def status_text(c: Container, now: float) -> str:
    """podman's STATUS column: "Up 5 seconds", "Exited (0) 2 minutes ago", "Created", "Paused"."""
    st = c.state
    if st.status is ContainerStatus.CONFIGURED:
        return "Half-created" if c.note else "Configured"
    if st.status is ContainerStatus.STOPPED:
        ago = f" {human_duration(now - st.finished_at.timestamp())} ago" if st.finished_at else ""
        return f"Exited ({st.exit_code}){ago}"
    if st.status is ContainerStatus.RUNNING and st.started_at:
        return f"Up {human_duration(now - st.started_at.timestamp())}"
    return str(st.status.value).capitalize()


def image_name(c: Container) -> str:
    """The image the container was made from ("" for a rootfs or a bundle)."""
    return str((c.spec.get("annotations") or {}).get(specs.IMAGE_ANNOTATION, ""))


def ps_record(c: Container, now: float) -> Dict[str, Any]:
    """One container as `podman ps --format json` shows it."""
    st, process = c.state, c.spec.get("process", {})
    exited = st.status is ContainerStatus.STOPPED
    return {
        "AutoRemove": c.auto_remove,
        "Command": list(process.get("args", [])),
        "Created": int(c.created_at.timestamp()),
        "CreatedAt": f"{human_duration(now - c.created_at.timestamp())} ago",
        "Exited": exited,
        "ExitedAt": _unix(st.finished_at) if exited else GO_ZERO_UNIX,
        "ExitCode": st.exit_code if exited and st.exit_code is not None else 0,
        "Id": c.id,
        "Image": image_name(c),
        "Labels": dict(c.labels) or None,
        "Mounts": [m.get("destination", "") for m in _binds(c)],
        "Names": [c.name],
        "Pid": st.pid if st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED) and st.pid else 0,
        "StartedAt": _unix(st.started_at),
        "State": state_word(c),
        "Status": status_text(c, now),
    }


def ps_view(c: Container, now: float, no_trunc: bool = False) -> Dict[str, Any]:
    """One container as `podman ps --format '{{...}}'` templates see it."""
    record = ps_record(c, now)
    command = " ".join(record["Command"])
    if not no_trunc and len(command) > COMMAND_WIDTH:
        command = command[: COMMAND_WIDTH - 1] + "…"
    created = go_time(c.created_at)
    return dict(
        record,
        ID=c.id if no_trunc else c.id[:12],
        Names=c.name,
        Command=command,
        Created=created,
        CreatedAt=created,
        RunningFor=record["CreatedAt"],
        State=record["Status"],
        Labels=dict(c.labels),
        Networks=c.network.get("network", ""),
        Ports=ports_text(c),
    )


def ports_text(c: Container) -> str:
    """Its published ports as podman's ps shows them: 0.0.0.0:8080->80/tcp, ..."""
    return ", ".join(f"{host or '0.0.0.0'}:{outer}->{inner}/{proto}" for inner, proto, host, outer in c.ports())


def network_settings(c: Container) -> Dict[str, Any]:
    """inspect's NetworkSettings, in podman's shape (empty values off a bridge)."""
    ports: Dict[str, List[Dict[str, str]]] = {}
    for inner, proto, host, outer in c.ports():
        ports.setdefault(f"{inner}/{proto}", []).append({"HostIp": host, "HostPort": str(outer)})
    n = c.network
    return {
        "IPAddress": n.get("address", ""), "IPPrefixLen": n.get("prefix", 0), "Gateway": n.get("gateway", ""),
        "MacAddress": n.get("mac", ""), "Ports": ports, "SandboxKey": n.get("netns", ""),
        "Networks": {n["network"]: {"IPAddress": n["address"], "Gateway": n["gateway"], "MacAddress": n["mac"]}} if n else {},
    }  # fmt: skip


def inspect_record(c: Container, sessions: Sequence[Any], live_limits: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """One container as `podman inspect` lays it out, for what ocirt knows;
    ocirt's own extras: Bundle, ExecSessions, Limits (in force), State.Note."""
    st, spec = c.state, c.spec
    process = spec.get("process", {})
    args = list(process.get("args", []))
    running = st.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)
    user = process.get("user", {})
    caps = set((process.get("capabilities") or {}).get("bounding") or [])
    resources = (spec.get("linux") or {}).get("resources") or {}
    cpu = resources.get("cpu") or {}
    quota, period = cpu.get("quota") or 0, cpu.get("period") or 0
    return {
        "Id": c.id,
        "Created": format_time(c.created_at),
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": {
            "Status": state_word(c),
            "Running": st.status is ContainerStatus.RUNNING,
            "Paused": st.status is ContainerStatus.PAUSED,
            "OOMKilled": st.oom_killed,
            "Pid": st.pid if running and st.pid else 0,
            "ConmonPid": c.conmon_pid or 0,
            "ExitCode": st.exit_code if st.status is ContainerStatus.STOPPED and st.exit_code is not None else 0,
            "StartedAt": _rfc3339(st.started_at),
            "FinishedAt": _rfc3339(st.finished_at),
            "CgroupPath": _cgroup_path(c),
            "Note": c.note,
        },
        "Image": str((c.spec.get("annotations") or {}).get(specs.IMAGE_ID_ANNOTATION, "")).removeprefix("sha256:"),
        "ImageName": image_name(c),
        "Name": c.name,
        "Bundle": c.bundle,
        "LogPath": c.log_path,
        "ExecIDs": [s.id for s in sessions],
        "ExecSessions": [
            {
                "ID": s.id, "Command": s.command, "Pid": s.pid, "Running": s.running, "ExitCode": s.exit_code,
                "StartedAt": _rfc3339(s.started_at), "FinishedAt": _rfc3339(s.finished_at),
            }
            for s in sessions
        ],  # fmt: skip
        "Mounts": [
            {
                "Type": "bind", "Source": m.get("source", ""), "Destination": m.get("destination", ""),
                "Options": list(m.get("options", [])), "RW": "ro" not in m.get("options", []),
            }
            for m in _binds(c)
        ],  # fmt: skip
        "Config": {
            "Hostname": spec.get("hostname", ""),
            "User": _user_text(user),
            "Env": list(process.get("env", [])),
            "Cmd": args,
            "WorkingDir": process.get("cwd", "/"),
            "Tty": bool(process.get("terminal")),
            "OpenStdin": c.stdin,
            "Labels": dict(c.labels) or None,
            "Annotations": dict(spec.get("annotations") or {}),
            "StopSignal": _stop_signal(spec),
            "StopTimeout": int(specs.stop_timeout(spec)),
        },
        "HostConfig": {
            "Memory": (resources.get("memory") or {}).get("limit") or 0,
            "PidsLimit": (resources.get("pids") or {}).get("limit") or 0,
            "NanoCpus": round(quota * 1e9 / period) if quota > 0 and period > 0 else 0,
            "CapAdd": sorted(caps - set(DEFAULT_CAPS)),
            "CapDrop": sorted(set(DEFAULT_CAPS) - caps),
            "ReadonlyRootfs": bool((spec.get("root") or {}).get("readonly")),
            "AutoRemove": c.auto_remove,
        },
        "NetworkSettings": network_settings(c),
        "Limits": live_limits,
    }


FILTER_KEYS = ("id", "name", "status", "label", "exited")


def parse_filters(filters: Sequence[str]) -> Callable[[Container], bool]:
    """`ps --filter` (and rm/stop/kill --filter): key=value, the keys of
    FILTER_KEYS. Filters on one key match any of their values; different
    keys must all match (podman's rule). InvalidArgument naming a bad one."""
    by_key: Dict[str, List[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep or key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter {f!r}: use key=value with a key of {', '.join(FILTER_KEYS)}")
        if key == "status" and value not in ("created", "running", "paused", "exited", "configured"):
            raise InvalidArgument(f"invalid filter {f!r}: a status is created, running, paused, exited or configured")
        if key == "exited" and not re.fullmatch(r"-?\d+", value):
            raise InvalidArgument(f"invalid filter {f!r}: exited takes an exit code")
        by_key.setdefault(key, []).append(value)

    def matches(c: Container) -> bool:
        return all(any(_match(c, key, v) for v in values) for key, values in by_key.items())

    return matches


def _match(c: Container, key: str, value: str) -> bool:
    if key == "id":
        return c.id.startswith(value)
    if key == "name":
        try:
            return re.search(value, c.name) is not None
        except re.error:
            return value in c.name
    if key == "status":
        return state_word(c) == value
    if key == "label":
        name, sep, wanted = value.partition("=")
        return name in c.labels and (not sep or c.labels[name] == wanted)
    return c.state.status is ContainerStatus.STOPPED and c.state.exit_code == int(value)  # exited


def go_time(when: datetime) -> str:
    """Go's time.String() in UTC: "2026-11-29 09:52:00.811844 +0000 UTC"."""
    utc = when.astimezone(timezone.utc)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


def _unix(when: Optional[datetime]) -> int:
    return int(when.timestamp()) if when is not None else GO_ZERO_UNIX


def _rfc3339(when: Optional[datetime]) -> str:
    return format_time(when) if when is not None else GO_ZERO_TIME


def _binds(c: Container) -> List[Mapping[str, Any]]:
    return [m for m in c.spec.get("mounts", []) if m.get("type") == "bind" or "bind" in m.get("options", []) or "rbind" in m.get("options", [])]


def _user_text(user: Mapping[str, Any]) -> str:
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    return "" if uid == 0 and gid == 0 else f"{uid}:{gid}"


def _stop_signal(spec: specs.Spec) -> int:
    try:
        return specs.stop_signal(spec)
    except InvalidArgument:
        return 15


def _cgroup_path(c: Container) -> str:
    """The container's cgroup as the runtime was given it."""
    return str(getattr(c._cgroup, "runtime_path", None) or "")
