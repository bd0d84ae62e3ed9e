"""The default root filesystem: the host's static busybox and its applets.

Built once per ocirt root directory and cached there, in a 0700 directory:
the tree is the read-only lower layer that every container gets its own
writable overlay on (see specgen.generate's `layer`), and no host user but
root reaches it. The build happens in a temporary directory renamed into
place, so a crash mid-build leaves no half-made root filesystem and
concurrent builders (one at a time, under a lock file) agree on one. A
cached tree is reused only if its stamp
(written last by the build) still describes its busybox: a tree without one
(an older ocirt's, which containers could write to) is rebuilt.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
from typing import Any, Dict, Optional

from .errors import OcirtError
from .layout import make_private_dirs, remove_tree

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
DIRS = ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "var", "run")
STAMP = ".ocirt-rootfs"  # beside the tree: the container never sees it
STAMP_VERSION = 2


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
    """The path of the busybox root filesystem under `cache_dir`, built if missing or untrusted."""
    dest = os.path.join(cache_dir, "busybox")
    stamp = os.path.join(cache_dir, STAMP)
    make_private_dirs(cache_dir)
    fd = os.open(os.path.join(cache_dir, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one builder at a time; the others then find its tree
        if not _stamp_matches(stamp, dest):
            _build(dest, stamp, cache_dir, busybox or find_busybox())
    finally:
        os.close(fd)
    return dest


def _build(dest: str, stamp: str, cache_dir: str, source: str) -> None:
    import subprocess  # only here, when the cache is built: not on every command's import
    import tempfile

    if os.path.lexists(dest):
        _discard(dest, cache_dir)
    work = tempfile.mkdtemp(prefix=".busybox-", dir=cache_dir)
    try:
        os.chmod(work, 0o755)  # it is / inside the container: others need to get through
        for d in DIRS:
            os.mkdir(os.path.join(work, d), 0o755)
        os.chmod(os.path.join(work, "tmp"), 0o1777)
        shutil.copyfile(source, os.path.join(work, "bin", "busybox"))
        os.chmod(os.path.join(work, "bin", "busybox"), 0o755)
        listed = subprocess.run([source, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in listed:
            if applet != "busybox":
                os.symlink("busybox", os.path.join(work, "bin", applet))
        for name, text in (("passwd", PASSWD), ("group", GROUP)):
            with open(os.path.join(work, "etc", name), "w") as f:
                f.write(text)
        os.rename(work, dest)
        _write_stamp(stamp, dest)
    except (OSError, subprocess.CalledProcessError) as e:
        raise OcirtError(f"cannot build the busybox root filesystem in {dest}: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _describe(dest: str) -> Optional[Dict[str, Any]]:
    """What the stamp holds for the tree at `dest`: its busybox, as it must be."""

    try:
        st = os.lstat(os.path.join(dest, "bin", "busybox"))
        top = os.lstat(dest)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o7022 or not stat.S_ISDIR(top.st_mode):
        return None  # not a plain root-owned file anyone else could change, or setuid: not ours
    return {"version": STAMP_VERSION, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "dir_ino": top.st_ino}


def _write_stamp(stamp: str, dest: str) -> None:
    described = _describe(dest)
    if described is None:
        raise OcirtError(f"the busybox root filesystem just built in {dest} does not look as built")
    tmp = f"{stamp}.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(described, f)
    os.rename(tmp, stamp)


def _stamp_matches(stamp: str, dest: str) -> bool:
    try:
        with open(stamp) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return False
    return bool(recorded == _describe(dest))


def _discard(dest: str, cache_dir: str) -> None:
    """Move an untrusted tree out of the way (atomically, for containers that may
    still run on it), then remove it."""
    import tempfile  # rarely needed: not on every command's import

    stale = tempfile.mkdtemp(prefix=".stale-", dir=cache_dir)
    os.rename(dest, os.path.join(stale, "busybox"))
    remove_tree(stale)  # untrusted: never followed through a link
