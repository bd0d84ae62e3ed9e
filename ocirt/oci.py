"""The OCI runtime command line (runc and compatible), one method per verb.

Modelled on go-runc: `OCIRuntime` holds the global flags, each verb builds
its argv with a pure `*_args` method that tests check without running
anything, and a failing command raises RuntimeCommandError carrying argv,
exit status and stderr.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Dict, List, Optional

from .errors import ContainerNotFound, RuntimeCommandError

# Substrings of runc's stderr that mean "no such container".
_NOT_FOUND = ("does not exist", "not found", "no such")


class OCIRuntime:
    """A runtime binary with its global flags (`--root`, `--systemd-cgroup`)."""

    def __init__(self, path: str, *, root: Optional[str] = None, systemd_cgroup: bool = False) -> None:
        self.path = path
        self.root = root
        self.systemd_cgroup = systemd_cgroup

    def global_args(self) -> List[str]:
        args = [self.path]
        if self.root:
            args += ["--root", self.root]
        if self.systemd_cgroup:
            args.append("--systemd-cgroup")
        return args

    # argv builders: pure, no side effects

    def start_args(self, cid: str) -> List[str]:
        return self.global_args() + ["start", cid]

    def kill_args(self, cid: str, sig: int, all_processes: bool = False) -> List[str]:
        return self.global_args() + ["kill"] + (["--all"] if all_processes else []) + [cid, str(sig)]

    def pause_args(self, cid: str) -> List[str]:
        return self.global_args() + ["pause", cid]

    def resume_args(self, cid: str) -> List[str]:
        return self.global_args() + ["resume", cid]

    def delete_args(self, cid: str, force: bool = False) -> List[str]:
        return self.global_args() + ["delete"] + (["--force"] if force else []) + [cid]

    def state_args(self, cid: str) -> List[str]:
        return self.global_args() + ["state", cid]

    # verbs

    def start(self, cid: str) -> None:
        self.run(self.start_args(cid))

    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        self.run(self.kill_args(cid, sig, all_processes))

    def pause(self, cid: str) -> None:
        self.run(self.pause_args(cid))

    def resume(self, cid: str) -> None:
        self.run(self.resume_args(cid))

    def delete(self, cid: str, force: bool = False) -> None:
        self.run(self.delete_args(cid, force))

    def state(self, cid: str) -> Dict[str, Any]:
        """`runtime state`: a dict with at least `status`; ContainerNotFound if unknown."""
        argv = self.state_args(cid)
        try:
            out = self.run(argv)
        except RuntimeCommandError as e:
            if is_not_found(e):
                raise ContainerNotFound(f"the runtime has no container {cid!r}") from e
            raise
        try:
            state = json.loads(out)
        except ValueError as e:
            raise RuntimeCommandError(argv, 0, f"unparsable state output {out[:200]!r}") from e
        if not isinstance(state, dict) or "status" not in state:
            raise RuntimeCommandError(argv, 0, f"state output without status: {out[:200]!r}")
        return state

    def run(self, argv: List[str]) -> str:
        """Run the runtime with `argv`, its stdin on /dev/null; return stdout."""
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, close_fds=True)
        except OSError as e:
            raise RuntimeCommandError(argv, -1, f"cannot run {argv[0]}: {e}") from e
        if proc.returncode != 0:
            raise RuntimeCommandError(argv, proc.returncode, proc.stderr.decode(errors="replace"))
        return proc.stdout.decode(errors="replace")


def is_not_found(error: RuntimeCommandError) -> bool:
    """True if the runtime failed because the container does not exist."""
    text = error.stderr.lower()
    return any(s in text for s in _NOT_FOUND)
