"""Benchmarks fail, like tests, if they leave a container, conmon, cgroup or fd behind."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.leaks import Snapshot


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    before = Snapshot.take()
    yield
    leaks = Snapshot.take().leaks_since(before)
    if leaks:
        pytest.fail("left behind:\n  " + "\n  ".join(leaks), pytrace=False)
