"""Launching conmon for a Runtime's containers and exec sessions, and
removing what a launch made (conmon, its cgroup, the run files)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import conmon, spec as specs
from .cgroups import Cgroup
from .errors import OcirtError
from .layout import ContainerDir, ExecDir, write_private
from .process import KILL_GRACE, ProcessHandle, wait_steps
from .steps import Steps, block

END_ROUNDS = 16  # listings end_cgroup takes before it leaves the rest to the caller's error


@dataclass(frozen=True)
class LaunchOptions:
    """How conmon runs one container, kept with it so that a restart launches it the same way.

    `exit_command`: an argv conmon runs once the container has exited;
    `kill_after`: seconds after its start that conmon kills it (0: never);
    `log_size_max`: bytes before conmon rotates its log (-1: never; None:
    the launcher's setting)."""

    exit_command: Tuple[str, ...] = ()
    kill_after: int = 0
    log_size_max: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"exit_command": list(self.exit_command), "kill_after": self.kill_after, "log_size_max": self.log_size_max}

    @classmethod
    def from_dict(cls, data: object) -> "LaunchOptions":
        """From to_dict's form; what is missing or malformed takes the default (a record is not trusted blindly)."""
        if not isinstance(data, dict):
            return cls()
        command = data.get("exit_command")
        kill_after, size = data.get("kill_after"), data.get("log_size_max")
        return cls(
            tuple(command) if isinstance(command, list) and all(isinstance(a, str) for a in command) else (),
            kill_after if isinstance(kill_after, int) and kill_after >= 0 else 0,
            size if isinstance(size, int) else None,
        )


class Launcher:
    """conmon, the runtime it drives, and the settings every launch shares."""

    def __init__(
        self,
        conmon_path: str,
        runtime_path: str,
        socket_dir: str,
        *,
        conmon_env: Optional[Mapping[str, str]] = None,
        systemd_cgroup: bool = False,
        log_size_max: int = -1,
        no_pivot: bool = False,
        sync_log: bool = False,
    ) -> None:
        self.conmon_path = conmon_path
        self.runtime_path = runtime_path
        self.socket_dir = socket_dir
        self.conmon_env = dict(conmon_env) if conmon_env is not None else None
        self.systemd_cgroup = systemd_cgroup
        self.log_size_max = log_size_max
        self.no_pivot = no_pivot
        self.sync_log = sync_log

    def args(self, **kw: object) -> conmon.ConmonArgs:
        """conmon's arguments: this launcher's settings, with `kw` added (or laid over them)."""
        settings: Dict[str, object] = dict(
            conmon_path=self.conmon_path,
            runtime_path=self.runtime_path,
            socket_dir=self.socket_dir,
            systemd_cgroup=self.systemd_cgroup,
            log_size_max=self.log_size_max,
            no_pivot=self.no_pivot,
            sync_log=self.sync_log,
        )
        return conmon.ConmonArgs(**{**settings, **kw})  # type: ignore[arg-type]

    def create_steps(
        self,
        cid: str,
        files: ContainerDir,
        bundle: str,
        spec: specs.Spec,
        *,
        cgroup: Optional[Cgroup],
        terminal: bool,
        stdin: bool,
        options: LaunchOptions,
        timeout: Optional[float],
        listen_fds: Sequence[int] = (),
    ) -> Steps[conmon.Launched]:
        """Have conmon create container `cid` from `spec` in its run dir `files.root` (steps: see ocirt.steps).

        `listen_fds` (sockets) reach the container's process at fd 3 onwards,
        with LISTEN_FDS and LISTEN_PID set for it (systemd socket activation).

        The caller made `files.root`; this writes the bundle-independent
        config there and launches conmon. The caller undoes a failure (see
        `teardown`).
        """
        for stale in (files.exit_file, files.socket_link):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        config = specs.runtime_spec(bundle, spec)
        if cgroup is not None and cgroup.runtime_path is not None:
            # ocirt places the container (beside conmon's cgroup), whatever the bundle asked
            config["linux"] = dict(config.get("linux") or {}, cgroupsPath=cgroup.runtime_path)
        write_private(files.config, json.dumps(config).encode())  # env may hold secrets
        args = self.args(
            cid=cid,
            cuuid=cid,
            bundle=files.root,
            pidfile=files.pidfile,
            conmon_pidfile=files.conmon_pidfile,
            log_path=files.log,
            exit_dir=files.exit_dir,
            terminal=terminal,
            stdin=stdin,
            leave_stdin_open=terminal and stdin,  # a terminal's attachers come and go (detach keys)
            kill_after=options.kill_after,
            exit_command=options.exit_command,
            replace_listen_pid=bool(listen_fds),
            **({"log_size_max": options.log_size_max} if options.log_size_max is not None else {}),
        )
        env = conmon.conmon_env(self.conmon_env, len(listen_fds))
        launched = yield from conmon.launch_steps(args, env, cwd=files.root, timeout=timeout, listen_fds=listen_fds, **_joining(cgroup))
        os.close(launched.sync_fd)  # a container's exit is read from the exit file
        return launched

    def exec_steps(
        self,
        cid: str,
        files: ExecDir,
        process: specs.Spec,
        *,
        cgroup: Optional[Cgroup],
        tty: bool,
        attach: bool,
        timeout: Optional[float],
        stdin: bool = False,
    ) -> Steps[conmon.Launched]:
        """Have conmon run `process` in container `cid`; its files go to `files.root` (steps).

        `files.root` must not exist yet (FileExistsError). On failure
        nothing of the session is left.
        """
        os.makedirs(os.path.dirname(files.root), mode=0o700, exist_ok=True)
        os.mkdir(files.root, 0o700)
        try:
            os.mkdir(files.exit_dir, 0o700)
            write_private(files.process, json.dumps(process).encode())  # env may hold secrets
            args = self.args(
                cid=cid,
                cuuid=files.cuuid,
                bundle=files.root,
                pidfile=files.pidfile,
                conmon_pidfile=files.conmon_pidfile,
                log_path=files.log,
                exit_dir=files.exit_dir,
                terminal=tty,
                exec_spec=files.process,
                exec_attach=attach,
                stdin=stdin,
            )
            env = conmon.conmon_env(self.conmon_env)
            link = files.socket_link
            try:
                attach_dir = link if attach else None
                return (yield from conmon.launch_steps(
                    args, env, cwd=files.root, timeout=timeout, attach_dir=attach_dir, attach_input=stdin, **_joining(cgroup)
                ))  # fmt: skip
            except BaseException:
                if os.path.islink(link):  # conmon may have linked the session's socket dir before failing
                    os.unlink(link)
                raise
        except BaseException:
            shutil.rmtree(files.root, ignore_errors=True)
            raise

    def teardown(self, *args: Any, **kw: Any) -> List[str]:
        """teardown_steps, blocking."""
        return block(self.teardown_steps(*args, **kw))

    def teardown_steps(
        self,
        files: ContainerDir,
        cgroup: Optional[Cgroup],
        conmons: Iterable[ProcessHandle],
        exec_sessions: Iterable[str] = (),
        *,
        relaunching: bool = False,
    ) -> Steps[List[str]]:
        """Remove what launching a container made, once the runtime has deleted it.

        The conmons held (the container's and its exec sessions') and every
        process still in conmon's cgroup (conmons of execs that other, maybe
        dead, processes started) get a grace period to exit, then are killed;
        then the cgroup and the run files go, with the attach-socket links of
        `exec_sessions` (ids). `relaunching` (a restart) keeps the run dir
        with the log and the config. Returns what could not be removed, as
        messages.
        """
        stuck = yield from _end(list(conmons))
        try:
            if cgroup is not None and not cgroup.remove_if_empty():
                # Still in conmon's cgroup or below it: conmons of execs that
                # other (maybe dead) processes started, or a runtime stuck in
                # create (its init blocked, say) for a container it never finished.
                stuck += yield from end_cgroup_steps(cgroup, conmon.EXIT_GRACE)
                cgroup.remove()
        except OcirtError as e:
            errors = [str(e)]
        else:
            errors = []
        errors += [f"process {pid} did not exit {KILL_GRACE:g}s after SIGKILL" for pid in stuck]
        links = [files.socket_link, *(files.exec_session(sid).socket_link for sid in exec_sessions)]
        for path in (files.exit_file, *links):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        _remove_run_dir(files.root, keep=(files.log, files.config, files.netns) if relaunching else ())
        return errors


def end_cgroup(cgroup: Cgroup, grace: float) -> List[int]:
    """end_cgroup_steps, blocking."""
    return block(end_cgroup_steps(cgroup, grace))


def end_cgroup_steps(cgroup: Cgroup, grace: float) -> Steps[List[int]]:
    """End every process in `cgroup` and below it, then in the container's
    cgroup beside it: `grace` seconds to exit, then SIGKILL (all at once
    where cgroup v2 has cgroup.kill); the pids of those still there
    KILL_GRACE after it.

    One listing is not enough: a process listed may fork between the
    listing and its SIGKILL (conmon starting the runtime, the runtime its
    init), and the child is not in that listing. So the rounds go on until
    a listing taken after everything listed before has exited finds nobody.
    """
    stuck: List[int] = []
    groups = [cgroup] if cgroup.container is None else [cgroup, cgroup.container]
    for group in groups:  # conmon's first: nothing new is started once it is empty
        for _ in range(END_ROUNDS):
            if grace == 0:
                group.kill_all()
            found = group.members(below=True)
            if not found:
                break
            try:
                stuck = yield from _end(found, grace)
            finally:
                for h in found:
                    h.close()
            if stuck:
                return stuck  # one outlived SIGKILL: another round would not end it either
            grace = 0
    return stuck


def _end(processes: List[ProcessHandle], grace: float = conmon.EXIT_GRACE) -> Steps[List[int]]:
    """Give `processes` `grace` seconds to exit, SIGKILL the rest, reap them all;
    the pids of those still there KILL_GRACE after the SIGKILL."""
    for h in (yield from wait_steps(processes, grace)):
        h.signal(signal.SIGKILL)
    stuck = yield from wait_steps(processes, KILL_GRACE)
    for h in processes:
        h.reap()
    return [h.pid for h in stuck]


def _remove_run_dir(path: str, keep: Sequence[str] = ()) -> None:
    """Remove a run dir (ocirt's and conmon's files, never the container's):
    its few files one by one, what is below them with rmtree. With `keep`
    (paths in it), those and the directory stay."""
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.path in keep:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
    if keep:
        return
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        shutil.rmtree(path, ignore_errors=True)  # something appeared meanwhile


def _joining(cgroup: Optional[Cgroup]) -> Dict[str, Any]:
    """How conmon joins `cgroup`: by itself through its files, else moved by the manager."""
    if cgroup is None:
        return {}
    files = cgroup.join_files()
    return {"join_files": files} if files else {"join_cgroup": cgroup.add}
