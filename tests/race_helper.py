"""One side of a race: open the root, say "ready", wait for "go", act, report.

    python -m tests.race_helper ROOT VERB NAME [BUNDLE]

Prints "ready" once it holds the container (or, for create, the bundle),
reads one byte from stdin as the starting shot, then prints one JSON line
with the outcome: {"ok": true, ...} or {"ok": false, "error": <class name>}.

With OCIRT_TEST_NO_LOCK=1 the per-container lock excludes nothing (the
record is still loaded and saved): the race tests show that they fail then.
A stop kills with the runtime's `kill --all`, not cgroup.kill, so that a
gated runtime holds it there.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Optional

import ocirt
from ocirt.cgroups import CgroupfsGroup
from ocirt.lock import ContainerLock, Hold
from ocirt.steps import Steps


def disable_the_lock() -> None:
    def hold(self: ContainerLock, *, blocking: bool = True) -> Steps[Optional[Hold]]:
        depth = self.__dict__.setdefault("unlocked_depth", [0])
        depth[0] += 1

        def release() -> None:
            depth[0] -= 1

        return Hold(release, outermost=self._store is not None and depth[0] == 1)
        yield  # a step function that never waits

    ContainerLock.hold = hold  # type: ignore[method-assign]


def main() -> None:
    if os.environ.get("OCIRT_TEST_NO_LOCK") == "1":
        disable_the_lock()
    CgroupfsGroup.kill_all = lambda self: False  # type: ignore[method-assign]
    root, verb, name = sys.argv[1:4]
    rt = ocirt.Runtime.open(root, **({"runtime_path": os.environ["RACE_RUNTIME"]} if "RACE_RUNTIME" in os.environ else {}))
    c = rt.get(name) if verb != "create" else None
    print("ready", flush=True)
    os.read(0, 1)
    try:
        if verb == "create":
            c = rt.create(os.urandom(8).hex(), sys.argv[4], name=name)
            result = {"ok": True, "id": c.id}
        elif verb == "stop":
            c.stop(timeout=0)
            result = {"ok": True, "exit_code": c.state.exit_code, "finished_at": c.state.finished_at.isoformat()}
        elif verb == "rm":
            c.delete(force=True)
            result = {"ok": True}
        else:
            raise SystemExit(f"unknown verb {verb}")
    except Exception as e:  # an error that is no OcirtError is reported too: the test then fails on it
        traceback.print_exc()
        result = {"ok": False, "error": type(e).__name__, "message": str(e)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
