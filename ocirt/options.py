"""Runtime.create's options, each checked as they are made: the blocking,
asyncio and churn APIs and the command line share one set of checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from .cgroups.limits import INT64_MAX, Limits
from .errors import InvalidArgument
from .lifecycle import DEFAULT_CREATE_TIMEOUT
from .validate import check_argv, check_labels, check_name, check_path, check_sequence, check_timeout


@dataclass(frozen=True)
class CreateOptions:
    """Runtime.create's options (see there); the asyncio API takes the same.
    Each is checked when the object is made: InvalidArgument names a bad one."""

    stdin: bool = False
    terminal: bool = False
    timeout: Optional[float] = DEFAULT_CREATE_TIMEOUT
    name: Optional[str] = None
    owned_bundle: bool = False
    auto_remove: bool = False
    exit_command: Tuple[str, ...] = ()
    listen_fds: Tuple[int, ...] = ()
    limits: Optional[Limits] = None
    spec: Optional[Mapping[str, object]] = None
    rootfs: Optional[str] = None
    labels: Optional[Mapping[str, str]] = None
    kill_after: Optional[float] = None
    log_size_max: Optional[int] = None
    network: Optional[str] = None  # a bridge network to join ("bridge": the default one); see ocirt.networks
    publish: Tuple[str, ...] = ()  # ports published on the host, as -p takes them (with a network)

    def __post_init__(self) -> None:
        check_timeout(self.timeout)
        if self.name is not None:
            check_name(self.name)
        check_argv(self.exit_command, "exit_command", empty_ok=True)
        check_sequence(self.listen_fds, "listen_fds")  # each an open socket: checked at create
        if self.limits is not None and not isinstance(self.limits, Limits):
            raise InvalidArgument(f"limits must be an ocirt.Limits, not {type(self.limits).__name__}")
        if self.rootfs is not None:
            check_path(self.rootfs, "rootfs")
        check_labels(self.labels)
        whole_seconds(self.kill_after)
        if self.log_size_max is not None:
            check_log_size_max(self.log_size_max)
        if self.network is not None and not isinstance(self.network, str):
            raise InvalidArgument(f"network must be a network's name (e.g. 'bridge'), not {self.network!r}")
        for port in check_sequence(self.publish, "publish"):
            if not isinstance(port, str):
                raise InvalidArgument(f"a published port is a string as -p takes it ('8080:80'), not {port!r}")
        if self.publish and self.network is None:
            raise InvalidArgument("publishing a port needs a bridge network: give network='bridge' (or another network's name)")


def whole_seconds(value: Optional[float]) -> int:
    """kill_after as conmon takes it: whole seconds from 1, 0 for none; InvalidArgument otherwise."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < 1 << 31 or value != int(value):
        raise InvalidArgument(f"kill_after must be a whole number of seconds from 1, or None, not {value!r}")
    return int(value)


def check_log_size_max(value: object) -> None:
    """InvalidArgument unless `value` is -1 or a size conmon takes (an int64)."""
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= INT64_MAX:
        raise InvalidArgument(f"log_size_max must be -1 (no limit) or a size in bytes up to {INT64_MAX}, not {value!r}")
