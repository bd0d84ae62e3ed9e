"""Container jobs on a real dask.distributed LocalCluster of worker processes."""

from __future__ import annotations

import multiprocessing.resource_tracker
import os
import shutil
import signal
import socket
import tempfile
import threading
from typing import Any, Dict, Iterator, List

import pytest

import ocirt
from ocirt import claims
from ocirt.churn import Job

from .cli_support import reap_orphans
from .dask_support import local_cluster
from .image_support import busybox_files, tar_layer, write_layout
from .observe import until

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from ocirt.dask import OcirtPlugin, _empty, default_base, map_jobs  # noqa: E402  (needs distributed)

WORKERS = 2
PER_WORKER = 2  # containers at once on each worker: its "ocirt" resource


@pytest.fixture(scope="module", autouse=True)
def resource_tracker() -> None:
    """Started before the leak check's first look: worker processes start
    multiprocessing's resource tracker, whose pipe stays for the process's life."""
    multiprocessing.resource_tracker.ensure_running()


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Any]:
    """A client of a LocalCluster whose workers (processes) each have an ocirt runtime under tmp_path/dask."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # a killed worker fails its job at once
        with local_cluster(
            n_workers=WORKERS,
            threads_per_worker=PER_WORKER,
            processes=True,
            resources={"ocirt": PER_WORKER},
            dashboard_address=":0",
            silence_logs=40,
        ) as lc, distributed.Client(lc) as client:
            client.register_plugin(OcirtPlugin(base=str(tmp_path / "dask")))
            yield client
    reap_orphans()  # conmons of a killed worker end as this subreaper's children


def test_a_worker_keeps_a_warm_pool_for_its_jobs(tmp_path):
    options = dict(n_workers=1, threads_per_worker=2, processes=True, resources={"ocirt": 2}, dashboard_address=":0", silence_logs=40)
    with local_cluster(**options) as lc, distributed.Client(lc) as client:
        client.register_plugin(OcirtPlugin(base=str(tmp_path / "dask"), pool=2))
        results = sorted(map_jobs(client, [Job(["sh", "-c", f"echo {i}; exit {i % 2}"]) for i in range(6)]), key=lambda r: r.index)
        assert [(r.exit_code, r.stdout, r.error) for r in results] == [(i % 2, f"{i}\n", None) for i in range(6)]
        taken = client.run(lambda dask_worker: [p.stats().taken for p in dask_worker.plugins["ocirt"]._pools.values()])
        assert list(taken.values()) == [[6]]  # one pool (busybox), every job through it
    reap_orphans()
    assert not os.path.exists(tmp_path / "dask" / "worker")  # the worker's root, emptied and removed with its pool


def live_containers(client: Any) -> Dict[str, List[str]]:
    """{worker address: ids of the containers its runtime holds}."""
    return client.run(lambda dask_worker: [c.id for c in dask_worker.plugins["ocirt"].runtime.list()])


def test_jobs_run_on_every_worker_with_their_results(cluster, tmp_path):
    jobs = [Job(["sh", "-c", f"echo out {i}; echo err {i} >&2; exit {i % 3}"]) for i in range(4 * WORKERS * PER_WORKER)]
    results = sorted(map_jobs(cluster, jobs), key=lambda r: r.index)
    assert [r.index for r in results] == list(range(len(jobs)))
    assert [r.exit_code for r in results] == [i % 3 for i in range(len(jobs))]
    assert [(r.stdout, r.stderr) for r in results] == [(f"out {i}\n", f"err {i}\n") for i in range(len(jobs))]
    assert all(r.error is None and r.host == socket.gethostname() for r in results)
    assert {r.worker for r in results} == set(cluster.scheduler_info()["workers"])  # spread over the workers
    assert all({"create", "start", "run"} <= set(r.timings) for r in results)
    until(lambda: live_containers(cluster) == {w: [] for w in cluster.scheduler_info()["workers"]})  # deleted in the background


def test_a_job_that_cannot_run_comes_back_with_its_error(cluster):
    results = list(map_jobs(cluster, [Job(["/no/such/program"]), Job(["true"])]))
    by_index = {r.index: r for r in results}
    assert by_index[1].ok
    failed = by_index[0]
    assert failed.exit_code is None and "/no/such/program" in (failed.error or "")


def test_a_killed_worker_fails_its_job_and_its_container_goes_at_the_restart(cluster):
    results: List[Any] = []
    collector = threading.Thread(target=lambda: results.extend(map_jobs(cluster, [Job(["sleep", "1000"])])))
    collector.start()

    def running() -> Dict[str, List[str]]:
        return {w: ids for w, ids in live_containers(cluster).items() if ids}

    try:
        until(lambda: bool(running()), timeout=60)
        ((worker, (cid,)),) = running().items()
        os.kill(cluster.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
    finally:
        collector.join(60)
    assert not collector.is_alive()
    (result,) = results
    assert result.exit_code is None and "KilledWorker" in (result.error or "")
    # The nanny starts a new worker; its plugin removes what the dead one left, before it takes jobs.
    cluster.wait_for_workers(WORKERS, timeout=60)
    until(lambda: not os.path.exists(f"/run/runc/{cid}"), timeout=60)
    assert all(cid not in ids for ids in live_containers(cluster).values())


def test_a_dead_workers_root_stays_while_a_container_in_it_cannot_be_deleted(tmp_path, fakes_dir, make_bundle, new_id, monkeypatch):
    root = str(tmp_path / "worker")
    options = {"runtime_path": os.path.join(fakes_dir, "runc-failing")}
    with ocirt.Runtime.open(root, **options) as rt:
        cid = rt.create(new_id(), make_bundle("true")).id
    monkeypatch.setenv("OCIRT_FAKE_FAIL", "delete")
    _empty(root, options)
    with ocirt.Runtime.open(root, **options) as rt:
        assert list(rt.containers()) == [cid]  # its record is what lets a later clean-up remove it
    monkeypatch.delenv("OCIRT_FAKE_FAIL")
    _empty(root, options)
    assert not os.path.exists(root)


def test_another_user_cannot_take_the_default_base_first(tmp_path, monkeypatch):
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))  # where the base used to be: a /tmp of the test's own
    monkeypatch.setattr(claims, "ROOT_BASE", str(tmp_path / "run" / "ocirt"))  # root's, kept in the test's directory
    squatted = shared / f"ocirt-dask-{os.getuid()}"
    squatted.mkdir()
    os.chown(squatted, 65534, 65534)  # made first by nobody
    root, lock = claims.claim(os.path.join(default_base(), "worker"))
    os.close(lock)
    assert root == str(tmp_path / "run" / "ocirt" / "dask" / "worker")


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (.ci/install installs it)")
def test_a_worker_pulls_the_image_a_job_names_where_it_lacks_it(cluster, tmp_path):
    ref = f"oci:{tmp_path / 'layout'}:1"
    write_layout(str(tmp_path / "layout"), [tar_layer(busybox_files({"etc/motd": b"from the image\n"}))], {"Cmd": ["cat", "/etc/motd"]}, tag="1")
    results = list(map_jobs(cluster, [Job(image=ref) for _ in range(2 * WORKERS)]))
    assert [(r.ok, r.stdout) for r in results] == [(True, "from the image\n")] * len(results), [r.error for r in results]
    held = cluster.run(lambda dask_worker: [i.name for i in dask_worker.plugins["ocirt"].runtime.images()])
    assert all(held[worker] == [ref, "busybox:latest"] for worker in {r.worker for r in results})
