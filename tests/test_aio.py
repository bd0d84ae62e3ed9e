"""The asyncio API on real containers: verbs awaited in one loop, no thread per container."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

import ocirt
from ocirt.aio import AsyncRuntime


@pytest.fixture
def aruntime(runtime):
    """An AsyncRuntime over the test's Runtime (whose leftovers are force-deleted)."""
    return AsyncRuntime(runtime=runtime)


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_a_lifecycle_awaited(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sh", "-c", "echo hello; exit 3"))
        await c.start()
        code = await c.wait()
        await c.delete()
        return c, code

    c, code = asyncio.run(main())
    assert code == 3
    assert c.state.exit_code == 3 and c.container._deleted
    marks = [c.timings.create, c.timings.spawned, c.timings.created, c.timings.started, c.timings.exited, c.timings.recorded, c.timings.deleted]
    assert None not in marks and marks == sorted(marks)


def test_restart_awaited(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sh", "-c", "echo hello; exit 3"))
        await c.start()
        first = await c.wait()
        await c.restart()
        second = await c.wait()
        lines = [r.text for r in c.container.logs()]
        await c.delete()
        return first, second, lines

    assert asyncio.run(main()) == (3, 3, ["hello", "hello"])


def test_wait_for_status_awaited(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sleep", "1000"))
        waiting = asyncio.ensure_future(c.wait_for_status(["running"], timeout=30, interval=0.01))
        await c.start()
        seen = await waiting
        await c.delete(force=True)
        return seen

    assert asyncio.run(main()) is ocirt.ContainerStatus.RUNNING


def test_many_containers_in_one_loop_take_no_thread_each(aruntime, make_bundle, new_id):
    bundle = make_bundle("true")
    before = threads()
    peak = []

    async def one():
        c = await aruntime.create(new_id(), bundle)
        await c.start()
        code = await c.wait()
        peak.append(threads())
        await c.delete()
        return code

    async def main():
        return await asyncio.gather(*(one() for _ in range(12)))

    assert asyncio.run(main()) == [0] * 12
    assert max(peak) == before


def test_a_wait_does_not_hold_back_a_kill_of_the_same_container(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sleep", "1000"))
        await c.start()
        waiting = asyncio.ensure_future(c.wait())
        await asyncio.sleep(0)  # the wait is registered on the loop
        await c.kill(signal.SIGKILL)
        code = await waiting
        await c.delete()
        return code

    assert asyncio.run(main()) == 128 + signal.SIGKILL


def test_verbs_of_two_tasks_on_one_container_take_turns(aruntime, make_bundle, new_id):
    """pause and stop from two tasks: each verb runs whole (the lock is held across its runtime command)."""

    async def main():
        c = await aruntime.create(new_id(), make_bundle("sleep", "1000"))
        await c.start()
        await asyncio.gather(c.pause(), c.stop(timeout=0))
        code = await c.wait()
        await c.delete()
        return code

    assert asyncio.run(main()) == 128 + signal.SIGKILL


def test_exec_awaited(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sleep", "1000"))
        await c.start()
        session = await c.exec(["sh", "-c", "echo in; exit 5"])
        code = await session.wait()
        text = [r.text for r in session.logs()]
        await c.delete(force=True)
        return code, text

    assert asyncio.run(main()) == (5, ["in"])


def test_a_deep_reconcile_asks_the_runtime_without_blocking_the_loop(tmp_path, gate, make_bundle, new_id):
    root = str(tmp_path / "root")
    made = ocirt.Runtime.open(root)
    cid = made.create(new_id(), make_bundle("sleep", "1000")).id
    made.get(cid).start()
    made.close()
    gate.open()  # the open's own recovery passes
    rt = AsyncRuntime.open(root, runtime_path=gate.runtime("state"))
    gate.shut()

    async def main():
        getting = asyncio.ensure_future(rt.get(cid))  # reconciled with the runtime's `state`, which waits at the gate
        while not gate.has("reached.main"):  # the gated runtime runs in another process: the loop must run meanwhile
            await asyncio.sleep(0.001)
        assert not getting.done()
        gate.open()
        gate.release("main")
        c = await getting
        assert c.state.status.value == "running"
        await c.delete(force=True)

    try:
        asyncio.run(main())
    finally:
        gate.open()
        gate.release_if_waiting("main")
        if rt.runtime.store.get(cid) is not None:  # the test failed before its delete
            rt.runtime.get(cid).delete(force=True)
        rt.runtime.close()


def test_a_cancelled_create_leaves_nothing(tmp_path, gate, make_bundle, new_id):
    rt = ocirt.Runtime(tmp_path / "ocirt", runtime_path=gate.runtime("create"))

    async def main():
        creating = asyncio.ensure_future(AsyncRuntime(runtime=rt).create(new_id(), make_bundle("sleep", "1000")))
        while not gate.has("reached.main"):  # the runtime signs in from another process: look between loop turns
            await asyncio.sleep(0.001)
        creating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await creating

    try:
        asyncio.run(main())
    finally:
        gate.open()
        gate.release_if_waiting("main")  # the undo killed the gated runtime, unless the test failed first
    for d in (rt.dirs.containers, rt.dirs.exits, rt.dirs.sockets):
        assert os.listdir(d) == [], d
    assert rt.containers() == {}
    rt.close()
    # and, checked by the leak fixture: no runc container, no conmon, no cgroup


def test_a_cancelled_wait_leaves_the_container_usable(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sleep", "1000"))
        await c.start()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(c.wait(), 0.01)
        await c.stop(timeout=0)
        code = await c.wait()
        await c.delete()
        return code

    assert asyncio.run(main()) == 128 + signal.SIGKILL


def test_errors_are_the_blocking_api_s(aruntime, make_bundle, new_id):
    async def main():
        c = await aruntime.create(new_id(), make_bundle("sleep", "1000"))
        with pytest.raises(ocirt.InvalidState, match="cannot pause"):
            await c.pause()
        with pytest.raises(ocirt.InvalidArgument):
            await aruntime.create("bad/id", make_bundle("true"))
        await c.delete()

    asyncio.run(main())


def test_attach_awaited_sends_input_and_hands_output_to_functions(aruntime, make_bundle, new_id):
    data = os.urandom(1 << 20)

    async def main():
        c = await aruntime.create(new_id(), make_bundle("sh", "-c", "cat; echo err >&2"), stdin=True)
        out, err = [], []
        await c.start()  # cat writes only what it reads: nothing is missed
        await c.attach(stdin=data, stdout=out.append, stderr=err.append)
        code = await c.wait(30)
        await c.delete()
        return code, b"".join(out), b"".join(err)

    assert asyncio.run(main()) == (0, data, b"err\n")


def test_a_lock_another_process_holds_is_waited_for_without_blocking_the_loop(tmp_path, make_bundle, new_id):
    rt = AsyncRuntime.open(str(tmp_path / "root"))
    holder = None
    try:

        async def main():
            nonlocal holder
            c = await rt.create(new_id(), make_bundle("sleep", "1000"))
            lock_file = os.path.join(rt.runtime.store.lock_dir, c.id)
            holder = subprocess.Popen(  # holds the container's lock file until its stdin closes
                ["flock", lock_file, "sh", "-c", "echo held; read x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert holder.stdout.readline() == "held\n"
            start = asyncio.ensure_future(c.start())
            ticks = 0
            while ticks < 20:  # the loop goes on while the start waits for the lock
                await asyncio.sleep(0)
                ticks += 1
            assert not start.done()
            holder.stdin.close()  # the other process lets go: the start goes on
            await start
            assert c.state.status.value == "running"
            await c.delete(force=True)

        asyncio.run(main())
    finally:
        if holder is not None:
            holder.wait(30)
            holder.stdout.close()
        rt.runtime.close()
