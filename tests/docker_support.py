"""A private Docker daemon as a reference beside ocirt, kept to what the test made.

Each Docker is a dockerd of its own: its data, exec root (where it starts
its own containerd), pid file, socket and trust key live in a short
directory of its own under /tmp (a unix socket's path must be short), so
`ps -a` reaches only its containers, never anyone else's. It has no
network of its own (no bridge, no iptables rules, no forwarding), makes
its containers' cgroups under a parent inside this process's own cgroup
(cgroupfs, no systemd), and gives them this machine's own ulimits (dockerd's
defaults are above what the machine lets a process raise to). Images come
from a root filesystem (`import_rootfs`): no registry is needed.

`close()` removes every container, stops the daemon (which stops its
containerd), reaps what ended as this process's children, and removes the
mounts, files and cgroups it made.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import List, Optional

import psutil

from .cgroup_parent import CgroupParent
from .cli_support import reap_orphans

DOCKERD = shutil.which("dockerd")
DOCKER = shutil.which("docker")
START_TIMEOUT = 60.0  # seconds for the daemon to answer (it does in 0.2-0.5 here)
STOP_TIMEOUT = 60.0  # seconds for it, and its containerd, to exit on SIGTERM
# What dockerd 20.10 and containerd's shims make in /run whatever their roots (plugin sockets, shim sockets), deepest first.
HOST_DIRS = ("/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd")


def _mounts_under(top: str) -> List[str]:
    """Mount points at or below `top`, deepest first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" ")[4].encode().decode("unicode_escape")  # \040 and the like
            if point == top or point.startswith(top + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def _ended(p: psutil.Process, timeout: float) -> bool:
    """Whether `p` exits (or is a zombie: it ends as this subreaper's child, or init's) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Docker:
    """`docker` against a dockerd of its own; call it like a shell would."""

    def __init__(self, tag: str = "ocirt-docker") -> None:
        assert DOCKERD is not None and DOCKER is not None
        # Short: the socket's path must fit in sun_path (108 bytes); pytest's tmp_path is longer.
        state_dir = self.state_dir = tempfile.mkdtemp(prefix="docker-", dir="/tmp")
        self.host = f"unix://{state_dir}/sock"
        self.cgroups = CgroupParent(tag)
        self.cgroup_parent = self.cgroups.path
        self._host_dirs = [d for d in HOST_DIRS if not os.path.exists(d)]
        self._containerd: Optional[psutil.Process] = None
        self.daemon: Optional[subprocess.Popen] = None
        try:
            config = os.path.join(state_dir, "daemon.json")  # instead of /etc/docker/daemon.json, if the host has one
            with open(config, "w") as f:
                json.dump({"deprecated-key-path": f"{state_dir}/key.json"}, f)  # else /etc/docker/key.json (no flag sets it)
            with open(os.path.join(state_dir, "dockerd.log"), "wb") as log:
                self.daemon = subprocess.Popen(
                    [
                        DOCKERD, f"--data-root={state_dir}/data", f"--exec-root={state_dir}/exec", f"--pidfile={state_dir}/pid",
                        f"--host={self.host}", f"--config-file={config}",
                        "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
                        f"--cgroup-parent={self.cgroup_parent}", "--exec-opt=native.cgroupdriver=cgroupfs",
                        "--default-ulimit=nofile=1024:1024", "--default-ulimit=nproc=1024:1024",
                    ],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            self.started_in = self._wait_for_answer(self.daemon)
            self._containerd = self._find_containerd()
        except BaseException:
            self.close()
            raise

    def _wait_for_answer(self, daemon: subprocess.Popen) -> float:
        """Seconds until the daemon answers `docker version`; RuntimeError, with its log, if it exits or stays silent."""
        t0 = time.monotonic()
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"dockerd exited ({daemon.returncode}) before answering:\n{self.log_tail()}")
            if os.path.exists(os.path.join(self.state_dir, "sock")) and self("version", timeout=10).returncode == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > START_TIMEOUT:
                raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def _find_containerd(self) -> Optional[psutil.Process]:
        """The containerd this daemon started (its child), to be sure it ends with it."""
        assert self.daemon is not None
        for child in psutil.Process(self.daemon.pid).children():
            try:
                if child.name() == "containerd":
                    return child
            except psutil.NoSuchProcess:
                pass
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.state_dir, "dockerd.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    def argv(self, *args: str) -> List[str]:
        return [str(DOCKER), f"--host={self.host}", *args]

    def __call__(self, *args: str, timeout: float = 120, input: Optional[str] = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, input=input)

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)
        return proc.stdout

    def import_rootfs(self, path: str, tag: str) -> str:
        """Make image `tag` from the root filesystem at `path` (`docker import`); its id."""
        tar = subprocess.Popen(["tar", "-C", path, "-c", "."], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(self.argv("import", "-", tag), stdin=tar.stdout, capture_output=True, text=True, timeout=120)
        finally:
            tar.stdout.close()  # type: ignore[union-attr]
            tar.wait()
        assert tar.returncode == 0 and imported.returncode == 0, (tar.returncode, imported.returncode, imported.stderr)
        return imported.stdout.strip()

    def close(self) -> None:
        """Remove every container, stop the daemon and its containerd, then
        remove the mounts and the directory, the cgroups dockerd left under
        the parent, and the directories it made in /run. AssertionError
        naming what could not be removed."""
        left: List[str] = []
        daemon = self.daemon
        if daemon is not None and daemon.poll() is None:
            try:
                ids = self("ps", "-a", "-q").stdout.split()
                if ids:
                    self("rm", "-f", *ids)
            except subprocess.TimeoutExpired as e:
                left.append(f"containers: {e}")  # the daemon's shutdown kills them
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                left.append(f"dockerd {daemon.pid} ignored SIGTERM for {STOP_TIMEOUT:.0f} s: killed\n{self.log_tail()}")
                daemon.kill()
                daemon.wait()
        if self._containerd is not None and not _ended(self._containerd, STOP_TIMEOUT):  # dockerd stops it
            left.append(f"containerd {self._containerd.pid} outlived dockerd: killed")
            self._containerd.kill()
            _ended(self._containerd, 10)
        reap_orphans()  # shims and containerd, where they ended as this process's children
        for point in _mounts_under(self.state_dir):
            proc = subprocess.run(["umount", "-R", point], capture_output=True, text=True)
            if proc.returncode != 0 and point in _mounts_under(self.state_dir):
                left.append(f"mount {point}: {proc.stderr.strip()}")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if os.path.exists(self.state_dir):
            left.append(f"directory {self.state_dir}")
        left += self.cgroups.remove()
        for d in self._host_dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"{d}: {e.strerror}")
        assert not left, "the private Docker daemon left:\n  " + "\n  ".join(left)
