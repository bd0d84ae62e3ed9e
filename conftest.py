"""Fixtures shared by tests/ and benchmarks/: a busybox root filesystem and bundles.

Everything runs real runc and conmon. The pytest process makes itself the
reaper of orphans (conmon double-forks, and on these machines PID 1 reaps
nothing), so conmon daemons end as our children and ocirt reaps them.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional

import pytest

from ocirt import native as _native

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs small test files through ocirt's plugin

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
_ids = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    _native.set_subreaper(True)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A read-only-use root filesystem: static busybox, its applets, passwd/group."""
    root = tmp_path_factory.mktemp("rootfs")
    root.chmod(0o755)  # it becomes / in the container: other users must get through
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
        (root / d).mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    return str(root)


@pytest.fixture(scope="session")
def base_spec(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """`runc spec`'s default, made non-interactive."""
    d = tmp_path_factory.mktemp("spec")
    subprocess.run(["runc", "spec"], cwd=d, check=True)
    spec = json.loads((d / "config.json").read_text())
    spec["process"]["terminal"] = False
    return spec


BundleFactory = Callable[..., str]


@pytest.fixture
def make_bundle(tmp_path_factory: pytest.TempPathFactory, rootfs: str, base_spec: Dict[str, Any]) -> BundleFactory:
    """make_bundle(*args, pid_ns=True, memory=None, env=None, edit=None) -> bundle dir.

    The bundle's root is the shared busybox rootfs, mounted read-only, with a
    tmpfs on /tmp. `edit(spec)` may change the spec further.
    """

    def make(
        *args: str,
        pid_ns: bool = True,
        memory: Optional[int] = None,
        env: Optional[List[str]] = None,
        edit: Optional[Callable[[Dict[str, Any]], None]] = None,
    ) -> str:
        bundle = tmp_path_factory.mktemp("bundle")
        spec = copy.deepcopy(base_spec)
        spec["root"] = {"path": rootfs, "readonly": True}
        spec["process"]["args"] = list(args) or ["true"]
        if env:
            spec["process"]["env"] += env
        spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]})
        if not pid_ns:
            spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"]
        if memory is not None:
            spec["linux"].setdefault("resources", {})["memory"] = {"limit": memory, "swap": memory}
        if edit is not None:
            edit(spec)
        (bundle / "config.json").write_text(json.dumps(spec))
        return str(bundle)

    return make


@pytest.fixture
def new_id() -> Callable[[], str]:
    """Unique container ids, recognisable as ocirt tests' own."""
    return lambda: f"ocirt-test-{os.getpid()}-{next(_ids)}"
