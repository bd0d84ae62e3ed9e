"""The default root filesystem: the host's static busybox and its applets.

Built once per ocirt root directory and cached there. The build happens in
a temporary directory renamed into place, so a crash mid-build leaves no
half-made root filesystem and concurrent builders agree on one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Optional

from .errors import OcirtError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
DIRS = ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run")


def find_busybox() -> str:
    """A statically linked busybox on this host (Debian's busybox-static)."""
    for path in (shutil.which("busybox"), *BUSYBOX_CANDIDATES):
        if path and os.access(path, os.X_OK) and _is_static(path):
            return path
    raise OcirtError("no static busybox found: install Debian's busybox-static (apt-get install busybox-static)")


def _is_static(path: str) -> bool:
    # A static ELF has no PT_INTERP: its program headers name no interpreter.
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return head[:4] == b"\x7fELF" and b"/ld-linux" not in head and b"ld.so" not in head


def busybox_rootfs(cache_dir: str, busybox: Optional[str] = None) -> str:
    """The path of the busybox root filesystem under `cache_dir`, built if missing."""
    dest = os.path.join(cache_dir, "busybox")
    if os.path.isdir(dest):
        return dest
    os.makedirs(cache_dir, exist_ok=True)
    source = busybox or find_busybox()
    work = tempfile.mkdtemp(prefix=".busybox-", dir=cache_dir)
    try:
        os.chmod(work, 0o755)  # it is / inside the container: others need to get through
        for d in DIRS:
            os.mkdir(os.path.join(work, d))
        os.chmod(os.path.join(work, "tmp"), 0o1777)
        shutil.copy2(source, os.path.join(work, "bin", "busybox"))
        listed = subprocess.run([source, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in listed:
            if applet != "busybox":
                os.symlink("busybox", os.path.join(work, "bin", applet))
        with open(os.path.join(work, "etc", "passwd"), "w") as f:
            f.write(PASSWD)
        with open(os.path.join(work, "etc", "group"), "w") as f:
            f.write(GROUP)
        try:
            os.rename(work, dest)
        except OSError:
            if not os.path.isdir(dest):  # another builder did not win either
                raise
    except (OSError, subprocess.CalledProcessError) as e:
        raise OcirtError(f"cannot build the busybox root filesystem in {dest}: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
