"""Bridge networks: a container with an address of its own, and its ports
published on the host, through netavark (podman 4's network backend),
never a hand-made bridge.

netavark makes the bridge, each container's veth and the firewall rules
(NAT and published ports; iptables here). It leaves addresses to its
caller: ocirt keeps its own configuration and allocation, host-wide (a
bridge and its subnet are the host's, whatever root a container's record
is in), under DEFAULT_DIR (0700):

    networks.json   the networks made with `network create` (the default
                    one, DEFAULT, is built in): name, subnet, gateway, bridge
    leases.json     each network's addresses and each published host port,
                    with the container and network namespace holding them
    lock            flock(2)ed around every change of leases or networks
    netavark/       netavark's own state (its --config)

A bridged container's network namespace is a file in its run dir, made
before the create (see attach) and named in its spec; the Attachment goes
in its record, so that whichever process deletes it undoes it (detach):
netavark's teardown (the bridge goes with its last container), the
namespace, the leases. A lease whose namespace file is no longer mounted
(a crash the record did not survive, a reboot) is free again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import native
from .errors import InvalidArgument, InvalidState, OcirtError
from .layout import NETWORK_DIR, PRIVATE_DIR, read_small, write_private

DEFAULT = "bridge"  # podman's name for the default network; ocirt's own bridge and subnet
DEFAULT_SUBNET = "10.213.0.0/16"  # not podman's 10.88.0.0/16, nor the 10.89.x.0/24 its `network create` takes first
DEFAULT_INTERFACE = "ocirt0"
DEFAULT_DIR = NETWORK_DIR
NETAVARK_PATHS = ("/usr/libexec/podman/netavark", "/usr/lib/podman/netavark")
AARDVARK_PATHS = ("/usr/libexec/podman/aardvark-dns", "/usr/lib/podman/aardvark-dns")  # netavark's default is the first
PROTOCOLS = ("tcp", "udp")
MAX_JSON = 4 << 20
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


class NetworkError(OcirtError):
    """netavark failed, or a network's state is not what ocirt wrote."""


@dataclass(frozen=True)
class Network:
    """A bridge network: `subnet` (IPv4, CIDR), its `gateway` on the host's
    bridge `interface`; with `dns`, its containers find each other by name
    (aardvark-dns, which netavark runs, answering at the gateway)."""

    name: str
    subnet: str
    gateway: str
    interface: str
    created_at: float = 0.0
    dns: bool = False

    @property
    def id(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def netavark_info(self) -> Dict[str, Any]:
        return {
            "name": self.name, "id": self.id, "driver": "bridge", "network_interface": self.interface,
            "subnets": [{"subnet": self.subnet, "gateway": self.gateway}], "ipv6_enabled": False, "internal": False,
            "dns_enabled": self.dns, "ipam_options": {"driver": "host-local"},
        }  # fmt: skip

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name, "subnet": self.subnet, "gateway": self.gateway, "interface": self.interface,
            "created_at": self.created_at, "dns": self.dns,
        }  # fmt: skip


def make_network(name: str, subnet: str, interface: str, dns: bool = False) -> Network:
    """A Network, checked: InvalidArgument naming a bad name, subnet or interface."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"a network's name is letters, digits, '_', '.' and '-' (64 at most), not {name!r}")
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"subnet {subnet!r} is not an IPv4 network in CIDR form (e.g. 10.214.0.0/24): {e}") from e
    if net.prefixlen > 29:
        raise InvalidArgument(f"subnet {subnet} is too small: give a /29 or larger")
    if not re.match(r"^[a-zA-Z0-9_.-]{1,15}$", interface):
        raise InvalidArgument(f"bridge interface name {interface!r} is not one Linux takes (15 characters at most)")
    return Network(name, str(net), str(net.network_address + 1), interface, time.time(), dns)


@dataclass(frozen=True)
class PortMapping:
    """A published port: `host_ip`:`host_port` on the host to `container_port`
    in the container (host_ip "" is every address of the host)."""

    container_port: int
    host_port: int = 0  # 0: a free one, chosen at attach
    protocol: str = "tcp"
    host_ip: str = ""

    def netavark(self) -> Dict[str, Any]:
        return {"host_ip": self.host_ip, "container_port": self.container_port, "host_port": self.host_port, "range": 1, "protocol": self.protocol}

    def to_dict(self) -> Dict[str, Any]:
        return {"container_port": self.container_port, "host_port": self.host_port, "protocol": self.protocol, "host_ip": self.host_ip}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PortMapping":
        return cls(int(d["container_port"]), int(d["host_port"]), str(d["protocol"]), str(d["host_ip"]))

    def __str__(self) -> str:
        """As podman's `port` prints it: 0.0.0.0:8080 (its host side)."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}"

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.host_port}"


def parse_publish(spec: str) -> PortMapping:
    """`-p` as podman takes it: [[IP:]HOSTPORT:]CONTAINERPORT[/tcp|udp]
    (no HOSTPORT, or an empty one: a free port chosen). InvalidArgument naming the value."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgument(f"a published port is [[IP:]HOSTPORT:]CONTAINERPORT[/tcp|udp], not {spec!r}")
    body, _, protocol = spec.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise InvalidArgument(f"published port {spec!r}: the protocol is tcp or udp, not {protocol!r}")
    parts = body.rsplit(":", 2)
    host_ip, host, container = ([""] * (3 - len(parts)) + parts) if len(parts) < 3 else parts
    if host_ip:
        try:
            ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise InvalidArgument(f"published port {spec!r}: {host_ip!r} is not an IPv4 address of the host") from None
    return PortMapping(_port(container, spec, "container"), _port(host, spec, "host") if host else 0, protocol, host_ip)


def _port(text: str, spec: str, side: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= 65535:
        raise InvalidArgument(f"published port {spec!r}: the {side} port must be a number from 1 to 65535, not {text!r}")
    return int(text)


@dataclass
class Attachment:
    """A container on a network: what its record keeps, to show and to undo."""

    network: str
    address: str
    prefix: int
    gateway: str
    mac: str
    netns: str
    ports: List[PortMapping] = field(default_factory=list)
    dns: List[str] = field(default_factory=list)  # name servers that answer for the network's names
    search: List[str] = field(default_factory=list)  # their domain

    def to_dict(self) -> Dict[str, Any]:
        return {
            "network": self.network, "address": self.address, "prefix": self.prefix, "gateway": self.gateway,
            "mac": self.mac, "netns": self.netns, "ports": [p.to_dict() for p in self.ports], "dns": self.dns, "search": self.search,
        }  # fmt: skip

    def resolv_conf(self) -> bytes:
        """/etc/resolv.conf for a container on a network with DNS."""
        return "".join([f"search {' '.join(self.search)}\n" if self.search else "", *(f"nameserver {s}\n" for s in self.dns)]).encode()


class Networks:
    """The host's ocirt networks (see the module docstring) under `directory`."""

    def __init__(self, directory: str = DEFAULT_DIR, netavark: Optional[str] = None) -> None:
        self.dir = directory
        self._netavark_path = netavark

    # -- networks -----------------------------------------------------------------

    def list(self) -> List[Network]:
        """Every network: the default one first."""
        made = self._load("networks.json")
        try:
            return [self.default(), *(Network(**made[name]) for name in sorted(made))]
        except TypeError as e:
            raise NetworkError(f"{os.path.join(self.dir, 'networks.json')} is not ocirt's: {e}") from e

    @staticmethod
    def default() -> Network:
        return Network(DEFAULT, DEFAULT_SUBNET, str(ipaddress.IPv4Network(DEFAULT_SUBNET).network_address + 1), DEFAULT_INTERFACE)

    def get(self, name: str) -> Network:
        """The network `name`; InvalidArgument when there is none (the bad value of an option)."""
        for net in self.list():
            if net.name == name:
                return net
        raise InvalidArgument(f"no network named {name!r} (see `ocirt network ls`)")

    def create(self, name: str, subnet: Optional[str] = None, interface: Optional[str] = None, dns: bool = True) -> Network:
        """Record the network `name`: `subnet` (default: the first free /24
        of 10.214.0.0/16 up), its bridge `interface` (default: ocirt<N>),
        with `dns` its containers named in it (as podman's networks are; the
        default one, as podman's, has none). InvalidArgument for a bad
        value, InvalidState for a name or subnet taken."""
        with self._locked():
            made = self._load("networks.json")
            nets = self.list()
            if name in {n.name for n in nets}:
                raise InvalidState(f"a network named {name!r} exists already")
            taken = [ipaddress.IPv4Network(n.subnet) for n in nets]
            if subnet is None:
                subnet = next(
                    str(c) for c in ipaddress.IPv4Network("10.214.0.0/15").subnets(new_prefix=24) if not any(c.overlaps(t) for t in taken)
                )
            interface = interface or next(f"ocirt{i}" for i in range(1, 10_000) if f"ocirt{i}" not in {n.interface for n in nets})
            net = make_network(name, subnet, interface, dns)
            for other in nets:
                if ipaddress.IPv4Network(other.subnet).overlaps(ipaddress.IPv4Network(net.subnet)):
                    raise InvalidState(f"subnet {net.subnet} overlaps network {other.name}'s {other.subnet}")
                if other.interface == net.interface:
                    raise InvalidState(f"bridge {net.interface} is network {other.name}'s")
            made[name] = net.to_dict()
            self._save("networks.json", made)
        return net

    def remove(self, name: str) -> Network:
        """Forget the network `name`: InvalidState while a container is on it,
        or for the default one; InvalidArgument if there is none."""
        with self._locked():
            net = self.get(name)
            if name == DEFAULT:
                raise InvalidState(f"the default network {DEFAULT!r} is built in: it cannot be removed")
            if self._live_leases(self._load("leases.json")).get(name, {}).get("addresses"):
                raise InvalidState(f"network {name!r} has containers on it: remove them first")
            made = self._load("networks.json")
            made.pop(name, None)
            self._save("networks.json", made)
        return net

    # -- containers ---------------------------------------------------------------

    def attach(self, cid: str, name: str, network: str, ports: Sequence[PortMapping], netns: str) -> Attachment:
        """Put container `cid` (called `name`) on `network`: a free address
        and host ports leased, its namespace made at `netns` (a new file),
        netavark's setup. On failure nothing of it is left. InvalidArgument
        for an unknown network, InvalidState for a host port taken."""
        net = self.get(network)
        with self._locked():
            leases = self._live_leases(self._load("leases.json"))
            addresses = leases.setdefault(net.name, {}).setdefault("addresses", {})
            published = leases.setdefault("", {}).setdefault("ports", {})
            address = _free_address(net, addresses)
            chosen = _host_ports(ports, published)
            holder = {"container": cid, "netns": netns}
            addresses[address] = holder
            for p in chosen:
                published[p.key] = {**holder, "mapping": p.to_dict()}
            self._save("leases.json", leases)  # first: whatever is made from here on, detach finds by them
            try:
                native.netns_make(netns)
                answer = self._netavark("setup", netns, self._options(cid, name, net, address, chosen))
                mine = answer[net.name]
                mac = str(mine["interfaces"]["eth0"]["mac_address"])
                dns, search = [str(s) for s in mine.get("dns_server_ips") or []], [str(s) for s in mine.get("dns_search_domains") or []]
            except BaseException as e:
                self._undo(cid, name, netns, leases)
                if isinstance(e, (KeyError, TypeError)):
                    raise NetworkError(f"netavark's setup answer is not what ocirt knows: {e!r}") from e
                raise
        return Attachment(net.name, address, ipaddress.IPv4Network(net.subnet).prefixlen, net.gateway, mac, netns, chosen, dns, search)

    def detach(self, cid: str, name: str, netns: str) -> List[str]:
        """Undo attach for container `cid` (called `name`), whose namespace
        file is `netns`: netavark's teardown of what its leases say (while the
        namespace is there), the namespace, the leases. Whatever is gone
        already is passed over; the errors met (an empty list: all undone)."""
        with self._locked():
            return self._undo(cid, name, netns, self._load("leases.json"))

    def _undo(self, cid: str, name: str, netns: str, leases: Dict[str, Any]) -> List[str]:
        """detach, under the lock, on `leases` as loaded (saved without cid's)."""
        errors: List[str] = []
        ports = [PortMapping.from_dict(h["mapping"]) for h in leases.get("", {}).get("ports", {}).values() if h.get("container") == cid]
        for network, per in leases.items():
            addresses = [a for a, h in per.get("addresses", {}).items() if h.get("container") == cid]
            if not network or not addresses or not os.path.ismount(netns):
                continue
            try:
                self._netavark("teardown", netns, self._options(cid, name, self.get(network), addresses[0], ports))
            except (InvalidArgument, NetworkError) as e:
                errors.append(str(e))
        try:
            native.netns_remove(netns)
        except OSError as e:
            errors.append(f"cannot remove network namespace {netns}: {e.strerror}")
        for per in leases.values():
            for kind in ("addresses", "ports"):
                for key, holder in list(per.get(kind, {}).items()):
                    if holder.get("container") == cid:
                        del per[kind][key]
        self._save("leases.json", leases)
        return errors

    def _options(self, cid: str, name: str, net: Network, address: str, ports: Sequence[PortMapping]) -> Dict[str, Any]:
        return {
            "container_id": cid, "container_name": name, "port_mappings": [p.netavark() for p in ports],
            "networks": {net.name: {"static_ips": [address], "interface_name": "eth0", **({"aliases": [name]} if net.dns else {})}},
            "network_info": {net.name: net.netavark_info()},
        }  # fmt: skip

    def _netavark(self, verb: str, netns: str, options: Dict[str, Any]) -> Dict[str, Any]:
        binary = self._netavark_path or next((p for p in NETAVARK_PATHS if os.access(p, os.X_OK)), None) or shutil.which("netavark")
        if binary is None:
            raise NetworkError("netavark is not installed (Debian's netavark package): bridge networks need it")
        config = os.path.join(self.dir, "netavark")
        os.makedirs(config, mode=PRIVATE_DIR, exist_ok=True)
        aardvark = next((["--aardvark-binary", p] for p in AARDVARK_PATHS if os.access(p, os.X_OK)), [])
        try:
            proc = subprocess.run(
                [binary, "--config", config, *aardvark, verb, netns], input=json.dumps(options), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            raise NetworkError(f"netavark {verb} could not run: {e}") from e
        if proc.returncode != 0:
            said = proc.stderr.strip().splitlines()
            raise NetworkError(f"netavark {verb} failed: {said[-1] if said else f'exit status {proc.returncode}'}")
        if verb != "setup":
            return {}
        try:
            answer = json.loads(proc.stdout)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError as e:
            raise NetworkError(f"netavark {verb} answered what is not its JSON: {e}") from e
        return answer

    # -- the files ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.dir, mode=PRIVATE_DIR, exist_ok=True)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load(self, name: str) -> Dict[str, Any]:
        try:
            data = json.loads(read_small(os.path.join(self.dir, name), MAX_JSON))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise NetworkError(f"{os.path.join(self.dir, name)} cannot be read: {e}") from e
        if not isinstance(data, dict):
            raise NetworkError(f"{os.path.join(self.dir, name)} is not ocirt's")
        return data

    def _save(self, name: str, data: Dict[str, Any]) -> None:
        write_private(os.path.join(self.dir, name), json.dumps(data).encode())

    @staticmethod
    def _live_leases(leases: Dict[str, Any]) -> Dict[str, Any]:
        """`leases` without those whose namespace file is no longer mounted."""
        for per in leases.values():
            for kind in ("addresses", "ports"):
                for key, holder in list(per.get(kind, {}).items()):
                    if not (isinstance(holder, dict) and os.path.ismount(str(holder.get("netns")))):
                        del per[kind][key]
        return leases


def _free_address(net: Network, leased: Dict[str, Any]) -> str:
    subnet = ipaddress.IPv4Network(net.subnet)
    for host in subnet.hosts():
        text = str(host)
        if text != net.gateway and text not in leased:
            return text
    raise InvalidState(f"network {net.name} ({net.subnet}) has no free address left")


def _host_ports(ports: Sequence[PortMapping], leased: Dict[str, Any]) -> List[PortMapping]:
    """`ports` with each host port chosen or checked: free on the host (a bind
    succeeds) and not published by another container. InvalidState naming a taken one."""
    chosen: List[PortMapping] = []
    for p in ports:
        for _ in range(1 if p.host_port else 64):  # a port the kernel picks may be one a container publishes
            bound = _bindable(p.host_ip, p.host_port, p.protocol)
            if bound is not None and f"{p.protocol}/{bound}" not in leased and all(c.key != f"{p.protocol}/{bound}" for c in chosen):
                break
        else:
            raise InvalidState(f"host port {p.host_port or '(any)'}/{p.protocol} is taken: another process or container has it")
        chosen.append(PortMapping(p.container_port, bound, p.protocol, p.host_ip))
    return chosen


def _bindable(host_ip: str, port: int, protocol: str) -> Optional[int]:
    """The port a socket could bind on `host_ip` (`port` 0: one the kernel
    picks), or None when it is taken."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host_ip, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return None
            if e.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(f"{host_ip} is not an address of this host: no port can be published on it") from e
            raise
        return int(s.getsockname()[1])

