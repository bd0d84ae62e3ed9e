"""Image layers unpacked once each, as overlayfs lower directories.

A layer blob (a tar, gzip-compressed or not) is unpacked into a directory
of its own named after its diff_id, checked while it is read: the blob's
digest (what the manifest names) and the uncompressed tar's (the diff_id
the config names). It is unpacked under a temporary name and renamed once
whole, so a failed or killed pull leaves no half layer behind.

A layer is untrusted input. Nothing it holds is written outside its own
directory: every path is walked one component at a time without following
a link (a symlink an earlier entry made never leads a later one out), and
these are refused with ImageError: absolute paths and `..`, hard links to
anything outside the layer, device nodes, `trusted.*` extended attributes.
Whiteouts become overlayfs's own, as containers-storage makes them:
`.wh.NAME` a 0/0 character device NAME, `.wh..wh..opq` the attribute
`trusted.overlay.opaque=y` on its directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import zlib
from typing import BinaryIO, Dict, List, Optional

from ..errors import ImageError
from ..layout import remove_tree

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KEPT_XATTRS = ("user.", "security.capability")  # others (security.selinux, ...) belong to the host that made the layer
_CHUNK = 64 << 10  # under malloc's mmap threshold: no mapping made and unmade per chunk


def unpack(blob: str, dest: str, *, digest: str, diff_id: str) -> None:
    """Unpack the layer `blob` into the new directory `dest` (its parent
    must exist): ImageError when the blob is not `digest`, its tar is not
    `diff_id` ("sha256:<hex>" each), or an entry is refused; nothing is
    left at `dest` or beside it then."""
    tmp = f"{dest}.unpacking-{os.getpid()}"
    remove_tree(tmp)  # a pull killed before us
    os.mkdir(tmp, 0o755)
    try:
        with open(blob, "rb") as f:
            stream = _Checked(f, digest, diff_id)
            try:
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    _Unpacker(tmp).extract_all(tar)
            except (tarfile.TarError, EOFError) as e:
                raise ImageError(f"layer {digest} is not a whole tar archive: {e}") from e
            stream.finish()
        os.rename(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        raise


class _Checked:
    """A layer blob read as its tar stream: decompressed (gzip) as read,
    with the blob's and the tar's digests checked at the end."""

    def __init__(self, f: BinaryIO, digest: str, diff_id: str) -> None:
        self._f = f
        self._digest, self._diff_id = digest, diff_id
        self._blob_hash, self._tar_hash = hashlib.sha256(), hashlib.sha256()
        head = f.read(4)
        f.seek(0)
        if head.startswith(ZSTD_MAGIC):
            raise ImageError("a zstd-compressed layer: ocirt unpacks tar and gzip layers (pull through skopeo to have it recompressed)")
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if head.startswith(GZIP_MAGIC) else None
        self._pending = b""
        self._at = 0  # how much of _pending was read
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._pending) - self._at < size):
            self._fill()
        end = len(self._pending) if size < 0 else self._at + size
        out = self._pending[self._at : end]
        self._at += len(out)
        return out

    def _fill(self) -> None:
        """Add at most _CHUNK bytes of tar to what is pending. What was
        read is dropped here, not on each read: the tar reader asks for a
        record at a time, and copying the rest of the buffer on each would
        move every byte many times over (each copy its own mapping where
        malloc's thresholds are fixed, as in a Dask worker)."""
        if self._inflate is not None and self._inflate.unconsumed_tail:
            data = self._inflate.unconsumed_tail
        else:
            data = self._f.read(_CHUNK)
            self._blob_hash.update(data)
        if self._inflate is None:
            out = data
        else:
            try:
                out = self._inflate.decompress(data, _CHUNK) if data else self._inflate.flush()
            except zlib.error as e:
                raise ImageError(f"layer {self._digest} is not valid gzip: {e}") from e
            if self._inflate.eof and self._inflate.unused_data.strip(b"\0"):
                raise ImageError(f"layer {self._digest} has data after its gzip stream")
        self._tar_hash.update(out)
        self._pending = self._pending[self._at :] + out
        self._at = 0
        if not data:
            self._eof = True

    def finish(self) -> None:
        """Read what the tar reader left (its end blocks) and check both digests."""
        while not self._eof:
            self._at = len(self._pending)
            self._fill()
        if self._inflate is not None and not self._inflate.eof:
            raise ImageError(f"layer {self._digest} ends inside its gzip stream")
        for what, want, got in (("blob", self._digest, self._blob_hash), ("uncompressed layer", self._diff_id, self._tar_hash)):
            if want != "sha256:" + got.hexdigest():
                raise ImageError(f"the {what} is sha256:{got.hexdigest()}, not {want} as the image says: corrupt or tampered with")


class _Unpacker:
    """Writes tar entries under `root`, never outside it (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._dir_times: Dict[str, tarfile.TarInfo] = {}

    def extract_all(self, tar: tarfile.TarFile) -> None:
        root = os.open(self.root, _DIR)
        try:
            for member in tar:
                self._extract(tar, member, root)
            for path, member in sorted(self._dir_times.items(), key=lambda kv: -kv[0].count("/")):
                self._times(root, path, member)  # last: entries below a directory change its times
        finally:
            os.close(root)

    def _extract(self, tar: tarfile.TarFile, m: tarfile.TarInfo, root: int) -> None:
        parts = _parts(m.name)
        if not parts:
            if m.isdir():
                return  # "./": the layer's root itself
            raise ImageError(f"layer entry {m.name!r} names no file")
        parent = self._open_parent(root, parts[:-1], m.name)
        try:
            name = parts[-1]
            if name == OPAQUE:
                os.setxattr(f"/proc/self/fd/{parent}", "trusted.overlay.opaque", b"y")
                return
            if name.startswith(WHITEOUT):
                hidden = name[len(WHITEOUT) :]
                if not hidden or hidden in (".", ".."):
                    raise ImageError(f"layer entry {m.name!r} whites out nothing")
                _replace(parent, hidden)
                os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent)
                return
            self._make(tar, m, parent, name, root)
        finally:
            if parent != root:
                os.close(parent)

    def _open_parent(self, root: int, dirs: List[str], shown: str) -> int:
        """The directory at `dirs` below root, made where missing, each step
        opened without following a link: ImageError if one is not a directory."""
        fd = root
        for part in dirs:
            try:
                below = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                below = os.open(part, _DIR, dir_fd=fd)
            except OSError as e:
                if fd != root:
                    os.close(fd)
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ImageError(f"layer entry {shown!r} would be written through {part!r}, which is not a directory") from None
                raise
            if fd != root:
                os.close(fd)
            fd = below
        return fd

    def _make(self, tar: tarfile.TarFile, m: tarfile.TarInfo, parent: int, name: str, root: int) -> None:
        mode = m.mode & 0o7777
        if m.isdir():
            try:
                os.mkdir(name, mode, dir_fd=parent)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(name, dir_fd=parent).st_mode):
                    _replace(parent, name)
                    os.mkdir(name, mode, dir_fd=parent)
            self._dir_times["/".join(_parts(m.name))] = m
        elif m.isreg():
            _replace(parent, name)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
            try:
                source = tar.extractfile(m)
                assert source is not None
                while True:
                    chunk = source.read(_CHUNK)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        elif m.issym():
            _replace(parent, name)
            os.symlink(m.linkname, name, dir_fd=parent)  # resolved in the container, never followed here
        elif m.islnk():
            target = _parts(m.linkname)
            if not target:
                raise ImageError(f"layer entry {m.name!r} is a hard link to {m.linkname!r}, outside the layer")
            source_dir = self._open_parent(root, target[:-1], m.name)
            try:
                if not os.path.lexists(f"/proc/self/fd/{source_dir}/{target[-1]}"):
                    raise ImageError(f"layer entry {m.name!r} is a hard link to {m.linkname!r}, which the layer does not hold")
                _replace(parent, name)
                os.link(target[-1], name, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                if source_dir != root:
                    os.close(source_dir)
            return  # a hard link shares its target's owner, mode and times
        elif m.isfifo():
            _replace(parent, name)
            os.mkfifo(name, mode, dir_fd=parent)
        else:
            raise ImageError(f"layer entry {m.name!r} is a device node (or of a type ocirt does not unpack): refused")
        self._owner_and_attrs(parent, name, m, mode)
        if not m.isdir():
            self._times_at(parent, name, m)

    def _owner_and_attrs(self, parent: int, name: str, m: tarfile.TarInfo, mode: int) -> None:
        os.chown(name, m.uid, m.gid, dir_fd=parent, follow_symlinks=False)
        if m.issym():
            return
        os.chmod(name, mode, dir_fd=parent)  # after chown, which clears setuid bits
        for key, value in (m.pax_headers or {}).items():
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr.") :]
            if attr.startswith("trusted."):
                raise ImageError(f"layer entry {m.name!r} carries the extended attribute {attr!r}: refused")
            if attr.startswith(_KEPT_XATTRS):
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    os.setxattr(f"/proc/self/fd/{fd}", attr, value.encode("utf-8", "surrogateescape"))
                finally:
                    os.close(fd)

    def _times(self, root: int, path: str, m: tarfile.TarInfo) -> None:
        parts = path.split("/")
        try:
            parent = self._open_parent(root, parts[:-1], path)
        except ImageError:
            return  # a later entry made a level of it something else: those times are gone with it
        try:
            self._times_at(parent, parts[-1], m)
        finally:
            if parent != root:
                os.close(parent)

    @staticmethod
    def _times_at(parent: int, name: str, m: tarfile.TarInfo) -> None:
        mtime = int(m.mtime)
        os.utime(name, (mtime, mtime), dir_fd=parent, follow_symlinks=False)


def _parts(name: str) -> List[str]:
    """A tar entry's path as its components below the layer's root; ImageError
    for an absolute path or one with "..". Empty: the root itself."""
    if name.startswith("/"):
        raise ImageError(f"layer entry {name!r} has an absolute path: refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer entry {name!r} climbs out with '..': refused")
    return parts


def _replace(parent: int, name: str) -> None:
    """Make way for a new entry `name`: a later layer entry replaces an earlier
    one; a directory in the way goes with what is below it."""
    try:
        st = os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        error = remove_tree(f"/proc/self/fd/{parent}/{name}")
        if error:
            raise ImageError(f"cannot replace a directory in the layer: {error}")
    else:
        os.unlink(name, dir_fd=parent)


def short_name(diff_id: str) -> str:
    """The directory name of the layer `diff_id`: short, since overlayfs takes
    its lower directories in one page of mount options."""
    algorithm, _, hexdigest = diff_id.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise ImageError(f"{diff_id!r} is not a sha256 layer digest")
    return hexdigest[:20]


def layer_of(layers_dir: str, diff_id: str) -> Optional[str]:
    """The unpacked layer `diff_id` under `layers_dir`, if it is there."""
    path = os.path.join(layers_dir, short_name(diff_id))
    return path if os.path.isdir(path) else None
