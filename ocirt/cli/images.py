"""pull, images, rmi, load, save and `image prune|inspect`: the images of
the state directory (see ocirt.images)."""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any, Dict, Tuple

from ..errors import OcirtError
from ..images.store import builtin
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


def _load_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-i", "--input", required=True, metavar="FILE", help="a docker-archive (docker save) or an oci-archive")
    sp.add_argument("-q", "--quiet", action="store_true", help="print nothing but the images' names")


def _save_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-o", "--output", required=True, metavar="FILE", help="the archive to write (replaced whole)")
    sp.add_argument("--format", choices=["oci-archive"], default="oci-archive", help="the archive's format")
    sp.add_argument("image")


def _image_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("action", choices=["prune", "inspect"])
    sp.add_argument("-a", "--all", action="store_true", help="prune: every image no container uses, too")
    sp.add_argument("-f", "--force", action="store_true", help="prune: do not ask (ocirt never asks: accepted for podman's scripts)")
    sp.add_argument("images", nargs="*", help="inspect: the images")


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
    names = [image.name for image in rt.images() if not image.builtin] if args.all else list(args.images)
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


def cmd_load(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Load the archive's images: 'Loaded image: NAME' each, as podman."""
    for image in rt.load(args.input):
        out(image.name if args.quiet else f"Loaded image: {image.name}")
    return 0


def cmd_save(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    rt.image_store.save(args.image, args.output)
    return 0


def cmd_image(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """image prune: the removed images' ids; image inspect: JSON as podman's, 125 if a name is not held."""
    if args.action == "prune":
        if args.images:
            raise Usage("ocirt image prune takes no images")
        for image in rt.prune_images(all=args.all):
            out(image.id.removeprefix("sha256:"))
        return 0
    if not args.images:
        raise Usage("ocirt image inspect: name the images")
    shown, failed = [], False
    for name in args.images:
        try:
            shown.append(_inspect(rt, name))
        except OcirtError as e:
            report(name, e)
            failed = True
    out(json.dumps(shown, indent=2))
    return 125 if failed else 0


def _inspect(rt: Runtime, name: str) -> Dict[str, Any]:
    """An image as podman's `image inspect` shows it."""
    image = rt.image_store.get(name)
    if image.builtin:
        image = builtin(described=True)
    raw, c = rt.image_store.config_blob(image), image.config
    return {
        "Id": image.id.removeprefix("sha256:"), "Digest": image.digest, "RepoTags": [image.name],
        "Created": raw.get("created"), "Architecture": raw.get("architecture", platform.machine()), "Os": raw.get("os", "linux"),
        "Config": {
            "Env": [f"{k}={v}" for k, v in c.env.items()], "Entrypoint": c.entrypoint or None, "Cmd": c.cmd or None,
            "WorkingDir": c.workdir, "User": c.user, "Labels": c.labels or None, "StopSignal": c.stop_signal,
        },
        "RootFS": {"Type": "layers", "Layers": list(image.layers)}, "Size": image.size,
    }  # fmt: skip


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
    "load": Verb(_load_options, cmd_load),
    "save": Verb(_save_options, cmd_save),
    "image": Verb(_image_options, cmd_image),
}
