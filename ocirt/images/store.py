"""The images of one ocirt root, under ROOT/images (0700: layers hold the
images' setuid files, which are nobody else's to run):

    layout/            one OCI image layout that skopeo copies every image into:
                       blobs shared between images, a pulled image tagged by its key
    layers/<short>     each layer unpacked once (see layers.py), shared by images
    images.json        the images held: name, digests, layers, config
    lock               flock(2)ed around every change: parallel copies into one
                       layout lose tags (containers/image#1028)

Pulls are skopeo copies (`docker://`, `oci:`, `oci-archive:`,
`docker-archive:`); the manifest and config are read back from the layout
and checked against their digests, and each layer is unpacked from its blob.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import ImageError, InvalidArgument
from ..layout import PRIVATE_DIR, read_small, remove_tree, write_private
from . import PULL_POLICIES, layers as layerfs
from .config import ImageConfig
from .reference import BUILTIN_NAMES, REF_NAME, Reference, parse

MAX_JSON = 4 << 20  # a manifest or config larger than this is not one
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",)


@dataclass(frozen=True)
class Image:
    """An image the store holds."""

    name: str
    digest: str  # its manifest's, as pulled into the layout
    id: str  # its config's digest (podman's image id)
    layers: List[str]  # diff_ids, base first
    config: ImageConfig = field(default_factory=ImageConfig)
    pulled_at: float = 0.0
    size: int = 0  # bytes of its layer blobs

    @property
    def builtin(self) -> bool:
        """Whether this is the built-in busybox (see builtin)."""
        return not self.digest

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name, "digest": self.digest, "id": self.id, "layers": list(self.layers),
            "config": self.config.to_dict(), "pulled_at": self.pulled_at, "size": self.size,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Image":
        return cls(
            str(d["name"]), str(d["digest"]), str(d["id"]), [str(x) for x in d["layers"]], ImageConfig.from_dict(d.get("config") or {}),
            float(d.get("pulled_at") or 0), int(d.get("size") or 0),
        )  # fmt: skip


def builtin(described: bool = False) -> Image:
    """The built-in image: the host's static busybox as a tree (see
    ocirt.rootfs), run offline, its command `sh` as a registry's busybox
    has it. It has no layers: a container of it is made on the busybox
    tree. `described`: with an id (the binary's digest), a size and a
    time, as `images` shows it (OcirtError without a static busybox)."""
    if not described:
        return Image(BUILTIN_NAMES[1], "", "", [], ImageConfig(cmd=["sh"]))
    from ..rootfs import find_busybox

    path = find_busybox()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    st = os.stat(path)
    return Image(BUILTIN_NAMES[1], "", "sha256:" + digest.hexdigest(), [], ImageConfig(cmd=["sh"]), st.st_mtime, st.st_size)


class ImageStore:
    """Pull, list and remove the images under `root`/images."""

    def __init__(self, root: str, skopeo: str = "skopeo") -> None:
        self.dir = os.path.join(root, "images")
        self.layout = os.path.join(self.dir, "layout")
        self.layers = os.path.join(self.dir, "layers")
        self._index = os.path.join(self.dir, "images.json")
        self._skopeo = skopeo

    # -- reading ------------------------------------------------------------

    def list(self) -> List[Image]:
        """Every image pulled, newest first (the built-in one is not pulled: see builtin)."""
        return sorted(self._load().values(), key=lambda i: -i.pulled_at)

    def get(self, ref: str) -> Image:
        """The image `ref` names (a reference, or an image id or its prefix of 12+); ImageError if not held."""
        if ref in BUILTIN_NAMES:
            return builtin()
        found = self._find(self._load(), ref)
        if found is None:
            raise ImageError(f"image {ref!r} is not in the store: pull it first")
        return found

    def config_blob(self, image: Image) -> Dict[str, Any]:
        """The image's whole config, as its blob holds it (checked against its digest); {} for the built-in one."""
        return {} if image.builtin else self._json_blob(image.id, "config")

    def lower_dirs(self, image: Image) -> List[str]:
        """The image's unpacked layers, topmost first (overlayfs's lowerdir order)."""
        dirs = []
        for diff_id in reversed(image.layers):
            path = layerfs.layer_of(self.layers, diff_id)
            if path is None:
                raise ImageError(f"layer {diff_id} of image {image.name} is missing from the store: pull the image again")
            dirs.append(path)
        return dirs

    # -- pulling --------------------------------------------------------------

    def pull(self, ref: str, *, policy: str = "missing", tls_verify: bool = True, authfile: Optional[str] = None) -> Image:
        """The image `ref` names, copied in and unpacked as `policy` says
        (podman's --pull: "missing" pulls only what is not held, "always"
        copies again, unpacking only new layers, "never" only looks).
        ImageError for a bad reference, a source that refuses or is not
        there, a corrupt blob: nothing of that pull is left behind."""
        if policy not in PULL_POLICIES:
            raise InvalidArgument(f"pull policy must be one of {', '.join(PULL_POLICIES)}, not {policy!r}")
        if authfile is not None and not os.path.isfile(authfile):
            raise InvalidArgument(f"authfile {authfile!r} is not a file")
        if ref in BUILTIN_NAMES:
            return builtin()
        parsed = parse(ref)
        if policy != "always":
            held = self._find(self._load(), ref)
            if held is not None and all(layerfs.layer_of(self.layers, d) for d in held.layers):
                return held
        if policy == "never":
            raise ImageError(f"image {ref!r} is not in the store, and the pull policy is never")
        if parsed.source is None:
            raise ImageError(f"image {ref!r} is not in the store and names no registry to pull it from (give HOST/REPO:TAG)")
        with self._locked():
            images = self._load()
            held = self._find(images, ref) if policy == "missing" else None
            if held is not None and all(layerfs.layer_of(self.layers, d) for d in held.layers):
                return held  # pulled by another while this one waited for the lock
            return self._fetch(parsed, images, tls_verify, authfile)

    def load(self, path: str) -> List[Image]:
        """Every image of the archive at `path` (a docker-archive, as `docker
        save` writes, or an oci-archive), named by the tags it carries (see
        archive.references), copied in and unpacked; an image held under the
        same name is replaced. ImageError as pull: then nothing of that image is left."""
        from .archive import references

        refs = references(path)
        with self._locked():
            return [self._fetch(ref, self._load(), True, None, "load") for ref in refs]

    def _fetch(self, ref: Reference, images: Dict[str, Image], tls_verify: bool, authfile: Optional[str], verb: str = "pull") -> Image:
        """Copy `ref` in, unpack its new layers and record it in `images`; under the lock."""
        try:
            self._copy(ref, tls_verify, authfile, verb)
            image = self._read(ref)
            blobs = zip(image.layers, self._layer_blobs(image), strict=True)
            self._unpack_all({d: digest for d, (digest, _) in blobs if layerfs.layer_of(self.layers, d) is None})
        except BaseException:
            self._prune(images)  # what the copy brought: its tag, its blobs, layers no held image uses
            raise
        images[ref.key] = image
        self._save(images)
        self._prune(images)  # what an image of that name held before, where no other image uses it
        return image

    def _unpack_all(self, missing: Dict[str, str]) -> None:
        """Unpack each layer of `missing` ({diff_id: blob digest}), a thread a core:
        making files is the kernel's work, which threads share out; on any
        failure the others are stopped or finished before the error goes on."""
        def unpack(diff_id: str) -> None:
            digest = missing[diff_id]
            layerfs.unpack(self._blob(digest), os.path.join(self.layers, layerfs.short_name(diff_id)), digest=digest, diff_id=diff_id)

        if len(missing) < 2:
            for diff_id in missing:
                unpack(diff_id)
            return
        pool = ThreadPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1), thread_name_prefix="ocirt-unpack")
        try:
            for done in [pool.submit(unpack, diff_id) for diff_id in missing]:
                done.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # no thread still writes when the caller prunes

    def save(self, ref: str, path: str) -> Image:
        """Write the image `ref` names to `path` as an oci-archive, tagged by
        its name where that is a registry's or a short one (what `load` reads
        back; else unnamed); the file appears whole or not at all.
        ImageError if it is not held (or built in)."""
        image = self.get(ref)
        if image.builtin:
            raise ImageError("the built-in image (the host's busybox) has no layers to save: pull or load an image")
        dest = os.path.abspath(path)
        tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.{os.getpid()}.tmp")
        with self._locked():
            try:
                parsed = parse(image.name)
                named = parsed.source is None or parsed.source.startswith("docker://")  # an archive's or layout's name is no tag
                dest_ref = f"oci-archive:{tmp}" + (f":{image.name}" if named else "")
                self._skopeo_copy([f"oci:{self.layout}:{parsed.key}", dest_ref], image.name, "save")
                os.rename(tmp, dest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return image

    def prune(self, keep: "set[str]") -> List[Image]:
        """Remove every image whose id is not in `keep`, with its layers and
        blobs no kept image uses, and whatever no image uses; the images removed."""
        with self._locked():
            images = self._load()
            gone = [i for i in images.values() if i.id not in keep]
            kept = {k: i for k, i in images.items() if i.id in keep}
            self._save(kept)
            self._prune(kept)
        return gone

    def _copy(self, ref: Reference, tls_verify: bool, authfile: Optional[str], verb: str) -> None:
        assert ref.source is not None
        argv = ["--remove-signatures"]
        if ref.source.startswith("docker://"):
            argv.append(f"--src-tls-verify={'true' if tls_verify else 'false'}")
            if authfile is not None:
                argv += ["--src-authfile", authfile]
        self._skopeo_copy([*argv, ref.source, f"oci:{self.layout}:{ref.key}"], ref.name, verb)

    def _skopeo_copy(self, argv: List[str], name: str, verb: str) -> None:
        try:
            proc = subprocess.run([self._skopeo, "copy", "--quiet", *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
        except FileNotFoundError as e:
            raise ImageError(f"skopeo is not installed ({self._skopeo}): it copies every image") from e
        if proc.returncode != 0:
            said = proc.stderr.strip().splitlines()
            raise ImageError(f"cannot {verb} {name}: {said[-1] if said else f'skopeo exited with {proc.returncode}'}")

    def _read(self, ref: Reference) -> Image:
        """The image tagged `ref.key` in the layout, its manifest and config checked against their digests."""
        index = json.loads(read_small(os.path.join(self.layout, "index.json"), MAX_JSON))
        found = [m for m in index.get("manifests") or () if (m.get("annotations") or {}).get(REF_NAME) == ref.key]
        if len(found) != 1:
            raise ImageError(f"the layout holds no single manifest for {ref.name} after the copy")
        digest = str(found[0].get("digest"))
        manifest = self._json_blob(digest, "manifest")
        if manifest.get("mediaType", MANIFEST_TYPES[0]) not in MANIFEST_TYPES:
            raise ImageError(f"{ref.name}: a manifest of type {manifest.get('mediaType')!r}, not an image manifest")
        config_digest = str((manifest.get("config") or {}).get("digest"))
        config = self._json_blob(config_digest, "config")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        blobs = manifest.get("layers") or []
        if not isinstance(diff_ids, list) or len(diff_ids) != len(blobs):
            raise ImageError(f"{ref.name}: its config names {len(diff_ids)} layers, its manifest {len(blobs)}")
        for d in diff_ids:
            layerfs.short_name(str(d))  # a digest, or ImageError
        size = sum(int(b.get("size") or 0) for b in blobs)
        return Image(ref.name, digest, config_digest, [str(d) for d in diff_ids], ImageConfig.from_image(config), time.time(), size)

    def _layer_blobs(self, image: Image) -> List[Tuple[str, int]]:
        manifest = self._json_blob(image.digest, "manifest")
        return [(str(b.get("digest")), int(b.get("size") or 0)) for b in manifest.get("layers") or ()]

    def _json_blob(self, digest: str, what: str) -> Dict[str, Any]:
        data = read_small(self._blob(digest), MAX_JSON, regular_only=True)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"the image's {what} blob is not {digest}: corrupt")
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ImageError(f"the image's {what} is not a JSON object")
        return value

    def _blob(self, digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise ImageError(f"{digest!r} is not a sha256 digest")
        return os.path.join(self.layout, "blobs", "sha256", hexdigest)

    # -- removing -------------------------------------------------------------

    def remove(self, ref: str) -> Image:
        """Forget the image `ref` names, and remove its layers and blobs that
        no other image uses. ImageError if it is not held, or built in."""
        if ref in BUILTIN_NAMES:
            raise ImageError("the built-in image (the host's busybox) cannot be removed")
        with self._locked():
            images = self._load()
            image = self._find(images, ref)
            if image is None:
                raise ImageError(f"image {ref!r} is not in the store")
            del images[next(k for k, v in images.items() if v is image)]
            self._save(images)
            self._prune(images)
        return image

    def _prune(self, kept: Dict[str, Image]) -> None:
        """Remove layers no held image uses, and the layout's tags and blobs of images no longer held."""
        used = {layerfs.short_name(d) for i in kept.values() for d in i.layers}
        if os.path.isdir(self.layers):
            for name in os.listdir(self.layers):
                if name not in used:
                    remove_tree(os.path.join(self.layers, name))
        keys = set(kept)
        index_path = os.path.join(self.layout, "index.json")
        if os.path.exists(index_path):
            index = json.loads(read_small(index_path, MAX_JSON))
            index["manifests"] = [m for m in index.get("manifests") or () if (m.get("annotations") or {}).get(REF_NAME) in keys]
            write_private(index_path + ".tmp", json.dumps(index).encode())
            os.rename(index_path + ".tmp", index_path)
        live = set()
        for image in kept.values():
            live.add(image.digest)
            live.add(image.id)
            live.update(d for d, _ in self._layer_blobs(image))
        blobs = os.path.join(self.layout, "blobs", "sha256")
        for name in os.listdir(blobs) if os.path.isdir(blobs) else ():
            if "sha256:" + name not in live:
                os.unlink(os.path.join(blobs, name))

    # -- the index ------------------------------------------------------------

    def _find(self, images: Dict[str, Image], ref: str) -> Optional[Image]:
        if len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref.removeprefix("sha256:")):
            by_id = [i for i in images.values() if i.id.removeprefix("sha256:").startswith(ref.removeprefix("sha256:"))]
            if len(by_id) == 1:
                return by_id[0]
        return images.get(parse(ref).key)

    def _load(self) -> Dict[str, Image]:
        try:
            data = read_small(self._index, MAX_JSON * 4, regular_only=True)
        except FileNotFoundError:
            return {}
        try:
            return {k: Image.from_dict(v) for k, v in json.loads(data).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ImageError(f"the image index {self._index} is damaged: {e}") from e

    def _save(self, images: Dict[str, Image]) -> None:
        tmp = self._index + ".tmp"
        write_private(tmp, json.dumps({k: v.to_dict() for k, v in images.items()}).encode())
        os.rename(tmp, self._index)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        for d in (self.dir, self.layout, self.layers):
            os.makedirs(d, mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(self.dir, PRIVATE_DIR)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
