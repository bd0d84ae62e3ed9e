"""Runtime: the entry point that creates containers with conmon and runc."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, overload

from . import cgroups, conmon, layout, lifecycle, process, spec as specs
from .background import Deleter
from .cgroups.limits import Limits
from .container import Container
from .core import ContainerCore, Services
from .errors import (
    BinaryNotFound,
    ConmonError,
    ContainerExists,
    ContainerNotFound,
    InvalidArgument,
    InvalidState,
    OcirtError,
    StoreError,
)
from .launcher import Launcher, LaunchOptions
from .layout import NETWORK_DIR, RuntimeDirs
from .lifecycle import DEFAULT_CREATE_TIMEOUT
from .oci import OCIRuntime
from .options import CreateOptions, check_log_size_max, whole_seconds
from .spec import IMAGE_ID_ANNOTATION
from .state import ContainerStatus
from .steps import Steps, block
from .store import Record, Store
from .validate import check_argv, check_id, check_labels, check_path, check_sequence, check_timeout

if TYPE_CHECKING:
    from .images.store import Image, ImageStore
    from .networks import Networks, PortMapping
    from .pool import Pool
    from .run import RunResult

DEFAULT_ROOT = "/var/lib/ocirt"
RUNTIME_ID_TAKEN = ("container with given ID already exists", "container with id exists")  # runc's words (1.1, older)
log = logging.getLogger("ocirt")
DEFAULT_RUN_DIR = "/run/ocirt"


class Runtime:
    """Creates containers under `tmp_dir` by driving conmon and an OCI runtime.

    `runtime_path` and `conmon_path` default to `runc` and `conmon` on PATH.
    `conmon_env` is conmon's environment (default: a standard PATH).
    `cgroup_manager` is "cgroupfs" (default) or "systemd"; `cgroup_parent`
    is where conmon's cgroup and the container's go, side by side: relative
    (default: directly) under this process's own cgroup (on pure cgroup v2,
    beside it: see ocirt.cgroups.cgroupfs), or absolute. `log_size_max`
    caps each log file in bytes (-1: no cap); `no_pivot` asks the runtime
    not to use pivot_root. `network_dir` holds the bridge networks' state
    (see ocirt.networks): the host's, shared by every root.
    `sync_log` has conmon fsync a container's log when it exits, so that the
    log survives a host crash; it delays noticing the exit by the fsync
    (about 1 ms on this machine's disk), so it is off by default.

    With a `store` (see `Runtime.open`), every container is recorded in a
    database that other processes share: `get` and `list` see containers
    created elsewhere, and each verb holds the container's lock.
    """

    def __init__(
        self,
        tmp_dir: str | os.PathLike[str],
        runtime_path: Optional[str] = None,
        conmon_path: Optional[str] = None,
        conmon_env: Optional[Mapping[str, str]] = None,
        cgroup_manager: str = "cgroupfs",
        cgroup_parent: Optional[str] = None,
        log_size_max: int = -1,
        no_pivot: bool = False,
        sync_log: bool = False,
        store: Optional[Store] = None,
        network_dir: str = NETWORK_DIR,
    ) -> None:
        if cgroup_manager not in cgroups.MANAGERS:
            raise InvalidArgument(
                f"unknown cgroup manager {cgroup_manager!r}; valid are {', '.join(map(repr, cgroups.MANAGERS))}"
            )
        check_log_size_max(log_size_max)
        self.runtime_path = _find_binary(runtime_path, "runc", "OCI runtime")
        self.conmon_path = _find_binary(conmon_path, "conmon", "conmon")
        self.conmon_env = dict(conmon_env) if conmon_env is not None else None
        self.cgroup_manager = cgroup_manager
        self.cgroup_parent = cgroup_parent
        self.log_size_max = log_size_max
        self.no_pivot = no_pivot
        self.oci = OCIRuntime(self.runtime_path, systemd_cgroup=cgroup_manager == "systemd")
        self._cgroups = cgroups.manager(cgroup_manager, cgroup_parent)
        self.dirs = RuntimeDirs(check_path(tmp_dir, "tmp_dir"))  # never "": the current directory
        self.dirs.make()
        self.launcher = Launcher(
            self.conmon_path,
            self.runtime_path,
            self.dirs.sockets,
            conmon_env=conmon_env,
            systemd_cgroup=cgroup_manager == "systemd",
            log_size_max=log_size_max,
            no_pivot=no_pivot,
            sync_log=sync_log,
        )
        self.store = store
        self.network_dir = check_path(network_dir, "network_dir")
        self._services = Services(self.oci, self.launcher, self._cgroups, store, self._forget, self.network_dir)
        self.root: Optional[str] = None
        self._containers: Dict[str, Container] = {}
        self._lock = threading.Lock()
        self._deleter = Deleter()
        self._images: "Optional[ImageStore]" = None

    @classmethod
    def open(cls, root: Optional[str] = None, **options: object) -> "Runtime":
        """A Runtime whose containers persist in `root`/state.db.

        `root` defaults to $OCIRT_ROOT, else /var/lib/ocirt with run files in
        /run/ocirt; a root given either way keeps its run files in root/run.
        Containers left by processes that died are reconciled on open.

        The run files hold each container's log, which has no size cap
        unless `log_size_max` sets one: a container that writes without end
        fills the filesystem that holds them (with the default root, /run:
        often a small tmpfs that the whole host shares). On a full
        filesystem, listing, inspecting and reading logs still work, and a
        forced delete frees the container's log before it writes to the
        database; what must record a change (a stop's exit code) needs
        space first (see store.Store).
        """
        root = os.path.abspath(root or os.environ.get("OCIRT_ROOT") or DEFAULT_ROOT)
        run_dir = DEFAULT_RUN_DIR if root == DEFAULT_ROOT else os.path.join(root, "run")
        store = Store(os.path.join(root, "state.db"), os.path.join(run_dir, "locks"), bundles=os.path.join(root, "bundles"))
        rt = cls(run_dir, store=store, **options)  # type: ignore[arg-type]
        rt.root = root
        containers = rt.list()  # reconciles every container
        listed = {c.id for c in containers}
        if any(specs.POOL_OWNER_LABEL in c.labels for c in containers):
            from .pool import orphaned

            for c in filter(orphaned, containers):  # pooled, never given a job, their pool's process gone
                with contextlib.suppress(ContainerNotFound):
                    c.delete(force=True)
        layout.remove_orphan_bundles(os.path.join(root, "bundles"), lambda cid: cid in listed or _recorded(store, cid))
        return rt

    def close(self) -> None:
        """Finish the background deletes (see delete_later), then release this object's
        descriptors (database, pidfds) and the cgroup parents it kept for its next
        container (those no container uses now go); containers keep running."""
        try:
            self.finish_deletes()
        finally:
            self._release()

    def delete_later(self, container: Container) -> None:
        """Force-delete `container` in a background thread, off the caller's path;
        `finish_deletes()` and `close()` wait for it."""
        self._deleter.submit(container)

    def finish_deletes(self) -> None:
        """Wait for every delete_later; OcirtError naming each container whose delete failed."""
        failures = self._deleter.finish()
        if failures:
            raise OcirtError("background delete failed: " + "; ".join(f"container {cid}: {e}" for cid, e in failures)) from failures[0][1]

    def _release(self) -> None:
        for c in self.containers().values():
            c._close_fds()
        with self._lock:
            self._containers.clear()
        self._cgroups.close()
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def tmp_dir(self) -> str:
        return self.dirs.tmp_dir

    def __repr__(self) -> str:
        return f"<Runtime {self.runtime_path} tmp_dir={self.tmp_dir}>"

    def create(
        self,
        container_id: str,
        bundle: "str | os.PathLike[str] | None" = None,
        *,
        spec: Optional[Mapping[str, object]] = None,
        rootfs: "str | os.PathLike[str] | None" = None,
        labels: Optional[Mapping[str, str]] = None,
        stdin: bool = False,
        terminal: bool = False,
        timeout: Optional[float] = DEFAULT_CREATE_TIMEOUT,
        name: Optional[str] = None,
        owned_bundle: bool = False,
        auto_remove: bool = False,
        exit_command: Sequence[str] = (),
        listen_fds: Sequence[int] = (),
        limits: Optional[Limits] = None,
        kill_after: Optional[float] = None,
        log_size_max: Optional[int] = None,
        image: Optional[str] = None,
        network: Optional[str] = None,
        publish: Sequence[str] = (),
    ) -> Container:
        """Create (not start) a container from the OCI bundle `bundle`, or
        from `spec` (an OCI runtime spec as a dict) on the root filesystem
        `rootfs` (or the spec's own absolute root.path), or from `image` (a
        reference, see pull: pulled if missing), whose layers and config
        make the container, in a bundle ocirt makes and removes with it
        (for a command of your own, run(cmd, image=, detach=True)). The
        caller's files are never written.

        Every input is checked before anything is made. On any failure the
        container is deleted from the runtime, conmon is gone and no file or
        cgroup is left; the error says what went wrong (the runtime's own
        message for a runtime failure). A taken id raises ContainerExists and
        leaves the existing container untouched. `name` (default: the id)
        follows the id rules; `owned_bundle` has delete remove the bundle;
        conmon runs `exit_command` (an argv) once the container has exited.
        `listen_fds` are sockets handed to the container's process at fd 3
        onwards, with LISTEN_FDS and LISTEN_PID set (systemd socket
        activation; see conmon.socket_activation for this process's own).
        `limits` are laid over the bundle's `linux.resources`. `labels` stay
        with the container (see `list`) and reach the runtime as annotations.
        `timeout` bounds the create; `kill_after` (whole seconds, None: no
        limit) is how long the container may run before conmon kills it.
        `log_size_max` (bytes; -1: none) replaces the Runtime's for this
        container's log. `network` puts it on a bridge network ("bridge":
        the default one, see ocirt.networks) with an address of its own, and
        `publish` ("[[IP:]HOSTPORT:]PORT[/udp]" each, as podman's -p) maps
        host ports to its ports; the spec must give it a network namespace
        of its own (a generated one does, with network "none").
        """
        options = CreateOptions(
            stdin, terminal, timeout, name, owned_bundle, auto_remove, check_argv(exit_command, "exit_command", empty_ok=True),
            check_sequence(listen_fds, "listen_fds"), limits, spec, check_path(rootfs, "rootfs") if rootfs is not None else None,
            labels, kill_after, log_size_max, network, tuple(check_sequence(publish, "publish")),
        )  # fmt: skip
        if image is not None:
            from .run import create_from_image

            make = lambda cid, made, o: block(self._create_steps(cid, made, o))  # noqa: E731
            pull = functools.partial(self._pulled, policy="missing")
            return create_from_image(make, self.root or self.tmp_dir, pull, container_id, bundle, image, options)
        return block(self._create_steps(container_id, bundle, options))

    @overload
    def run(self, cmd: Sequence[str], *, detach: Literal[False] = ..., **options: Any) -> "RunResult": ...

    @overload
    def run(self, cmd: Sequence[str], *, detach: Literal[True], **options: Any) -> Container: ...

    def run(self, cmd: Sequence[str], *, detach: bool = False, **options: Any) -> "RunResult | Container":
        """Run `cmd` (an argv) in a new container and return its RunResult
        (exit code, stdout and stderr, timings) once it exits; with
        `detach`, return the started Container at once (`with` deletes it).

        With `pool` (a Pool, see Runtime.pool), the job runs in one of its
        ready containers and takes only a job's options (see Pool.run).

        Options: container_id (default: a random one), name, image (a
        reference: see pull; its config gives the command, env, workdir,
        user, stop signal and labels, each overridden by the caller's;
        "busybox" is built in) with pull (the pull policy) and entrypoint
        (replaces the image's, and drops its Cmd), rootfs
        (default: the busybox tree built once, each container writing to a
        layer of its own) or bundle (a ready OCI bundle, never written to,
        whose own process runs if `cmd` is empty; no user, workdir, mounts
        or network then), env (a dict, added), user, workdir, mounts ((host path,
        container path[, "ro"]) each), network ("none" or "host"), memory,
        pids_limit, cpus, limits (a Limits), labels, stdin (bytes or str: the
        container's standard input, ended after it; none: no stdin),
        timeout (seconds it may run: then it is killed and removed, and
        Timeout raised), remove
        (default True: delete it once it exited), check (raise
        ContainerError for a non-zero exit). Bad options raise
        InvalidArgument before anything is made.
        """
        from .run import run  # the high-level layer sits on this one

        pool = options.pop("pool", None)
        if pool is not None:  # a job for a warm pool (see ocirt.pool): its options are the job's
            if detach:
                return pool.start(cmd, **options)  # type: ignore[no-any-return]
            return pool.run(cmd, **options)  # type: ignore[no-any-return]
        policy = options.pop("pull", "missing")
        options["pull_image"] = functools.partial(self._pulled, policy=policy)
        return run(self.create, self.root or self.tmp_dir, self.dirs.sockets, cmd, detach=detach, **options)

    @property
    def image_store(self) -> "ImageStore":
        """The images of this Runtime's root (see ocirt.images)."""
        if self._images is None:
            from .images.store import ImageStore

            self._images = ImageStore(self.root or self.tmp_dir)
        return self._images

    def pull(self, ref: str, *, policy: str = "missing", tls_verify: bool = True, authfile: Optional[str] = None) -> "Image":
        """The image `ref` names (docker://HOST/REPO:TAG or HOST/REPO:TAG, oci:DIR[:TAG],
        oci-archive:FILE, docker-archive:FILE), pulled through skopeo as `policy`
        says (podman's --pull: missing, always, never). ImageError for a bad
        reference, an unreachable registry, a missing tag or a corrupt blob."""
        return self.image_store.pull(ref, policy=policy, tls_verify=tls_verify, authfile=authfile)

    def _pulled(self, ref: str, policy: str) -> "Tuple[Image, List[str]]":
        """The image `ref` names, pulled as `policy` says, with its unpacked layers (topmost first)."""
        image = self.pull(ref, policy=policy)
        return image, self.image_store.lower_dirs(image)

    def images(self) -> "List[Image]":
        """The images this root holds, newest pull first, and the built-in busybox last (where this host has a static busybox)."""
        from .images.store import builtin

        try:
            return [*self.image_store.list(), builtin(described=True)]
        except OcirtError:
            return self.image_store.list()

    def pool(self, size: int, **options: Any) -> "Pool":
        """`size` containers created ahead, each waiting for one job (see ocirt.pool):
        options are those fixed at create (image or rootfs, user, cap_add,
        cap_drop, mounts, network, read_only, hostname, ulimits, tmpfs,
        log_size_max, stdin: whether jobs send stdin); the first container
        is made before this returns, the others in the background."""
        from .pool import Pool

        return Pool(self, size, **options)

    def load(self, path: str) -> "List[Image]":
        """The images of the archive at `path` (a docker-archive or an oci-archive), loaded (see ImageStore.load)."""
        return self.image_store.load(path)

    def prune_images(self, all: bool = False) -> "List[Image]":
        """Remove the layers and blobs no image uses; with `all`, every image no container uses too. The images removed."""
        used = {(c.spec.get("annotations") or {}).get(IMAGE_ID_ANNOTATION) for c in self.list()}
        return self.image_store.prune(keep={i.id for i in self.image_store.list() if not all or i.id in used})

    def remove_image(self, ref: str, force: bool = False) -> "Image":
        """Remove the image `ref` names with its layers no other image uses.
        InvalidState while a container uses it, unless `force` (the
        containers are force-deleted first); ImageError if it is not held."""
        image = self.image_store.get(ref)
        users = [c for c in self.list() if (c.spec.get("annotations") or {}).get(IMAGE_ID_ANNOTATION) == image.id]
        if users and not force:
            raise InvalidState(f"image {image.name} is in use by container {users[0].name}: remove it first, or force")
        for c in users:
            try:
                c.delete(force=True)
            except ContainerNotFound:
                pass
        return self.image_store.remove(ref)

    def _create_steps(self, container_id: str, bundle: "str | os.PathLike[str] | None", o: "CreateOptions") -> Steps[Container]:
        """create, as steps (see ocirt.steps): every input is checked before anything is made."""
        began = time.monotonic()
        cid = check_id(container_id)
        name = o.name if o.name is not None else cid  # o's own fields were checked as it was made
        limit = check_timeout(o.timeout)
        conmon.check_sockets(o.listen_fds)
        if o.spec is not None:
            if bundle is not None:
                raise InvalidArgument("give a bundle or a spec, not both")
            bundle_path, spec = specs.spec_on(o.spec, o.rootfs)
        elif bundle is None:
            raise InvalidArgument("create needs a bundle, or a spec (with rootfs=)")
        elif o.rootfs is not None:
            raise InvalidArgument("rootfs= goes with a spec: a bundle names its own root filesystem")
        else:
            bundle_path, spec = specs.load_bundle(check_path(bundle, "bundle"))  # never "": the current directory
        labels = check_labels(o.labels)
        if labels:
            spec = dict(spec, annotations={**(spec.get("annotations") or {}), **labels})
        if o.limits is not None:
            linux = spec.get("linux") or {}
            spec = dict(spec, linux=dict(linux, resources=o.limits.merged_into(linux.get("resources") or {})))
        if bool(spec["process"].get("terminal", False)) != bool(o.terminal):
            raise InvalidArgument(
                f"terminal={bool(o.terminal)} but the bundle's process.terminal is "
                f"{bool(spec['process'].get('terminal', False))}: they must agree"
            )
        self._cgroups.check()
        joining = self._network_plan(spec, o)  # an unknown network or a bad port refused here, before anything is made
        files = self.dirs.container(cid)
        if os.path.exists(os.path.join(self.oci.state_dir, cid)):
            raise ContainerExists(f"the runtime already has a container {cid!r}")
        container = Container(self._services, cid, bundle_path, spec, files, None, name=name)
        container.timings.create = began
        container.owned_bundle = o.owned_bundle
        container.auto_remove = o.auto_remove
        container.stdin = o.stdin
        container.labels = labels
        with self._store_lock(cid):
            # The record comes first: a process that dies after it leaves a
            # container that ps shows and rm -f removes, never a hidden one.
            # It names conmon's cgroup before it is made: whoever finds it
            # removes that too, from whatever cgroup it runs in.
            container._cgroup = self._cgroups.planned(*lifecycle.cgroup_names(cid))
            if self.store is not None:
                self.store.insert(container.to_record())
            try:
                os.mkdir(files.root, 0o700)
            except FileExistsError:
                if self.store is not None:
                    self.store.delete(cid)
                raise ContainerExists(f"container {cid!r} already exists") from None
            if joining is not None:
                self._join(container, *joining)
            yield from self._launch_steps(container, o, limit)
        with self._lock:
            self._containers[cid] = container
        return container

    def _network_plan(self, spec: specs.Spec, o: "CreateOptions") -> "Optional[Tuple[Networks, str, List[PortMapping]]]":
        """What joining o.network takes: (the networks, its name, the ports), checked; None without one."""
        if o.network is None:
            return None
        from .networks import Networks, parse_publish

        if not any(ns.get("type") == "network" and "path" not in ns for ns in (spec.get("linux") or {}).get("namespaces") or []):
            raise InvalidArgument(f"network {o.network!r} needs a network namespace of the container's own: the spec shares one")
        networks = Networks(self.network_dir)
        networks.get(o.network)
        return networks, o.network, [parse_publish(p) for p in o.publish]

    def _join(self, container: Container, networks: "Networks", network: str, ports: "List[PortMapping]") -> None:
        """Put a recorded container whose run dir was just made on `network`
        (see Networks.attach), and record it; on failure the record and the run dir go."""
        files = container._files
        try:
            attachment = networks.attach(container.id, container.name, network, ports, files.netns)
        except BaseException:
            if self.store is not None:
                self.store.delete(container.id)
                self.store.remove_lock(container.id)
            shutil.rmtree(files.root, ignore_errors=True)
            raise
        container.network = attachment.to_dict()
        spec = container.spec
        namespaces = [ns if ns.get("type") != "network" else {"type": "network", "path": files.netns} for ns in spec["linux"]["namespaces"]]
        spec = dict(spec, linux=dict(spec["linux"], namespaces=namespaces))
        if attachment.dns and _may_mount_on(spec, "etc/resolv.conf"):
            resolv = os.path.join(files.root, "resolv.conf")
            with open(resolv, "wb") as f:  # no secret in it: the container's processes read it, whatever their user
                f.write(attachment.resolv_conf())
            mount = {"destination": "/etc/resolv.conf", "type": "bind", "source": resolv, "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}
            spec = dict(spec, mounts=[*spec.get("mounts", []), mount])
        container.spec = spec
        if self.store is not None:
            self.store.save(container.to_record())

    def _store_lock(self, cid: str) -> "contextlib.AbstractContextManager[object]":
        return self.store.lock(cid) if self.store is not None else contextlib.nullcontext()

    def _launch_steps(self, container: Container, o: "CreateOptions", limit: Optional[float]) -> Steps[None]:
        """Launch conmon for a recorded container; on failure, undo everything, the record too."""
        cid = container.id
        container.launch_options = LaunchOptions(o.exit_command, whole_seconds(o.kill_after), o.log_size_max)
        try:
            yield from lifecycle.launch(container, limit, o.listen_fds)
        except BaseException as e:
            # No waiting here (a closed generator must not yield): the undo blocks.
            already_exists = isinstance(e, ConmonError) and any(words in str(e) for words in RUNTIME_ID_TAKEN)
            lifecycle.undo_launch(container, delete_from_runtime=not already_exists)
            if self.store is not None:
                self.store.delete(cid)
                self.store.remove_lock(cid)
            if already_exists:
                raise ContainerExists(f"the runtime already has a container {cid!r}") from e
            raise

    def _forget(self, container: ContainerCore) -> None:
        with self._lock:
            if self._containers.get(container.id) is container:
                del self._containers[container.id]
        if self.store is not None:
            self.store.delete(container.id)
            self.store.remove_lock(container.id)

    def containers(self) -> Dict[str, Container]:
        """The containers this Runtime object created or loaded and has not deleted, by id."""
        with self._lock:
            return dict(self._containers)

    def get(self, name_or_id: str) -> Container:
        """The container with this name, id or unique id prefix; ContainerNotFound if none."""
        container = self._find(name_or_id)
        container.refresh()
        return container

    def _find(self, name_or_id: str) -> Container:
        """get, without reconciling a stored container."""
        if self.store is None:
            known = list(self.containers().values())
            # exact id, then exact name, then a unique id prefix (as the store resolves them)
            for matches in ([c for c in known if c.id == name_or_id], [c for c in known if c.name == name_or_id]):
                if matches:
                    return matches[0]
            matches = [c for c in known if name_or_id and c.id.startswith(name_or_id)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"{name_or_id!r} matches {len(matches)} containers; give more of the id")
            raise ContainerNotFound(f"no container named {name_or_id!r} or with an id starting with it")
        return self._load(self.store.resolve(name_or_id))

    def list(
        self,
        *,
        status: "ContainerStatus | str | None" = None,
        label: "str | Mapping[str, str] | None" = None,
        name: Optional[str] = None,
    ) -> List[Container]:
        """Every container, oldest first; with a store, those of other processes too.

        Each is reconciled first, so a status is never stale (a container
        whose lock another process holds is shown as that process left it).
        `status`, `label` ("key", "key=value", or a dict all of whose pairs
        must match) and `name` (exact) choose among them. A container whose
        record is unreadable is listed half-created, its note saying why
        (logged once): only a forced delete removes it (see store.Record.unreadable).
        """
        keep = _filter(status, label, name)
        if self.store is None:
            return [c for c in self.containers().values() if keep(c)]
        out = []
        for record in self.store.all():
            container = self._load(record.id, record)
            container._record.glance(record)
            if not container.deleted and keep(container):
                out.append(container)
        return out

    def prune(self, label: "str | Mapping[str, str] | None" = None) -> List[str]:
        """Delete every stopped container; with `label`, every container that
        has it instead, running or not (forced). The ids deleted; one that
        another process deletes meanwhile is passed over."""
        chosen = self.list(label=label) if label is not None else self.list(status=ContainerStatus.STOPPED)
        deleted = []
        for c in chosen:
            try:
                c.delete(force=True)
            except ContainerNotFound:
                continue
            deleted.append(c.id)
        return deleted

    def traces(self, container_ids: Sequence[str]) -> Dict[str, int]:
        """What is left on this host of these (deleted) containers, counted by
        kind: runtime_state, run_files, cgroups (directories), conmons."""
        ids = set(container_ids)
        counts = {"runtime_state": 0, "run_files": 0, "cgroups": 0, "conmons": 0}
        for cid in ids:
            files = self.dirs.container(cid)
            counts["runtime_state"] += os.path.exists(os.path.join(self.oci.state_dir, cid))
            counts["run_files"] += os.path.exists(files.root) + os.path.exists(files.exit_file)
            for name in (f"ocirt-conmon-{cid}", f"ocirt-{cid}"):
                counts["cgroups"] += len(getattr(self._cgroups.existing(name, [], []), "dirs", []))
        for pid in filter(str.isdigit, os.listdir("/proc")):
            argv = process.cmdline(int(pid))
            if argv and os.path.basename(argv[0]) == b"conmon" and any(os.fsdecode(a) in ids for a in argv):
                counts["conmons"] += 1
        return counts

    def _load(self, cid: str, record: Optional[Record] = None) -> Container:
        with self._lock:
            known = self._containers.get(cid)
            if known is not None and not known._deleted:
                return known
            self._containers.pop(cid, None)
        assert self.store is not None
        record = record or self.store.get(cid)
        if record is None:
            raise ContainerNotFound(f"container {cid} was deleted")
        files = self.dirs.container(cid)
        try:
            with open(files.config) as f:
                spec = json.load(f)
        except (OSError, ValueError):
            spec = {"process": {"args": []}, "root": {"path": ""}}
        # A record without the container's cgroup predates the sibling layout: the runtime nested it in conmon's.
        beside = record.container_cgroup_dirs or [os.path.join(d, cid) for d in record.cgroup_dirs]
        cgroup = self._cgroups.existing(f"ocirt-conmon-{cid}", record.cgroup_dirs, record.cgroup_parents, beside)
        container = Container._from_record(self._services, record, spec, files, cgroup)
        with self._lock:
            return self._containers.setdefault(cid, container)


def _filter(
    status: "ContainerStatus | str | None", label: "str | Mapping[str, str] | None", name: Optional[str]
) -> "Callable[[Container], bool]":
    """The test `list` applies; InvalidArgument for a bad filter, before any container is looked at."""
    try:
        wanted_status = ContainerStatus(status) if status is not None else None
    except ValueError:
        valid = ", ".join(s.value for s in ContainerStatus)
        raise InvalidArgument(f"status must be a ContainerStatus or one of {valid}, not {status!r}") from None
    if label is None:
        pairs: Dict[str, Optional[str]] = {}
    elif isinstance(label, str):
        key, sep, value = label.partition("=")
        pairs = {key: value if sep else None}
    else:
        pairs = dict(check_labels(label))
    return lambda c: (
        (wanted_status is None or c.state.status is wanted_status)
        and (name is None or c.name == name)
        and all(k in c.labels and (v is None or c.labels[k] == v) for k, v in pairs.items())
    )


def _may_mount_on(spec: specs.Spec, path: str) -> bool:
    """Whether a file may be bind-mounted at `path` (relative to /) in `spec`'s
    root: one ocirt made (an overlay at /, whose upper layer takes a missing
    mount point), or one that has it already. A caller's root filesystem
    is never written."""
    mounts = spec.get("mounts") or []
    if mounts and mounts[0].get("destination") == "/" and mounts[0].get("type") == "overlay":
        return True
    root = (spec.get("root") or {}).get("path", "")
    return bool(root) and os.path.isfile(os.path.join(root, path)) and not os.path.islink(os.path.join(root, path))


def _find_binary(path: Optional[str], default: str, what: str) -> str:
    if path is None:
        found = shutil.which(default)
        if found is None:
            raise BinaryNotFound(f"{what} binary {default!r} not found on PATH")
        return os.path.abspath(found)
    full = os.path.abspath(os.fspath(path))
    if not os.path.isfile(full) or not os.access(full, os.X_OK):
        raise BinaryNotFound(f"{what} binary {full} does not exist or is not executable")
    return full


def _recorded(store: Store, cid: str) -> bool:
    """Whether `store` has container `cid`; True for a name no container can have (not ocirt's to remove)."""
    try:
        return store.get(cid) is not None
    except (StoreError, InvalidArgument):
        return True
