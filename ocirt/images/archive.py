"""What an image archive holds, for `load`: a docker-archive (`docker
save`'s tar, its images listed in manifest.json) or an oci-archive (a tar
of an OCI image layout, its images in index.json).

Only the archive's small index is read here, from the tar without
unpacking it (a member larger than MAX_INDEX is refused); skopeo copies the
images themselves, and the store checks every blob it reads back.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from typing import Any, List, Optional

from ..errors import ImageError
from .reference import REF_NAME, Reference, parse

MAX_INDEX = 4 << 20


def references(path: str) -> List[Reference]:
    """Each image of the archive at `path`: named by the tag it carries
    (a docker-archive's RepoTags, an oci-archive's full ref.name), else by
    the archive's own reference (as a pull of it names it). ImageError for
    a file that is no image archive."""
    path = os.path.abspath(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageError(f"{path} is not a regular file: load takes an image archive")
        with tarfile.open(path, "r:") as tar:
            index, manifest = _member(tar, "index.json"), _member(tar, "manifest.json")
    except (OSError, tarfile.TarError) as e:
        raise ImageError(f"cannot read the image archive {path}: {e}") from e
    if manifest is not None:
        return _docker(path, manifest)
    if index is not None:
        return _oci(path, index)
    raise ImageError(f"{path} is neither a docker-archive (no manifest.json) nor an oci-archive (no index.json)")


def _docker(path: str, manifest: Any) -> List[Reference]:
    if not isinstance(manifest, list) or not manifest:
        raise ImageError(f"the manifest.json of {path} lists no image")
    found = []
    for i, entry in enumerate(manifest):
        tags = entry.get("RepoTags") if isinstance(entry, dict) else None
        source = f"docker-archive:{path}:@{i}"
        if isinstance(tags, list) and tags and isinstance(tags[0], str):
            found.append(Reference(parse(tags[0]).name, source))
        else:
            found.append(Reference(f"docker-archive:{path}" + (f"@{i}" if len(manifest) > 1 else ""), source))
    return found


def _oci(path: str, index: Any) -> List[Reference]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise ImageError(f"the index.json of {path} lists no image")
    found = []
    for m in manifests:
        ref = ((m.get("annotations") or {}) if isinstance(m, dict) else {}).get(REF_NAME)
        if not isinstance(ref, str) or not ref:
            if len(manifests) > 1:
                raise ImageError(f"{path} holds {len(manifests)} images, not all named: load takes named ones")
            found.append(Reference(f"oci-archive:{path}", f"oci-archive:{path}"))
        elif "/" in ref or ":" in ref:  # no tag holds either
            found.append(Reference(parse(ref).name, f"oci-archive:{path}:{ref}"))  # a whole name, as podman save writes
        else:
            found.append(Reference(f"oci-archive:{path}:{ref}", f"oci-archive:{path}:{ref}"))  # a bare tag
    return found


def _member(tar: tarfile.TarFile, name: str) -> Optional[Any]:
    """The JSON member `name` at the archive's top, or None."""
    for candidate in (name, "./" + name):
        try:
            info = tar.getmember(candidate)
        except KeyError:
            continue
        if not info.isreg() or info.size > MAX_INDEX:
            raise ImageError(f"the archive's {name} is not a regular file of at most {MAX_INDEX} bytes")
        f = tar.extractfile(info)
        assert f is not None
        try:
            return json.loads(f.read(MAX_INDEX))
        except ValueError as e:
            raise ImageError(f"the archive's {name} is not JSON: {e}") from e
    return None
