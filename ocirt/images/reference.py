"""What an image reference names, and where skopeo finds it.

    docker://HOST[:PORT]/REPO[:TAG|@DIGEST]   a registry (as is HOST/REPO:TAG, bare)
    oci:DIR[:TAG]                             an OCI image layout
    oci-archive:FILE[:REF]                    a tar of one
    docker-archive:FILE[:REF]                 `docker save`'s tar
    NAME[:TAG]                                an image the store holds (busybox: built in)

A bare name with no registry host is never pulled: no registry is searched
for short names (as podman does without unqualified-search registries), so
it must be one the store holds already.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Optional

from ..errors import ImageError

ARCHIVES = ("oci-archive", "docker-archive")
REF_NAME = "org.opencontainers.image.ref.name"  # an OCI index's tag annotation
BUILTIN_NAMES = ("busybox", "busybox:latest")  # the built-in image (see store.builtin), never pulled
# The distribution spec's grammar, simplified to what a name may hold.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_NAME = re.compile(rf"^(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>sha256:[0-9a-f]{{64}}))?$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference: `name` is how the store lists the image, `source`
    what skopeo copies from (None: only the store can have it)."""

    name: str
    source: Optional[str]

    @property
    def key(self) -> str:
        """The image's tag in the shared layout: made of the name, in the characters a tag allows."""
        return hashlib.sha256(self.name.encode()).hexdigest()[:32]


def parse(ref: object) -> Reference:
    """`ref` parsed; ImageError naming what is wrong with it."""
    if not isinstance(ref, str) or not ref or len(ref) > 4096 or any(c in ref for c in "\0\n\r\t "):
        raise ImageError(f"{ref!r} is not an image reference (a registry image HOST/REPO:TAG, oci:DIR, oci-archive:FILE, ...)")
    transport, colon, rest = ref.partition(":")
    if colon and transport == "docker" and rest.startswith("//"):
        return _registry(rest[2:], ref)
    if colon and transport in ("oci", *ARCHIVES):
        path, _, tag = rest.partition(":")
        if not path:
            raise ImageError(f"image reference {ref!r} names no {'directory' if transport == 'oci' else 'file'}")
        path = os.path.abspath(path)
        name = f"{transport}:{path}" + (f":{tag}" if tag else "")
        return Reference(name, name)
    return _registry(ref, ref, bare=True)


def _registry(text: str, shown: str, bare: bool = False) -> Reference:
    m = _NAME.match(text)
    if m is None:
        raise ImageError(f"{shown!r} is not a valid image name (lower-case repository, optional host, :tag or @sha256:digest)")
    host, path, tag, digest = m.group("host"), m.group("path"), m.group("tag"), m.group("digest")
    if host is not None and "." not in host and ":" not in host and host != "localhost":
        if not re.fullmatch(_COMPONENT, host):
            raise ImageError(f"{shown!r} is not a valid image name (lower-case repository, optional host, :tag or @sha256:digest)")
        host, path = None, f"{host}/{path}"  # "library/busybox": a path, not a host
    tagged = f":{tag}" if tag else "" if digest else ":latest"  # podman's default tag
    name = (f"{host}/" if host else "") + path + tagged + (f"@{digest}" if digest else "")
    if host is None:
        return Reference(name, None)  # a short name: the store's, never searched for
    return Reference(name, "docker://" + name)
