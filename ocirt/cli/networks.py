"""`network create|ls|rm` and `port`: ocirt's bridge networks (see
ocirt.networks) and the ports a container publishes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict

from ..errors import InvalidArgument
from ..networks import Networks
from ..runtime import Runtime
from .common import EXIT_NO_SUCH, Out, Usage, Verb


def _network_options(sp: argparse.ArgumentParser) -> None:
    actions = sp.add_subparsers(dest="action", required=True, metavar="{create,ls,rm}")
    create = actions.add_parser("create", help="make a bridge network", description="Make a bridge network.")
    create.add_argument("--subnet", help="its IPv4 subnet, e.g. 10.214.3.0/24 (default: the first free /24 from 10.214.0.0)")
    create.add_argument("--interface-name", help="its bridge's name on the host (default: ocirt<N>)")
    create.add_argument("--disable-dns", action="store_true", help="no names: its containers reach each other by address only")
    create.add_argument("name")
    ls = actions.add_parser("ls", help="list networks", description="List networks.")
    ls.add_argument("--format", choices=["table", "json"], default="table", help="how to print them")
    ls.add_argument("-q", "--quiet", action="store_true", help="only their names")
    rm = actions.add_parser("rm", help="remove networks no container is on", description="Remove networks no container is on.")
    rm.add_argument("names", nargs="+")


def cmd_network(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    networks = Networks(rt.network_dir)
    if args.action == "create":
        out(networks.create(args.name, args.subnet, args.interface_name, dns=not args.disable_dns).name)
        return 0
    if args.action == "rm":
        code = 0
        for name in args.names:
            try:
                networks.remove(name)
            except InvalidArgument as e:  # no such network
                print(f"Error: {e}", file=sys.stderr)
                code = EXIT_NO_SUCH
                continue
            out(name)
        return code
    nets = networks.list()
    if args.quiet:
        for n in nets:
            out(n.name)
    elif args.format == "json":
        shown = [
            {
                "name": n.name, "driver": "bridge", "network_interface": n.interface, "dns_enabled": n.dns,
                "subnets": [{"subnet": n.subnet, "gateway": n.gateway}],
            }  # fmt: skip
            for n in nets
        ]
        out(json.dumps(shown, indent=2))
    else:
        rows = [("NAME", "DRIVER", "SUBNET", "INTERFACE")] + [(n.name, "bridge", n.subnet, n.interface) for n in nets]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _port_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name", help="the container")
    sp.add_argument("port", nargs="?", help="only this port: PORT[/tcp|udp]")


def cmd_port(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """podman's `port`: each published port as 80/tcp -> 0.0.0.0:8080; with a
    port given, only its host side (125 if it is not published)."""
    c = rt.get(args.name)
    ports = c.ports()
    if args.port is None:
        for inner, proto, host, outer in ports:
            out(f"{inner}/{proto} -> {host or '0.0.0.0'}:{outer}")
        return 0
    number, _, proto = args.port.partition("/")
    if not number.isdecimal():
        raise Usage(f"ocirt port: {args.port!r} is not PORT[/tcp|udp]")
    found = [f"{host or '0.0.0.0'}:{outer}" for inner, p, host, outer in ports if inner == int(number) and p == (proto or "tcp")]
    if not found:
        raise InvalidArgument(f"container {c.name} publishes no {number}/{proto or 'tcp'}")
    for line in found:
        out(line)
    return 0


VERBS: Dict[str, Verb] = {"network": Verb(_network_options, cmd_network), "port": Verb(_port_options, cmd_port)}
