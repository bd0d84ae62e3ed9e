"""Benchmarks fail, like tests, if they leave a container, conmon, cgroup or fd behind."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def bundle(rootfs, base_spec, tmp_path_factory) -> str:
    """A bundle running busybox `true` on the shared read-only rootfs."""
    d = tmp_path_factory.mktemp("bench-bundle")
    spec = dict(base_spec, root={"path": rootfs, "readonly": True})
    spec["process"] = dict(spec["process"], args=["true"])
    (d / "config.json").write_text(json.dumps(spec))
    return str(d)
