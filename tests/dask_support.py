"""A dask.distributed LocalCluster that leaves this process as it found it."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator


@contextlib.contextmanager
def local_cluster(**options: Any) -> Iterator[Any]:
    """distributed.LocalCluster(**options), with this process's environment
    put back when it closes: the cluster sets its workers' variables
    (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, PYTHONHASHSEED...) in ours, and
    every process a later test starts would inherit them."""
    import distributed

    saved = dict(os.environ)
    try:
        with distributed.LocalCluster(**options) as cluster:
            yield cluster
    finally:
        os.environ.clear()
        os.environ.update(saved)
