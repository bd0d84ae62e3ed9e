"""Test images, written by the tests themselves as OCI image layouts: no
registry on the internet, no image tool but what the tests drive."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: one static binary
APPLETS = ("sh", "echo", "cat", "env", "id", "pwd", "ls", "sleep", "true", "false", "test", "printf", "stat", "mkdir", "rm", "touch")
Files = Mapping[str, Any]  # path -> bytes (a file), str "->target" (a symlink), None (a directory), or (bytes, mode)


def tar_layer(files: Files) -> bytes:
    """A tar of `files` (see Files), in the order given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, what in files.items():
            info = tarfile.TarInfo(path)
            info.mtime = 1_700_000_000
            if what is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(what, str):
                info.type, info.linkname = tarfile.SYMTYPE, what.removeprefix("->")
                tar.addfile(info)
            else:
                data, mode = what if isinstance(what, tuple) else (what, 0o644)
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def busybox_files(extra: Optional[Files] = None) -> Dict[str, Any]:
    """A minimal root: busybox and its applets, /etc/passwd and /etc/group with a user `app` (uid 1000)."""
    with open(BUSYBOX, "rb") as f:
        files: Dict[str, Any] = {"bin": None, "bin/busybox": (f.read(), 0o755)}
    files.update({f"bin/{a}": "->busybox" for a in APPLETS})
    files.update({
        "etc": None,
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        "etc/group": b"root:x:0:\napp:x:1000:\n",
        "tmp": None,
        "home": None,
        "home/app": None,
    })  # fmt: skip
    files.update(extra or {})
    return files


def write_layout(
    path: str, layers: Sequence[bytes], config: Optional[Dict[str, Any]] = None, tag: str = "latest", gzip_layers: bool = True
) -> Tuple[str, str]:
    """Write an OCI image layout at `path` holding one image tagged `tag`:
    `layers` (tars, base first) and `config` (the image config's "config"
    member). Returns (manifest digest, config digest)."""
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def blob(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest

    layer_descs, diff_ids = [], []
    for tar in layers:
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        data = gzip.compress(tar, mtime=0) if gzip_layers else tar
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        layer_descs.append({"mediaType": media, "digest": blob(data), "size": len(data)})
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(image_config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config_bytes), "size": len(config_bytes)},
        "layers": layer_descs,
    }
    manifest_bytes = json.dumps(manifest).encode()
    manifest_digest = blob(manifest_bytes)
    index_path = os.path.join(path, "index.json")
    index = json.load(open(index_path)) if os.path.exists(index_path) else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({
        "mediaType": manifest["mediaType"], "digest": manifest_digest, "size": len(manifest_bytes),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    })  # fmt: skip
    with open(index_path, "w") as f:
        json.dump(index, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return manifest_digest, "sha256:" + hashlib.sha256(config_bytes).hexdigest()
