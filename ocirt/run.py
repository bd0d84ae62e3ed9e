"""Runtime.run: one command in a fresh container, from its argv to its result.

For example::

    result = rt.run(["sh", "-c", "echo hi"])        # the busybox root filesystem
    result.exit_code, result.stdout, result.timings.phases()
    with rt.run(["sleep", "1000"], detach=True) as c:
        c.exec_run(["ps"])
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from . import attach, layout, logs as logfile, spec as specs, specgen
from .cgroups.limits import Limits
from .container import Container
from .errors import ContainerError, ContainerNotFound, InvalidArgument, Timeout
from .images.config import settle
from .logs import LogRecord
from .state import Timings
from .validate import check_argv, check_env, check_id, check_input, check_labels, check_name, check_path, check_text, check_timeout

if TYPE_CHECKING:
    from .images.store import Image
    from .options import CreateOptions


@dataclass(frozen=True)
class RunResult:
    """How a container run to its end went."""

    container_id: str
    exit_code: int  # 128+N for a death by signal N
    output: List[LogRecord] = field(default_factory=list)  # stdout and stderr, line by line, in order
    oom_killed: bool = False
    timings: Timings = field(default_factory=Timings)

    @property
    def stdout(self) -> str:
        """The container's stdout, each line ended by a newline."""
        return logfile.text(self.output, "stdout")

    @property
    def stderr(self) -> str:
        return logfile.text(self.output, "stderr")

    @property
    def stdout_bytes(self) -> bytes:
        return self.stdout.encode()

    @property
    def stderr_bytes(self) -> bytes:
        return self.stderr.encode()


def run(
    create: Callable[..., Container],
    files_root: str,
    sockets: str,
    cmd: Sequence[str],
    *,
    container_id: Optional[str] = None,
    name: Optional[str] = None,
    rootfs: Optional[str] = None,
    bundle: "str | os.PathLike[str] | None" = None,
    image: Optional[str] = None,
    pull_image: "Optional[Callable[[str], Tuple[Image, Sequence[str]]]]" = None,
    entrypoint: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    user: Optional[str] = None,
    workdir: Optional[str] = None,
    mounts: Sequence[Sequence[str]] = (),
    network: Optional[str] = None,
    publish: Sequence[str] = (),
    memory: Optional[int] = None,
    pids_limit: Optional[int] = None,
    cpus: Optional[float] = None,
    limits: Optional[Limits] = None,
    labels: Optional[Mapping[str, str]] = None,
    stdin: "bytes | str | None" = None,
    timeout: Optional[float] = None,
    remove: bool = True,
    detach: bool = False,
    check: bool = False,
) -> "RunResult | Container":
    """See Runtime.run: `create` is its Runtime's create, `files_root` where
    bundles and the built-in root filesystem go, `sockets` conmon's socket
    dir, `pull_image(image)` the image's pull: (the image, its unpacked
    layers, topmost first), called once every option is checked."""
    # Each option is checked before anything is made: these here, the others by specgen, Limits and create, first thing.
    cid = check_id(container_id) if container_id is not None else os.urandom(32).hex()
    data = _input(stdin, detach)
    limit = check_timeout(timeout)
    argv = check_argv(cmd, "cmd", empty_ok=bundle is not None or image is not None)
    variables = check_env(env)
    common: Any = dict(name=check_name(name) if name is not None else cid[:12], labels=check_labels(labels), stdin=data is not None)
    if limits is not None and not isinstance(limits, Limits):
        raise InvalidArgument(f"limits must be an ocirt.Limits, not {type(limits).__name__}")
    for what, value in (("user", user), ("workdir", workdir), ("network", network)):
        if value is not None:
            check_text(value, what)
    spec_network, bridge = specgen.network_mode(network)
    if bridge is not None or publish:
        common.update(network=bridge, publish=tuple(publish))
    from_image: Dict[str, Any] = {}
    if entrypoint is not None and image is None:
        raise InvalidArgument("entrypoint replaces an image's: it goes with image=")
    if image is not None:
        if bundle is not None or rootfs is not None:
            raise InvalidArgument("give one of an image, a rootfs or a bundle")
        chosen = check_argv(entrypoint, "entrypoint", empty_ok=True) if entrypoint is not None else None
        assert pull_image is not None
        pulled, lowers = pull_image(image)  # the last check: every other one passed
        settled = settle(pulled, lowers, command=argv, entrypoint=chosen, env=variables, user=user, workdir=workdir, labels=common["labels"])
        argv, variables, user, workdir = check_argv(settled.argv, "the image's command"), settled.env, settled.user, settled.workdir
        common["labels"], from_image = settled.labels, settled.bundle
    if bundle is not None:
        given = dict(rootfs=rootfs, user=user, workdir=workdir, mounts=mounts or None, network=network)
        refused = [k for k, v in given.items() if v is not None]
        if refused:
            raise InvalidArgument(f"a bundle brings its own root filesystem and process: give no {', '.join(refused)} with it")
        spec = _bundle_spec(check_path(bundle, "bundle"), argv, variables)
        limits = _with(limits, memory=memory, pids_limit=pids_limit, cpus=cpus)
        container = create(cid, spec=spec, limits=limits, **common)  # the caller's files are never written
    else:
        made = os.path.join(files_root, "bundles", cid)
        options: Any = dict(env=variables, cwd=workdir or "/", user=user, memory=memory, pids_limit=pids_limit, cpus=cpus, mounts=mounts)
        with layout.making(made):
            specgen.write_bundle(
                made, argv, rootfs=rootfs, cache_dir=os.path.join(files_root, "rootfs"), network=spec_network, **options, **from_image
            )
            try:
                container = create(cid, made, owned_bundle=True, limits=limits, **common)
            except BaseException:
                shutil.rmtree(made, ignore_errors=True)
                raise
    return drive(container, sockets, data, limit, detach=detach, remove=container.delete if remove else None, check=check)


def create_from_image(
    create: "Callable[[str, str, CreateOptions], Container]",
    files_root: str,
    pull_image: "Callable[[str], Tuple[Image, Sequence[str]]]",
    container_id: str,
    bundle: object,
    ref: str,
    o: "CreateOptions",
) -> Container:
    """Runtime.create's image= (see there): `create(cid, bundle, options)` on a
    bundle made here from the image's layers and config, removed on failure."""
    if bundle is not None or o.spec is not None or o.rootfs is not None:
        raise InvalidArgument("an image gives the root filesystem and the process: give no bundle, spec or rootfs with it")
    cid = check_id(container_id)
    image, lowers = pull_image(ref)  # the last check
    settled = settle(image, lowers, labels=o.labels)
    made = os.path.join(files_root, "bundles", cid)
    with layout.making(made):
        specgen.write_bundle(
            made, settled.argv, rootfs=None, cache_dir=os.path.join(files_root, "rootfs"), env=settled.env,
            cwd=settled.workdir or "/", user=settled.user, tty=o.terminal, **settled.bundle,
        )  # fmt: skip
        try:
            return create(cid, made, dataclasses.replace(o, owned_bundle=True, labels=settled.labels))
        except BaseException:
            layout.remove_tree(made)
            raise


def drive(
    container: Container,
    sockets: str,
    data: Optional[bytes],
    limit: Optional[float],
    *,
    detach: bool = False,
    remove: Optional[Callable[..., None]] = None,
    check: bool = False,
    started: Optional[Callable[[], None]] = None,
    start: Optional[Callable[[], None]] = None,
) -> "RunResult | Container":
    """Start a created container and see it to its end: `data` sent as its
    stdin (connected before the start: nothing is missed), `started()`
    called once it runs, its RunResult once it exited within `limit`
    seconds (else it is removed and Timeout raised), then `remove(force=True)`
    if given. With `detach`, the started container. `start()` starts it
    (default: container.start). On any failure the container is removed."""
    cid = container.id
    feeder: Optional[threading.Thread] = None
    try:
        if data is not None:
            sock = attach.connect(os.path.join(sockets, cid), send_input=True)
            feeder = attach.feeding(sock, data, name=f"ocirt-stdin-{cid[:12]}")
        (start or container.start)()
        if started is not None:
            started()
        if detach:
            return container
        if feeder is not None:
            feeder.start()
        try:
            code = container.wait(limit)
        except Timeout as e:
            raise Timeout(f"container {cid} still running after {limit:g}s: removed") from e
        result = RunResult(cid, code, list(container.logs()), container.state.oom_killed, container.timings)
    except BaseException:
        _remove(container)
        raise
    finally:
        if feeder is not None:
            if feeder.is_alive():
                feeder.join()  # conmon hung up as the container exited (or was removed)
            else:
                sock.close()  # never started
    if remove is not None:
        remove(force=True)
    if check and code != 0:
        raise ContainerError(cid, code, result.stderr)
    return result


def _remove(container: Container) -> None:
    try:
        container.delete(force=True)
    except ContainerNotFound:
        pass


def _input(stdin: "bytes | str | None", detach: bool) -> Optional[bytes]:
    """`stdin` as the bytes to send (str as UTF-8); InvalidArgument for what cannot be sent."""
    if stdin is not None and detach:
        raise InvalidArgument("stdin data goes with a run to its end, not with detach=True")
    return check_input(stdin)


def _bundle_spec(bundle: str, cmd: Sequence[str], env: Mapping[str, str]) -> Dict[str, Any]:
    """The spec of `bundle`, its paths made absolute, running `cmd` when
    given (else its own process) with `env` added (both checked already)."""
    path, spec = specs.load_bundle(bundle)
    spec = specs.runtime_spec(path, spec)
    process = dict(spec["process"])
    if cmd:
        process["args"] = list(cmd)
    for key, value in env.items():
        process["env"] = [e for e in process.get("env") or [] if not e.startswith(key + "=")] + [f"{key}={value}"]
    return dict(spec, process=process)


def _with(limits: Optional[Limits], **values: Any) -> Optional[Limits]:
    """`limits` with each of `values` that is given set too (Limits checks them)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return limits
    return dataclasses.replace(limits or Limits(), **given)
