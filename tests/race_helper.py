"""One side of a race: open the root, say "ready", wait for "go", act, report.

    python -m tests.race_helper ROOT VERB NAME [BUNDLE]

Prints "ready" once it holds the container (or, for create, the bundle),
reads one byte from stdin as the starting shot, then prints one JSON line
with the outcome.
"""

from __future__ import annotations

import json
import os
import sys

import ocirt


def main() -> None:
    root, verb, name = sys.argv[1:4]
    rt = ocirt.Runtime.open(root)
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
            try:
                c.delete(force=True)
            except ocirt.ContainerNotFound:
                pass  # the other side removed it first: removed all the same
            result = {"ok": True}
        else:
            raise SystemExit(f"unknown verb {verb}")
    except ocirt.OcirtError as e:
        result = {"ok": False, "error": type(e).__name__, "message": str(e)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
