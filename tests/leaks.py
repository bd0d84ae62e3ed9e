"""What a test may leave behind, as snapshots to compare before and after."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import FrozenSet

import psutil

from ocirt import native
from ocirt.cgroups import Cgroupfs, hierarchies
from ocirt.layout import NETWORK_DIR

CGROUP_ROOT = "/sys/fs/cgroup"
_NETNS = re.compile(r"/containers/[^/]+/netns$")  # a container's namespace file in an ocirt run dir
RUNC_ROOT = "/run/runc"


def _cgroup_dirs() -> FrozenSet[str]:
    """Every cgroup named *ocirt*, and every level of the parent path ocirt
    puts them under in each hierarchy (made for them where missing): on a
    pure v2 host the top level is itself a cgroup."""
    found = set()
    for root, dirs, _ in os.walk(CGROUP_ROOT):
        found.update(os.path.join(root, d) for d in dirs if "ocirt" in d)
    base = Cgroupfs().base() or "/"
    for h in hierarchies():
        path = h.mountpoint
        for part in filter(None, base.split("/")):
            path = os.path.join(path, part)
            if os.path.isdir(path):
                found.add(path)
    return frozenset(found)


def _runc_containers() -> FrozenSet[str]:
    try:
        return frozenset(os.listdir(RUNC_ROOT))
    except FileNotFoundError:
        return frozenset()


def _conmons() -> FrozenSet[str]:
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == "conmon":
                out.add(f"{p.pid} ({p.status()})")
        except psutil.NoSuchProcess:
            pass
    return frozenset(out)


def _fds() -> FrozenSet[str]:
    """Open fds, less the idle inotify instances ocirt keeps for reuse (bounded)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except FileNotFoundError:
            pass  # the fd listdir itself used
    inotify = {f for f in out if f.endswith("anon_inode:inotify")}
    pooled = sum(native.load(b).inotify_pool_size() for b in native.BACKENDS)  # each keeps <= 8
    assert len(inotify) <= pooled, "inotify instances leaked"
    return frozenset(out - inotify)


def _network() -> FrozenSet[str]:
    """What bridge networks leave: network namespace mounts, ocirt's bridges
    and the veths on them, the leases of addresses and host ports."""
    found = set()
    with open("/proc/self/mountinfo") as f:
        found.update(f"netns mount {line.split()[4]}" for line in f if _NETNS.search(line.split()[4]))
    for iface in os.listdir("/sys/class/net"):
        master = os.path.join("/sys/class/net", iface, "master")
        if iface.startswith("ocirt") or (os.path.islink(master) and os.path.basename(os.readlink(master)).startswith("ocirt")):
            found.add(f"interface {iface}")
    try:
        with open(os.path.join(NETWORK_DIR, "leases.json")) as f:
            leases = json.load(f)
    except FileNotFoundError:
        leases = {}
    for network, per in leases.items():
        for kind, held in per.items():
            found.update(f"lease {network or '(host)'} {kind} {key}: {holder.get('container')}" for key, holder in held.items())
    return frozenset(found)


# netavark's own chains, made once and shared by every network (podman's too): never a container's
NETAVARK_BASE = ("NETAVARK-HOSTPORT-DNAT", "NETAVARK-HOSTPORT-MASQ", "NETAVARK-HOSTPORT-SETMARK", "NETAVARK_FORWARD")


def firewall_rules() -> FrozenSet[str]:
    """The iptables rules and chains netavark made for networks and
    containers: those naming a chain of its own other than its shared base
    chains, or an address. Costs an iptables-save: the network tests look,
    not every test."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    rules = set()
    for line in out.splitlines():
        chains = set(re.findall(r"NETAVARK[-_][A-Za-z0-9_-]+", line))
        if chains - set(NETAVARK_BASE) or (chains and re.search(r"\b\d+\.\d+\.\d+\.\d+", line)):
            rules.add(f"firewall: {line}")
    return frozenset(rules)


@dataclass(frozen=True)
class Snapshot:
    cgroups: FrozenSet[str]
    runc: FrozenSet[str]
    conmons: FrozenSet[str]
    fds: FrozenSet[str]
    network: FrozenSet[str]

    @classmethod
    def take(cls) -> "Snapshot":
        return cls(_cgroup_dirs(), _runc_containers(), _conmons(), _fds(), _network())

    def leaks_since(self, before: "Snapshot") -> list[str]:
        """Human-readable lines for everything new since `before`."""
        lines = []
        for name in ("cgroups", "runc", "conmons", "fds", "network"):
            new = getattr(self, name) - getattr(before, name)
            lines += [f"{name}: {item}" for item in sorted(new)]
        return lines
