"""ocirt: run OCI containers from Python by driving conmon and runc directly.

    rt = ocirt.Runtime("/run/ocirt")
    c = rt.create("web", "/path/to/bundle")
    c.start()
    code = c.wait()
    c.delete()
"""

try:
    from . import _native  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on how ocirt was installed
    raise ImportError(
        "ocirt's native extension ocirt._native is not built. Build it with "
        "'pip install -e .' (or 'python setup.py build_ext --inplace') in the source tree."
    ) from e

from .container import Container, ContainerState, ContainerStatus, ExecSession
from .errors import (
    BinaryNotFound,
    CgroupError,
    ConmonError,
    ContainerExists,
    ContainerNotFound,
    InvalidArgument,
    InvalidState,
    OcirtError,
    RuntimeCommandError,
    Timeout,
)
from .logs import LogRecord
from .runtime import Runtime

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - a tree without setuptools-scm's file
    __version__ = "0.0.0"

__all__ = [
    "BinaryNotFound",
    "CgroupError",
    "ConmonError",
    "Container",
    "ContainerExists",
    "ContainerNotFound",
    "ContainerState",
    "ContainerStatus",
    "ExecSession",
    "InvalidArgument",
    "InvalidState",
    "LogRecord",
    "OcirtError",
    "Runtime",
    "RuntimeCommandError",
    "Timeout",
    "__version__",
]
