"""podman as a reference beside ocirt, kept to what the test made.

Each Podman has its own store, run and tmp directories (so `-a` reaches
only its containers, never anyone else's), runs containers with no network,
and makes its cgroups under a parent inside this process's own cgroup,
which `close()` removes. The ulimits are this machine's own: podman's
defaults are above what the machine lets a process raise to.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from typing import List, Optional

from .cgroup_parent import CgroupParent

PODMAN = shutil.which("podman")
CREATING = ("run", "create")  # podman's verbs that take the container flags


class Podman:
    """`podman` with a store of its own; call it like a shell would."""

    def __init__(self, tag: str = "ocirt-podman") -> None:
        assert PODMAN is not None
        # Short: podman refuses a run root of more than 50 characters (pytest's tmp_path is longer).
        state_dir = self.state_dir = tempfile.mkdtemp(prefix="podman-", dir="/tmp")
        self.cgroups = CgroupParent(tag)
        self.cgroup_parent = self.cgroups.path
        self.global_flags = [
            f"--root={state_dir}/root", f"--runroot={state_dir}/run", f"--tmpdir={state_dir}/tmp",
            "--cgroup-manager=cgroupfs", "--events-backend=none",
        ]  # fmt: skip
        self.container_flags = [
            f"--cgroup-parent={self.cgroup_parent}", "--network=none",
            "--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024",
        ]  # fmt: skip

    def argv(self, *args: str) -> List[str]:
        args_list = list(args)
        if args_list and args_list[0] in CREATING:
            args_list[1:1] = self.container_flags
        return [str(PODMAN), *self.global_flags, *args_list]

    def __call__(self, *args: str, timeout: float = 120, input: Optional[str] = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, input=input)

    def ok(self, *args: str) -> str:
        proc = self(*args)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr)
        return proc.stdout

    def close(self) -> None:
        """Remove every container of this store and the store, then the
        cgroups podman left under the parent."""
        subprocess.run(self.argv("rm", "-a", "-f", "-t", "0"), capture_output=True, timeout=120)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        left = self.cgroups.remove()
        assert not left, "podman left:\n  " + "\n  ".join(left)
