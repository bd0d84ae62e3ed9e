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
import sys
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
    "netns_make",
    "netns_remove",
    "watch_open",
    "watch_seen",
    "watch_close",
)
BACKENDS = {"cython": "ocirt._native", "cffi": "ocirt._native_cffi"}


class BackendError(ImportError):
    """OCIRT_BACKEND names no backend."""


def load(name: str) -> ModuleType:
    """The backend module called `name`; ImportError saying how to build it."""
    if name not in BACKENDS:
        raise BackendError(f"unknown OCIRT_BACKEND {name!r}; valid are {', '.join(BACKENDS)}")
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


def _one_line_if_uncaught(error: BackendError) -> None:
    """Should `error` go uncaught, print it as one line, not a traceback:
    it is the caller's setting, not a fault in ocirt. The command line
    (`ocirt`, `python -m ocirt`) then exits 125, its code for its own failures."""
    previous = sys.excepthook

    def hook(kind: type, value: BaseException, tb: object) -> None:
        if value is not error:
            previous(kind, value, tb)  # type: ignore[arg-type]
            return
        print(f"Error: {error}", file=sys.stderr, flush=True)
        if sys.argv[:1] == ["-m"] or os.path.basename(sys.argv[0] if sys.argv else "") == "ocirt":
            os._exit(125)

    sys.excepthook = hook


BACKEND = os.environ.get("OCIRT_BACKEND", "cython")
try:
    _backend = load(BACKEND)
except BackendError as e:
    _one_line_if_uncaught(e)
    raise
globals().update({n: getattr(_backend, n) for n in PUBLIC})
