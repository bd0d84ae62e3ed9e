"""ocirt's native helpers, from one of two backends over the same csrc/ code.

- "cython" (default): ocirt/_native.pyx
- "cffi": ocirt/_native_cffi.py, e.g. for interpreters where cffi is the
  better-supported binding

Choose with OCIRT_BACKEND=cython|cffi (read at import). Both must provide
every name in PUBLIC, with the same contracts; the test suite runs on both.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

PUBLIC = (
    "SPAWN_MAX_FDS",
    "PIDFD_DEFAULT",
    "INOTIFY_DEFAULT",
    "spawn",
    "socketpair",
    "pidfd_open",
    "pidfd_send_signal",
    "set_subreaper",
    "wait_pids",
    "wait_file",
    "wait_change",
    "inotify_pool_size",
    "open_in_root",
    "watch_open",
    "watch_seen",
    "watch_close",
)
BACKENDS = {"cython": "ocirt._native", "cffi": "ocirt._native_cffi"}


def load(name: str) -> ModuleType:
    """The backend module called `name`; ImportError saying how to build it."""
    if name not in BACKENDS:
        raise ImportError(f"unknown OCIRT_BACKEND {name!r}; valid are {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as e:
        if e.name == "_cffi_backend":
            raise ImportError(f"ocirt's cffi backend needs the module {e.name!r} of the cffi package: pip install 'ocirt[cffi]'") from e
        raise ImportError(
            f"ocirt's {name} backend ({BACKENDS[name]}) is not built. Build it with "
            "'pip install -e .' (or 'python setup.py build_ext --inplace') in the source tree."
        ) from e
    missing = [n for n in PUBLIC if not hasattr(module, n)]
    if missing:
        raise ImportError(f"ocirt's {name} backend lacks {', '.join(missing)}")
    return module


BACKEND = os.environ.get("OCIRT_BACKEND", "cython")
_backend = load(BACKEND)
globals().update({n: getattr(_backend, n) for n in PUBLIC})
