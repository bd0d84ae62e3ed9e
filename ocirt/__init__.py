"""ocirt: run OCI containers from Python by driving conmon and runc directly.

    rt = ocirt.Runtime("/run/ocirt")
    c = rt.create("web", "/path/to/bundle")
    c.start()
    code = c.wait()
    c.delete()
"""

from typing import TYPE_CHECKING, Any, List

from . import native  # noqa: F401  (fails, saying how to build, in an unbuilt tree)
from .errors import (
    BinaryNotFound,
    CgroupError,
    ConmonError,
    ContainerError,
    ContainerExists,
    ContainerNotFound,
    ExecSessionNotFound,
    ImageError,
    InvalidArgument,
    InvalidState,
    OcirtError,
    RuntimeCommandError,
    StoreError,
    StoreFull,
    Timeout,
)

if TYPE_CHECKING:
    from .cgroups.limits import Limits, Stats
    from .container import Container
    from .exec import ExecInfo, ExecSession
    from .logs import LogRecord
    from .run import RunResult
    from .runtime import Runtime
    from .state import ContainerState, ContainerStatus, Timings

# The rest of the API is imported when first used: a program (the command
# line among them) that needs only part of it does not pay for the rest.
_LAZY = {
    "Limits": "cgroups.limits",
    "Stats": "cgroups.limits",
    "Container": "container",
    "ExecInfo": "exec",
    "ExecSession": "exec",
    "LogRecord": "logs",
    "RunResult": "run",
    "Runtime": "runtime",
    "ContainerState": "state",
    "ContainerStatus": "state",
    "Timings": "state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ocirt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))


try:
    from ._version import __version__
except ImportError:  # pragma: no cover - a tree without setuptools-scm's file
    __version__ = "0.0.0"

__all__ = [
    "BinaryNotFound",
    "CgroupError",
    "ConmonError",
    "Container",
    "ContainerError",
    "ContainerExists",
    "ContainerNotFound",
    "ContainerState",
    "ContainerStatus",
    "ExecInfo",
    "ExecSession",
    "ExecSessionNotFound",
    "ImageError",
    "InvalidArgument",
    "InvalidState",
    "Limits",
    "LogRecord",
    "OcirtError",
    "RunResult",
    "Runtime",
    "RuntimeCommandError",
    "Stats",
    "StoreError",
    "StoreFull",
    "Timeout",
    "Timings",
    "__version__",
]
