"""The filesystem that holds the ocirt root fills up: what still works.

A container that prints without end fills a small tmpfs mounted under the
test's own directory; ps, logs and inspect still answer, rm -f removes it,
and nothing is left behind.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time

from ocirt import native as _native

from .cli_support import Ocirt, reap_orphans
from .gates import GATE_TIMEOUT


def fill_up(root: str, log: str) -> None:
    """Wait until the filesystem at `root` is full, woken by the log's writes."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while True:
        size = os.stat(log).st_size
        if os.statvfs(root).f_bavail == 0:
            return
        assert time.monotonic() < deadline, f"{root} never filled up"
        _native.wait_change(log, max(0.0, deadline - time.monotonic()), known_size=size)


def test_a_full_filesystem_still_lists_shows_and_removes(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root, 0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", root], check=True)
    cli, flood = Ocirt(root), ""
    try:
        cli.ok("run", "-d", "--name", "other", "busybox", "sleep", "1000")
        flood = cli.ok("run", "-d", "--name", "flood", "busybox", "yes").strip()
        fill_up(root, os.path.join(root, "run", "containers", flood, "ctr.log"))

        ps = cli("ps", "-a", "--format", "json")
        assert (ps.returncode, ps.stderr) == (0, "")
        assert sorted((c["Names"][0], c["State"]) for c in json.loads(ps.stdout)) == [("flood", "running"), ("other", "running")]
        logs = cli("logs", "--tail", "2", "flood")
        assert (logs.returncode, logs.stderr, set(logs.stdout.split())) == (0, "", {"y"})
        inspect = cli("inspect", "--format", "{{.State.Status}}", "flood")
        assert (inspect.returncode, inspect.stdout, inspect.stderr) == (0, "running\n", "")
        assert os.statvfs(root).f_bavail == 0  # still full: nothing above wrote

        stop = cli("stop", "-t", "0", "other")  # it stops; recording that waits for room, and says so
        assert (stop.returncode, stop.stdout) == (0, "other\n") and "recorded once there is room" in stop.stderr, stop.stderr
        assert json.loads(cli.ok("inspect", "other"))[0]["State"]["Status"] == "exited"

        assert cli.ok("rm", "-f", "flood") == "flood\n"  # its log goes before its record
        assert os.statvfs(root).f_bavail > 0
        assert cli.ok("ps", "-a", "--format", "{{.Names}}") == "other\n"
        assert cli.ok("rm", "other") == "other\n"
        assert [os.listdir(os.path.join(root, d)) for d in ("bundles", "run/containers", "run/exits")] == [[], [], []]
    finally:
        try:
            if cli("rm", "-f", "-a").returncode != 0:  # as the review had to: stop the flood, empty the logs, then remove
                subprocess.run(["runc", "kill", flood, "KILL"], capture_output=True)
                for log in glob.glob(os.path.join(root, "run", "containers", "*", "ctr.log")):
                    os.truncate(log, 0)
                cli("rm", "-f", "-a")
            reap_orphans()
        finally:
            subprocess.run(["umount", root], check=True)
