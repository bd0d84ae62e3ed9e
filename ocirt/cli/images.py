"""pull, images and rmi: the images of the state directory (see ocirt.images)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, Tuple

from ..errors import OcirtError
from ..runtime import Runtime
from . import values
from .common import Out, Usage, Verb, report


def _pull_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--tls-verify", type=values.truth, default=True, metavar="BOOL", help="require HTTPS and a verified certificate")
    sp.add_argument("--authfile", help="credentials for the registry (podman's auth.json)")
    sp.add_argument("-q", "--quiet", action="store_true", help="print nothing but the image's id")
    sp.add_argument("image", help="docker://HOST/REPO:TAG (or HOST/REPO:TAG), oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE")


def _images_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-q", "--quiet", action="store_true", help="only the image ids")
    sp.add_argument("--no-trunc", action="store_true", help="whole image ids")
    sp.add_argument("--format", choices=["table", "json"], default="table", help="a table for people, or JSON")


def _rmi_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--force", action="store_true", help="remove the containers using it first")
    sp.add_argument("-a", "--all", action="store_true", help="every image")
    sp.add_argument("images", nargs="*")


def cmd_pull(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Pull the image (again: the copy finds what it has); its id."""
    image = rt.pull(args.image, policy="always", tls_verify=args.tls_verify, authfile=args.authfile)
    out(image.id.removeprefix("sha256:"))
    return 0


def cmd_images(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    held = rt.images()
    if args.quiet:
        for image in held:
            out(_short(image.id, args.no_trunc))
        return 0
    if args.format == "json":
        out(json.dumps([{
            "Id": image.id.removeprefix("sha256:"), "Digest": image.digest, "Names": [image.name], "Size": image.size,
            "Created": int(image.pulled_at), "Labels": image.config.labels or None,
        } for image in held], indent=2))  # fmt: skip
        return 0
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "PULLED", "SIZE")]
    now = time.time()
    for image in held:
        repository, tag = _repository_and_tag(image.name)
        rows.append((repository, tag, _short(image.id, args.no_trunc), f"{_ago(now - image.pulled_at)}", _size(image.size)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_rmi(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Remove images: 'Untagged:' and 'Deleted:' lines, as podman; 125 if any failed."""
    if args.all == bool(args.images):
        raise Usage("ocirt rmi: give images, or -a (not both)")
    names = [image.name for image in rt.images()] if args.all else list(args.images)
    failed = False
    for name in names:
        try:
            image = rt.remove_image(name, force=args.force)
        except OcirtError as e:
            report(name, e)
            failed = True
            continue
        out(f"Untagged: {image.name}")
        out(f"Deleted: {image.id.removeprefix('sha256:')}")
    return 125 if failed else 0


def _short(digest: str, whole: bool) -> str:
    hexdigest = digest.removeprefix("sha256:")
    return hexdigest if whole else hexdigest[:12]


def _repository_and_tag(name: str) -> Tuple[str, str]:
    """A registry name's repository and tag; an archive's or layout's whole reference and "-"."""
    if name.startswith(("oci:", "oci-archive:", "docker-archive:")):
        return name, "-"
    repository, _, digest = name.partition("@")
    slash = repository.rfind("/")
    colon = repository.rfind(":")
    if colon > slash:
        return repository[:colon], repository[colon + 1 :]
    return repository, digest[:19] if digest else "<none>"


def _ago(seconds: float) -> str:
    from ..reports import human_duration

    return f"{human_duration(seconds)} ago"


def _size(n: int) -> str:
    """A size as podman shows it: 1.03 MB."""
    value, unit = float(n), "B"
    for bigger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{n} B" if unit == "B" else f"{value:.3g} {unit}"


VERBS: Dict[str, Verb] = {
    "pull": Verb(_pull_options, cmd_pull),
    "images": Verb(_images_options, cmd_images),
    "rmi": Verb(_rmi_options, cmd_rmi),
}
