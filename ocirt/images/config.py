"""An image's config made a container's, as podman does it.

The process is Entrypoint + Cmd: a command given replaces Cmd, an
entrypoint given replaces Entrypoint and drops Cmd. Env is the image's,
then the caller's (the caller's wins); WorkingDir and User are the image's
unless given; StopSignal becomes the stop-signal annotation; Labels are
merged under the caller's. Volumes and ExposedPorts are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from ..errors import ImageError
from ..spec import IMAGE_ANNOTATION, IMAGE_ID_ANNOTATION

if TYPE_CHECKING:
    from .store import Image


@dataclass(frozen=True)
class ImageConfig:
    """What a container takes from its image's config."""

    entrypoint: List[str] = field(default_factory=list)
    cmd: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    user: str = ""
    stop_signal: str = ""
    labels: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_image(cls, config: Mapping[str, Any]) -> "ImageConfig":
        """From an image config blob (its "config" member); ImageError if a field has the wrong type."""
        c = config.get("config") or {}
        if not isinstance(c, dict):
            raise ImageError("the image's config is not an object")
        env: Dict[str, str] = {}
        for pair in _strings(c, "Env"):
            key, _, value = pair.partition("=")
            if key:
                env[key] = value
        labels = c.get("Labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ImageError("the image's Labels are not strings")
        return cls(
            _strings(c, "Entrypoint"), _strings(c, "Cmd"), env, _string(c, "WorkingDir"), _string(c, "User"), _string(c, "StopSignal"), dict(labels)
        )

    def args(self, command: Optional[Sequence[str]] = None, entrypoint: Optional[Sequence[str]] = None) -> List[str]:
        """The container's argv; ImageError if it would be empty."""
        if entrypoint is not None:
            args = [*entrypoint, *(command or ())]
        else:
            args = [*self.entrypoint, *(command if command else self.cmd)]
        if not args:
            raise ImageError("the image names no command (no Entrypoint or Cmd): give one")
        return args

    def environment(self, given: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The image's Env, then `given` over it."""
        return {**self.env, **(given or {})}

    def to_dict(self) -> Dict[str, Any]:
        return {
            "entrypoint": self.entrypoint, "cmd": self.cmd, "env": self.env, "workdir": self.workdir,
            "user": self.user, "stop_signal": self.stop_signal, "labels": self.labels,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ImageConfig":
        return cls(
            list(d.get("entrypoint") or ()), list(d.get("cmd") or ()), dict(d.get("env") or {}), str(d.get("workdir") or ""),
            str(d.get("user") or ""), str(d.get("stop_signal") or ""), dict(d.get("labels") or {}),
        )  # fmt: skip


@dataclass(frozen=True)
class Settled:
    """A container's process as its image and its caller give it; `bundle`
    is what specgen.write_bundle takes from the image (its layers, its stop
    signal, the annotations naming it)."""

    argv: List[str]
    env: Dict[str, str]
    user: Optional[str]
    workdir: Optional[str]
    labels: Dict[str, str]
    bundle: Dict[str, Any]


def settle(
    image: "Image",
    lowers: Sequence[str],
    *,
    command: Sequence[str] = (),
    entrypoint: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    user: Optional[str] = None,
    workdir: Optional[str] = None,
    labels: Optional[Mapping[str, str]] = None,
) -> Settled:
    """The image's config made the container's, the caller's own options
    winning (see the module); ImageError if no command results."""
    config = image.config
    annotations = {IMAGE_ANNOTATION: image.name}
    if image.id:
        annotations[IMAGE_ID_ANNOTATION] = image.id
    return Settled(
        argv=config.args(list(command) or None, entrypoint),
        env=config.environment(env),
        user=user if user is not None else config.user or None,
        workdir=workdir or config.workdir or None,
        labels={**config.labels, **(labels or {})},
        bundle=dict(image_layers=list(lowers), stop_signal=config.stop_signal or None, annotations=annotations),
    )


def _strings(c: Mapping[str, Any], key: str) -> List[str]:
    value = c.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"the image's {key} is not a list of strings")
    return list(value)


def _string(c: Mapping[str, Any], key: str) -> str:
    value = c.get(key) or ""
    if not isinstance(value, str):
        raise ImageError(f"the image's {key} is not a string")
    return value
