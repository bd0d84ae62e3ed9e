"""Images' speed targets, each against a floor measured in the same run.

- A container run from a cached image (its layers stacked with overlayfs)
  at most IMAGE_RUN_RATIO times the same run on the plain busybox tree: the
  layers must cost nothing a container notices.
- A re-pull of a cached image through skopeo (policy "always": the copy
  finds every blob there) at most REPULL_RATIO times `skopeo inspect` of
  the same image, the least skopeo does with it; the absolute figure is
  printed against the issue's 100 ms.
- A cold pull of a 100 MB, 5,000-file image from a registry on 127.0.0.1
  (ocirt's `pull` into an empty root: skopeo's copy, then each layer
  unpacked and checked) at most COLD_PULL times `podman pull` of the same
  image into an empty store of its own, both as commands, alternately.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Iterator, List

import pytest

import ocirt
from tests.image_support import busybox_files, tar_layer, write_layout
from tests.podman_support import PODMAN, Podman
from tests.registry import running

from .support import SHORT, Target, abba, report, within

ROUNDS = 16 if SHORT else 40
IMAGE_RUN = Target(goal=1.1, bound=1.1)
REPULL = Target(goal=2.0, bound=2.0)  # measured 1.5: the copy reads the manifest and config, and writes the tag
REPULL_GOAL_MS = 100
COLD_PULL = Target(goal=1.0, bound=1.0)
COLD_ROUNDS = 4 if SHORT else 8
# As a Dask worker pulls: distributed fixes malloc's trim threshold in its workers, which made
# every buffer the layer reader copied a mapping of its own (a pull 2.4 times slower).
DASK_WORKER_ENV = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
BIG_FILES, BIG_FILE_SIZE, BIG_LAYERS = 5000, 20_000, 4  # 100 MB of random bytes: no compression helps either side

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (.ci/install installs it)")


@pytest.fixture
def image(tmp_path) -> str:
    """A three-layer image of busybox, as the tests write them."""
    path = str(tmp_path / "layout")
    layers = [tar_layer(busybox_files()), tar_layer({"etc/motd": b"hi\n"}), tar_layer({"srv": None, "srv/data": b"x" * 4096})]
    write_layout(path, layers, {"Cmd": ["true"]}, tag="bench")
    return f"oci:{path}:bench"


def test_a_run_from_a_cached_image_costs_what_a_run_on_a_plain_tree_does(benchmark, tmp_path, image):
    rt = ocirt.Runtime.open(str(tmp_path / "root"))
    try:
        rt.pull(image)

        def timed(**options: object):
            def run() -> float:
                t0 = time.perf_counter()
                assert rt.run(["true"], **options).exit_code == 0
                return time.perf_counter() - t0

            return run

        plain, layered = abba(benchmark, timed(), timed(image=image, entrypoint=[]), ROUNDS)
    finally:
        rt.close()
    ratio = statistics.median(layered) / statistics.median(plain)
    report(
        benchmark, f"run from a cached image: {statistics.median(layered) * 1000:.1f} ms against {statistics.median(plain) * 1000:.1f} ms "
        f"on the plain tree: {ratio:.2f}x", IMAGE_RUN, ratio=ratio,
    )  # fmt: skip
    assert within(ratio, IMAGE_RUN.bound)


def test_a_re_pull_of_a_cached_image_costs_little_more_than_skopeo_inspect(benchmark, tmp_path, image):
    rt = ocirt.Runtime.open(str(tmp_path / "root"))
    try:
        rt.pull(image)

        def repull() -> float:
            t0 = time.perf_counter()
            rt.pull(image, policy="always")
            return time.perf_counter() - t0

        def inspect() -> float:
            t0 = time.perf_counter()
            subprocess.run(["skopeo", "inspect", "--raw", image], check=True, capture_output=True)
            return time.perf_counter() - t0

        floor, ours = abba(benchmark, inspect, repull, ROUNDS)
    finally:
        rt.close()
    ratio = statistics.median(ours) / statistics.median(floor)
    ms = statistics.median(ours) * 1000
    report(
        benchmark, f"re-pull: {ms:.1f} ms (the issue's goal: under {REPULL_GOAL_MS} ms) against skopeo inspect's "
        f"{statistics.median(floor) * 1000:.1f} ms: {ratio:.2f}x", REPULL, ratio=ratio, repull_ms=ms,
    )  # fmt: skip
    assert within(ratio, REPULL.bound)


@pytest.fixture(scope="module")
def big_image(tmp_path_factory) -> Iterator[str]:
    """The 100 MB, 5,000-file image in four layers, in a registry on 127.0.0.1."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (.ci/install installs it)")
    work = tmp_path_factory.mktemp("big")
    per_layer = BIG_FILES // BIG_LAYERS
    layers = [
        tar_layer({f"data{n}": None, **{f"data{n}/f{i}": os.urandom(BIG_FILE_SIZE) for i in range(per_layer)}}) for n in range(BIG_LAYERS)
    ]
    write_layout(str(work / "layout"), layers, {"Cmd": ["true"]}, tag="big")
    for registry in running(str(work)):
        yield registry.push(f"oci:{work / 'layout'}:big", "bench/big:1")


@pytest.mark.skipif(PODMAN is None, reason="podman is not installed: the cold pull has no anchor")
def test_a_cold_pull_is_no_slower_than_podmans(benchmark, tmp_path, big_image):
    # Every round pulls into a store of its own, and all are removed at the end: ext4 skips the
    # inodes freed in its last seconds when it allocates new ones, scanning past each, so files
    # made just after 5,000 were removed cost several times more (a round would pay for the last).
    podmans: List[Podman] = []
    rounds = iter(range(1_000_000))
    try:

        def ocirt_pull() -> float:
            root = str(tmp_path / f"root{next(rounds)}")
            os.sync()  # the last round's writes flushed: each pull starts from a disk with nothing owed
            t0 = time.perf_counter()
            argv = [sys.executable, "-m", "ocirt", "--root", root, "pull", "--tls-verify=false", big_image]
            subprocess.run(argv, check=True, capture_output=True, env=DASK_WORKER_ENV)
            return time.perf_counter() - t0

        def podman_pull() -> float:
            podmans.append(Podman(f"ocirt-bench-pull{len(podmans)}"))
            os.sync()
            t0 = time.perf_counter()
            podmans[-1].ok("pull", "--quiet", "--tls-verify=false", big_image)
            return time.perf_counter() - t0

        theirs, ours = abba(benchmark, podman_pull, ocirt_pull, COLD_ROUNDS)
    finally:
        for podman in podmans:
            podman.close()
    ratio = statistics.median(ours) / statistics.median(theirs)
    report(
        benchmark, f"cold pull of 100 MB in 5,000 files: ocirt {statistics.median(ours) * 1000:.0f} ms, podman "
        f"{statistics.median(theirs) * 1000:.0f} ms: {ratio:.2f}x", COLD_PULL, ratio=ratio,
    )  # fmt: skip
    assert within(ratio, COLD_PULL.bound)
