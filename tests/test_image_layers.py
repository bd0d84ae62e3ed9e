"""Layer unpacking (ocirt.images.layers) on layers the tests write: what a
layer holds lands as it should, and a hostile layer is refused with
nothing written outside its directory and no half layer left behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from typing import Callable, List, Optional

import pytest

from ocirt import ImageError
from ocirt.images.layers import short_name, unpack


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields: object) -> Callable[[tarfile.TarFile], None]:
    """One tar entry, added to a TarFile when called."""

    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.mtime = 1_000_000_000
        for k, v in fields.items():
            setattr(info, k, v)
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    return add


def layer(tmp_path, entries: List[Callable[[tarfile.TarFile], None]], *, compress: bool = True, name: str = "blob"):
    """(blob path, digest, diff_id) of a layer holding `entries`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for add in entries:
            add(tar)
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes) if compress else tar_bytes
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path), "sha256:" + hashlib.sha256(blob).hexdigest(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


@pytest.fixture
def outside(tmp_path):
    """A directory a hostile layer tries to reach: it must stay as it is."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "keep").write_text("kept")
    return d


def refused(tmp_path, outside, entries, match: str, digest: Optional[str] = None) -> None:
    blob, good_digest, diff_id = layer(tmp_path, entries)
    dest = tmp_path / "layers" / "l"
    dest.parent.mkdir(exist_ok=True)
    with pytest.raises(ImageError, match=match):
        unpack(blob, str(dest), digest=digest or good_digest, diff_id=diff_id)
    assert os.listdir(dest.parent) == []  # no layer, no half layer
    assert sorted(os.listdir(outside)) == ["keep"] and (outside / "keep").read_text() == "kept"


def test_a_layer_lands_as_it_says_with_owners_modes_links_and_whiteouts(tmp_path):
    blob, digest, diff_id = layer(
        tmp_path,
        [
            entry("./", tarfile.DIRTYPE),
            entry("bin", tarfile.DIRTYPE, mode=0o755),
            entry("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
            entry("bin/alias", tarfile.LNKTYPE, linkname="bin/tool"),
            entry("etc/motd", data=b"hi\n", uid=1000, gid=1000, mode=0o600),  # its directory comes later, or never
            entry("etc/link", tarfile.SYMTYPE, linkname="/etc/motd"),
            entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
            entry("etc/gone/.wh..wh..opq"),
            entry("etc/.wh.shadow"),
            entry("attrs", data=b"x", pax_headers={"SCHILY.xattr.user.note": "kept"}),
        ],
    )
    dest = tmp_path / "l"
    unpack(blob, str(dest), digest=digest, diff_id=diff_id)
    tool = os.stat(dest / "bin" / "tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755 and (dest / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    assert os.stat(dest / "bin" / "alias").st_ino == tool.st_ino
    motd = os.stat(dest / "etc" / "motd")
    assert (motd.st_uid, motd.st_gid, stat.S_IMODE(motd.st_mode)) == (1000, 1000, 0o600)
    assert os.readlink(dest / "etc" / "link") == "/etc/motd"
    assert stat.S_ISFIFO(os.lstat(dest / "run" / "fifo").st_mode)
    assert os.getxattr(dest / "etc" / "gone", "trusted.overlay.opaque") == b"y"
    shadow = os.lstat(dest / "etc" / "shadow")
    assert stat.S_ISCHR(shadow.st_mode) and shadow.st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "attrs", "user.note") == b"kept"
    assert os.stat(dest / "bin").st_mtime == 1_000_000_000
    assert sorted(os.listdir(tmp_path)) == ["blob", "l"]


def test_an_uncompressed_layer_and_a_later_entry_replacing_an_earlier_one(tmp_path, outside):
    blob, digest, diff_id = layer(
        tmp_path,
        [
            entry("a", tarfile.SYMTYPE, linkname=str(outside / "keep")),
            entry("a", data=b"mine"),  # replaces the link: never written through it
            entry("d/x", data=b"1"),
            entry("d", data=b"now a file"),
        ],
        compress=False,
    )
    dest = tmp_path / "l"
    unpack(blob, str(dest), digest=digest, diff_id=diff_id)
    assert (dest / "a").read_bytes() == b"mine" and not os.path.islink(dest / "a")
    assert (dest / "d").read_bytes() == b"now a file"
    assert (outside / "keep").read_text() == "kept"


def test_a_layer_inflating_far_past_its_blob_lands_byte_for_byte(tmp_path):
    """A file of zeros (its blob a thousandth of its size), a random one
    larger than the reader's chunk and many small ones after: what the
    reader holds back and the gzip input it has not yet used both carry over."""
    random_bytes = os.urandom(300_000)
    small = {f"s/{i}": os.urandom(i * 37 % 5000) for i in range(200)}
    blob, digest, diff_id = layer(
        tmp_path, [entry("zeros", data=bytes(8 << 20)), entry("random", data=random_bytes), entry("s", tarfile.DIRTYPE)]
        + [entry(name, data=data) for name, data in small.items()],
    )  # fmt: skip
    assert os.path.getsize(blob) < 1 << 20
    dest = tmp_path / "l"
    unpack(blob, str(dest), digest=digest, diff_id=diff_id)
    assert (dest / "zeros").read_bytes() == bytes(8 << 20)
    assert (dest / "random").read_bytes() == random_bytes
    assert {f"s/{name}": (dest / "s" / name).read_bytes() for name in os.listdir(dest / "s")} == small


def up(outside) -> Callable[[tarfile.TarFile], None]:
    """A symlink `up` to the directory outside."""
    return entry("up", tarfile.SYMTYPE, linkname=str(outside))


@pytest.mark.parametrize(
    "entries, match",
    [
        (lambda o: [entry("/etc/evil", data=b"x")], "absolute path"),
        (lambda o: [entry("../evil", data=b"x")], r"climbs out with '\.\.'"),
        (lambda o: [entry("a/../../evil", data=b"x")], r"climbs out"),
        (lambda o: [up(o), entry("up/evil", data=b"x")], "written through 'up'"),
        (lambda o: [up(o), entry("up/keep", tarfile.LNKTYPE, linkname="x")], "written through 'up'"),
        (lambda o: [entry("hard", tarfile.LNKTYPE, linkname="/etc/passwd")], "absolute path"),
        (lambda o: [entry("hard", tarfile.LNKTYPE, linkname="../outside/keep")], "climbs out"),
        (lambda o: [up(o), entry("hard", tarfile.LNKTYPE, linkname="up/keep")], "written through 'up'"),
        (lambda o: [entry("hard", tarfile.LNKTYPE, linkname="not/there")], "does not hold"),
        (lambda o: [entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)], "device node"),
        (lambda o: [entry("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1)], "device node"),
        (lambda o: [entry("f", data=b"x", pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"})], "trusted.overlay.opaque"),
        (lambda o: [entry(".wh.", data=b"")], "whites out nothing"),
    ],
)
def test_a_hostile_layer_is_refused_and_leaves_nothing(tmp_path, outside, entries, match):
    refused(tmp_path, outside, entries(outside), match)


def test_a_layer_that_is_not_what_the_image_says_is_refused(tmp_path, outside):
    refused(tmp_path, outside, [entry("f", data=b"x")], "not sha256:0+ as the image says", digest="sha256:" + "0" * 64)
    blob, digest, _ = layer(tmp_path, [entry("f", data=b"x")])
    dest = tmp_path / "layers" / "l"
    with pytest.raises(ImageError, match="the uncompressed layer is sha256:"):
        unpack(blob, str(dest), digest=digest, diff_id="sha256:" + "1" * 64)
    assert os.listdir(dest.parent) == []


def test_a_truncated_or_zstd_layer_is_refused(tmp_path):
    blob, digest, diff_id = layer(tmp_path, [entry("f", data=os.urandom(100_000))])
    data = open(blob, "rb").read()
    (tmp_path / "cut").write_bytes(data[: len(data) // 2])
    (tmp_path / "layers").mkdir()
    with pytest.raises(ImageError):
        unpack(str(tmp_path / "cut"), str(tmp_path / "layers" / "l"), digest=digest, diff_id=diff_id)
    (tmp_path / "zstd").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    with pytest.raises(ImageError, match="zstd"):
        unpack(str(tmp_path / "zstd"), str(tmp_path / "layers" / "l"), digest=digest, diff_id=diff_id)
    assert os.listdir(tmp_path / "layers") == []


def test_short_names_are_short_and_refuse_what_is_not_a_digest():
    assert short_name("sha256:" + "ab" * 32) == "ab" * 10
    for bad in ("sha512:" + "a" * 64, "sha256:../../etc", "sha256:" + "A" * 64, "sha256:abc"):
        with pytest.raises(ImageError):
            short_name(bad)
