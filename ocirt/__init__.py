"""ocirt: run OCI containers from Python by driving conmon and runc directly.

    rt = ocirt.Runtime("/run/ocirt")
    c = rt.create("web", "/path/to/bundle")
    c.start()
    code = c.wait()
    c.delete()
"""

from . import native  # noqa: F401  (fails, saying how to build, in an unbuilt tree)
from .cgroups.limits import Limits, Stats
from .container import Container
from .errors import (
    BinaryNotFound,
    CgroupError,
    ConmonError,
    ContainerError,
    ContainerExists,
    ContainerNotFound,
    ExecSessionNotFound,
    InvalidArgument,
    InvalidState,
    OcirtError,
    RuntimeCommandError,
    StoreError,
    Timeout,
)
from .exec import ExecInfo, ExecSession
from .logs import LogRecord
from .run import RunResult
from .runtime import Runtime
from .state import ContainerState, ContainerStatus, Timings

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
    "Timeout",
    "Timings",
    "__version__",
]
