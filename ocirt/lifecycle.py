"""How the lifecycle verbs are done: each a step function (see ocirt.steps)
on a container's parts (core.ContainerCore). `Container` offers them,
blocking and as steps; `ocirt.aio` awaits the same steps.

A container's exit is the appearance of conmon's exit file, an inotify
watch guarded by conmon's pidfd: waits never poll at a fixed interval.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Iterable, List, Optional, Sequence, Tuple

from . import conmon, exec as execs, spec as specs
from .core import CREATED, PAUSED, RUNNING, STOPPED, ContainerCore
from .errors import ConmonError, ContainerNotFound, InvalidArgument, InvalidState, OcirtError, RuntimeCommandError, Timeout
from .launcher import end_cgroup
from .layout import remove_tree
from .oci import is_not_found
from .process import KILL_GRACE
from .state import LIVE, TIMED_OUT, ContainerState, ContainerStatus, Timings, now, parse_status
from .steps import Steps, deadline_after, sleep
from .validate import SignalLike, check_timeout, parse_signal

log = logging.getLogger("ocirt")
DEFAULT_CREATE_TIMEOUT = 240.0  # seconds conmon and the runtime get to create a container (Runtime.create's default)


def start(c: ContainerCore, await_exec: bool = True) -> Steps[None]:
    """See Container.start_steps; without `await_exec`, for a caller that
    sends no signal but SIGKILL, it returns before the process is exec'd."""
    with (yield from c._locking()):
        c._require(CREATED, verb="start")
        started = now()  # before: a quick process may finish before start returns
        yield from c._svc.oci.start_steps(c.id, c._monitor.init, hooks=specs.has_poststart_hooks(c.spec), await_exec=await_exec)
        c.state.status, c.state.started_at = RUNNING, started
        c.timings.started = time.monotonic()


def kill(c: ContainerCore, sig: SignalLike = signal.SIGKILL) -> Steps[None]:
    signum = parse_signal(sig)
    with (yield from c._locking()):
        c._require(*LIVE, verb="kill")
        if not (yield from c._monitor.signal_steps(signum)):
            yield from c._record_exit(timeout=KILL_GRACE)
            raise InvalidState(f"container {c.id} has exited (code {c.state.exit_code})")


def stop(c: ContainerCore, timeout: Optional[float] = 10) -> Steps[None]:
    grace = check_timeout(timeout)
    # The waits hold no lock: another thread, task or process may kill or stop meanwhile.
    with (yield from c._locking()):
        c._require_exists()
        if c.state.status is STOPPED:
            return
        c._require(*LIVE, verb="stop")
        if c.state.status is PAUSED:
            yield from resume(c)
        # A created container runs nothing of its own yet: nothing to be gentle with.
        polite = c.state.status is not CREATED and grace != 0
        signalled = polite and (yield from c._monitor.signal_steps(specs.stop_signal(c.spec)))
    if not (signalled and (yield from c._monitor.wait_exit_steps(grace))):
        with (yield from c._locking()):
            if c._deleted or c.state.status is STOPPED:
                return
            group = c._cgroup.container if c._cgroup is not None else None
            yield from c._monitor.kill_all_steps(c.spec, group.kill_all if group is not None else lambda: False)
            if c.state.status is PAUSED:  # paused meanwhile: a frozen process dies of SIGKILL only once thawed
                yield from resume(c)
        if not (yield from c._monitor.wait_exit_steps(KILL_GRACE)):
            raise Timeout(f"container {c.id} did not exit {KILL_GRACE:g}s after SIGKILL")
    with (yield from c._locking()):
        yield from c._record_exit()


def pause(c: ContainerCore) -> Steps[None]:
    with (yield from c._locking()):
        c._require(RUNNING, verb="pause")
        yield from c._svc.oci.run_steps(c._svc.oci.pause_args(c.id))
        c.state.status = PAUSED


def resume(c: ContainerCore) -> Steps[None]:
    with (yield from c._locking()):
        c._require(PAUSED, verb="resume")
        yield from c._svc.oci.run_steps(c._svc.oci.resume_args(c.id))
        c.state.status = RUNNING


def wait(c: ContainerCore, timeout: Optional[float] = None) -> Steps[int]:
    limit = check_timeout(timeout)
    c._require_exists()
    if c.state.status is not STOPPED:
        # No lock while waiting: another thread, task or process may stop or kill meanwhile.
        if not (yield from c._monitor.wait_exit_steps(limit)):
            raise Timeout(f"container {c.id} still running after {limit:g}s")
        c.timings.exited = c.timings.exited or time.monotonic()
        with (yield from c._locking()):
            c._require_exists()
            yield from c._record_exit()
    if c.state.exit_code == -1 and c.note != TIMED_OUT:
        raise ConmonError(f"conmon of container {c.id} died without reporting an exit code")
    assert c.state.exit_code is not None
    return c.state.exit_code


def wait_for_status(
    c: ContainerCore, statuses: "Iterable[ContainerStatus | str]", timeout: Optional[float] = None, interval: float = 0.25
) -> Steps[ContainerStatus]:
    wanted = _statuses(statuses)
    pause = check_timeout(interval, "interval")
    if not pause:
        raise InvalidArgument(f"interval must be a positive number of seconds, not {interval!r}")
    deadline = deadline_after(check_timeout(timeout))
    while True:
        status = (yield from c.refresh_steps(blocking=False)).status
        c._require_exists()
        if status in wanted:
            return status
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"container {c.id} is still {status.value}, not {' or '.join(sorted(s.value for s in wanted))}, after {timeout:g}s")
        nap = pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
        if STOPPED in wanted and c._monitor.conmon is not None:
            if (yield from c._monitor.wait_exit_steps(nap)):  # an exit ends the nap at once
                with (yield from c._locking()):
                    c._require_exists()
                    yield from c._record_exit()
        else:
            yield from sleep(nap)


def update_status(c: ContainerCore) -> Steps[ContainerState]:
    with (yield from c._locking()):
        c._require_exists()
        if c.state.status is STOPPED:
            return c.state
        try:
            status = parse_status((yield from c._svc.oci.state_steps(c.id))["status"], c.id)
        except ContainerNotFound:
            if not os.path.exists(c._files.exit_file):
                raise
            status = STOPPED
        if status is STOPPED:
            yield from c._record_exit(timeout=conmon.EXIT_GRACE)
        else:
            c.state.status = status
        return c.state


def delete(c: ContainerCore, force: bool = False) -> Steps[None]:
    with (yield from c._locking()):
        c._require_exists()
        status = c.state.status
        if status in (RUNNING, PAUSED, ContainerStatus.CONFIGURED) and not force:
            what = "half-created" if status is ContainerStatus.CONFIGURED else status.value
            raise InvalidState(
                f"container {c.id} is {what}: stop it first, or force the delete (rm -f)", container_id=c.id, status=status, verb="delete"
            )
        if status is ContainerStatus.CONFIGURED:
            yield from c._monitor.stop_creating()
        try:
            yield from c._svc.oci.run_steps(c._svc.oci.delete_args(c.id, force=force or status is CREATED))
        except RuntimeCommandError as e:
            if not is_not_found(e):
                raise
        yield from release(c)


def restart(c: ContainerCore, timeout: Optional[float] = 10) -> Steps[None]:
    check_timeout(timeout)
    c._require_exists()
    if c.auto_remove:
        raise InvalidState(
            f"cannot restart container {c.id}: it is removed when it exits", container_id=c.id, status=c.state.status, verb="restart"
        )
    yield from stop(c, timeout)
    with (yield from c._locking()):
        c._require(STOPPED, verb="restart")
        began = time.monotonic()
        try:
            yield from c._svc.oci.run_steps(c._svc.oci.delete_args(c.id, force=True))
        except RuntimeCommandError as e:
            if not is_not_found(e):
                raise
        for error in (yield from end_run(c, relaunching=True)):
            log.warning("restart of container %s: %s", c.id, error)
        exit_code, finished_at, oom_killed = c.state.exit_code, c.state.finished_at, c.state.oom_killed
        c.state = ContainerState(ContainerStatus.CONFIGURED)
        c._sessions = execs.Sessions(c.state.exec_sessions)
        c.timings = Timings(create=began)
        c.note = ""
        c._record.save()  # half-created until conmon reports: a process that dies here leaves what rm -f removes
        try:
            yield from launch(c, DEFAULT_CREATE_TIMEOUT)
        except BaseException as e:
            undo_launch(c, delete_from_runtime=True)
            c.state.status, c.state.exit_code = STOPPED, exit_code
            c.state.finished_at, c.state.oom_killed = finished_at, oom_killed
            c.note = f"restart failed: {e}"
            raise
    yield from start(c)


def cgroup_names(cid: str) -> Tuple[str, str]:
    """The names of conmon's cgroup and the container's (siblings) for container `cid`."""
    return f"ocirt-conmon-{cid}", f"ocirt-{cid}"


def launch(c: ContainerCore, timeout: Optional[float], listen_fds: Sequence[int] = ()) -> Steps[None]:
    """Make conmon's cgroup and have conmon create the container, as
    `launch_options` say; the caller undoes a failure (`undo_launch`)."""
    c._cgroup = c._svc.cgroups.create(*cgroup_names(c.id), needs=specs.controllers_used(c.spec))
    launched = yield from c._svc.launcher.create_steps(
        c.id, c._files, c.bundle, c.spec, cgroup=c._cgroup, terminal=bool(c.spec["process"].get("terminal")),
        stdin=c.stdin, options=c.launch_options, timeout=timeout, listen_fds=listen_fds,
    )  # fmt: skip
    c._created(launched)


def undo_launch(c: ContainerCore, *, delete_from_runtime: bool) -> None:
    """Remove whatever a failed launch made, in reverse order, blocking.

    Best effort, step by step: a step that fails is logged and the next
    one still runs, and the caller raises the launch's own error.
    """
    files = c._files
    # conmon joined its cgroup before it ran anything: whatever it started
    # (the runtime, the container's init) is in it or below, even what a
    # pid file does not name yet. End all of it before the runtime's delete.
    if c._cgroup is not None:
        end_cgroup(c._cgroup, grace=0)
    if delete_from_runtime:
        try:
            c._svc.oci.delete(c.id, force=True)
        except RuntimeCommandError as e:
            if not is_not_found(e):
                log.warning("cannot delete half-created container %s from the runtime: %s", c.id, e)
    c._monitor.close()
    daemon = conmon.open_conmon(conmon.read_pid(files.conmon_pidfile), c.id)
    try:
        errors = leave_network(c) + c._svc.launcher.teardown(files, c._cgroup, [daemon] if daemon else [])
    except (OcirtError, OSError) as e:
        errors = [str(e)]
    finally:
        if daemon is not None:
            daemon.close()
    c._cgroup = None
    for error in errors:
        log.warning("cleanup of half-created container %s: %s", c.id, error)


def end_run(c: ContainerCore, *, relaunching: bool) -> Steps[List[str]]:
    """After the runtime deleted the container: end its conmons, remove
    its cgroup and run files (with `relaunching`, keep the log), close
    its fds. What could not be removed, as messages."""
    c._monitor.close_init()
    c._monitor.drop_mounts()  # its mounts go now, before its files
    conmons = [h for h in (*c._sessions.conmons(), c._monitor.conmon) if h is not None]
    sessions = {*c.state.exec_sessions, *c._sessions.foreign}
    errors = [] if relaunching else leave_network(c)  # a restart keeps its namespace, its address and its ports
    errors += yield from c._svc.launcher.teardown_steps(c._files, c._cgroup, conmons, sessions, relaunching=relaunching)
    c._monitor.close()
    c._sessions.close()
    return errors


def leave_network(c: ContainerCore) -> List[str]:
    """Take a container whose processes are gone off its bridge network (see
    networks.Networks.detach), found by its namespace file; what failed."""
    if not os.path.lexists(c._files.netns):
        return []
    from .networks import Networks

    try:
        return Networks(c._svc.network_dir).detach(c.id, c.name, c._files.netns)
    except (OcirtError, OSError) as e:
        return [f"cannot take it off its network: {e}"]


def release(c: ContainerCore) -> Steps[None]:
    """After the runtime deleted the container: conmon, cgroup, files, fds."""
    c._deleted = True
    errors = yield from end_run(c, relaunching=False)
    if c.owned_bundle:
        error = remove_tree(c.bundle)  # the container's writable layer is in it: any depth, any link
        if error:
            errors.append(f"cannot remove its bundle: {error}")
    c._svc.forget(c)
    c.timings.deleted = time.monotonic()
    if errors:
        raise OcirtError(f"container {c.id} deleted, but: " + "; ".join(errors))


def _statuses(given: "Iterable[ContainerStatus | str]") -> "frozenset[ContainerStatus]":
    """`given` as ContainerStatus values; InvalidArgument naming one that is none, or for none at all."""
    if isinstance(given, (str, ContainerStatus)):
        given = [given]
    out = set()
    for status in given:
        try:
            out.add(ContainerStatus(status))
        except ValueError:
            known = ", ".join(s.value for s in ContainerStatus)
            raise InvalidArgument(f"unknown container status {status!r}: use {known}") from None
    if not out:
        raise InvalidArgument("wait_for_status needs at least one status")
    return frozenset(out)
