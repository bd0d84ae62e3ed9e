"""Where ocirt keeps its files under a Runtime's tmp_dir.

    tmp_dir/exits/<id>              conmon's exit file for the container
    tmp_dir/socket/<id>             conmon's attach-socket link (to the run dir)
    tmp_dir/containers/<id>/        the container's run dir: conmon's bundle and cwd
        config.json                 the caller's spec, made bundle-independent
        pidfile, conmon.pid         the container's and conmon's pids
        ctr.log                     the container's output (k8s-file format)
        oom                         created by conmon on an OOM kill
        ctl, attach                 conmon's control FIFO and attach socket
        exec/<session>/             one exec session: process.json, pidfile,
                                    conmon.pid, ctr.log, exit/<id>
"""

from __future__ import annotations

import os

from .errors import InvalidArgument


class RuntimeDirs:
    """The directories shared by every container of one tmp_dir."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = os.path.abspath(tmp_dir)
        self.exits = os.path.join(self.tmp_dir, "exits")
        self.sockets = os.path.join(self.tmp_dir, "socket")
        self.containers = os.path.join(self.tmp_dir, "containers")

    def make(self) -> None:
        """Make the directories (InvalidArgument if `tmp_dir` cannot hold them)."""
        try:
            for d in (self.exits, self.sockets, self.containers):
                os.makedirs(d, exist_ok=True)
        except OSError as e:
            raise InvalidArgument(f"cannot keep ocirt's run files in {self.tmp_dir}: {e.strerror}") from e

    def container(self, cid: str) -> "ContainerDir":
        return ContainerDir(self, cid)


class ContainerDir:
    """The files of one container."""

    def __init__(self, dirs: RuntimeDirs, cid: str) -> None:
        self.root = os.path.join(dirs.containers, cid)
        self.config = os.path.join(self.root, "config.json")
        self.pidfile = os.path.join(self.root, "pidfile")
        self.conmon_pidfile = os.path.join(self.root, "conmon.pid")
        self.log = os.path.join(self.root, "ctr.log")
        self.oom = os.path.join(self.root, "oom")
        self.exit_dir = dirs.exits
        self.exit_file = os.path.join(dirs.exits, cid)
        self.socket_link = os.path.join(dirs.sockets, cid)

    def exec_session(self, session_id: str) -> "ExecDir":
        return ExecDir(os.path.join(self.root, "exec", session_id))


class ExecDir:
    """The files of one exec session (its own conmon bundle)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.process = os.path.join(root, "process.json")
        self.pidfile = os.path.join(root, "pidfile")
        self.conmon_pidfile = os.path.join(root, "conmon.pid")
        self.log = os.path.join(root, "ctr.log")
        self.exit_dir = os.path.join(root, "exit")
