"""Bridge networks on real runc, conmon and netavark: a server in a container
reached from the host by its published port and by its address, containers
reaching each other, ports chosen and refused, bad input, and nothing left
(namespace, veth, bridge, leases) on any way out. Traffic goes only to
127.0.0.1 and to the containers these tests make."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

import ocirt
import ocirt as ocirt_lib  # `ocirt` is the command line's fixture in tests that take it
from ocirt import InvalidArgument, InvalidState
from ocirt.networks import NETAVARK_PATHS, Networks, PortMapping, parse_publish

from .cli_support import reap_orphans
from .leaks import _network, firewall_rules

pytestmark = pytest.mark.skipif(not any(os.access(p, os.X_OK) for p in NETAVARK_PATHS), reason="netavark is not installed (.ci/install installs it)")

SERVER = ["nc", "-ll", "-p", "80", "-e", "echo", "hello"]  # answers every connection with one line


@pytest.fixture(autouse=True)
def no_firewall_rules_left():
    """Every rule netavark made for these tests' containers and networks goes with them."""
    before = firewall_rules()
    yield
    assert firewall_rules() - before == frozenset()


def answer(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        return s.makefile("rb").readline()


def test_a_server_is_reached_by_its_published_port_and_its_address_and_leaves_nothing(runtime):
    with runtime.run(SERVER, network="bridge", publish=["80", "127.0.0.1::80/udp"], detach=True) as c:
        assert c.ip is not None and c.ip.startswith("10.213.")
        [tcp, udp] = c.ports()
        tcp_port, udp_port = tcp[3], udp[3]
        assert (tcp[:3], udp[:3]) == ((80, "tcp", ""), (80, "udp", "127.0.0.1"))
        assert c.host_port(80) == tcp_port and c.host_port(80, "udp") == udp_port and tcp_port != 80
        assert c.wait_for_port(80, timeout=30) == ("127.0.0.1", tcp_port)
        assert answer("127.0.0.1", tcp_port) == b"hello\n"
        assert answer(c.ip, 80) == b"hello\n"
        other = runtime.run(["sh", "-c", f"nc {c.ip} 80 </dev/null; ip -4 -o addr show eth0"], network="bridge")
        assert other.exit_code == 0 and other.stdout.startswith("hello\n") and "10.213." in other.stdout  # another address of its own
        with pytest.raises(InvalidArgument, match="publishes no 81/tcp"):
            c.host_port(81)
    assert _network() == frozenset()  # the namespaces, veths, bridge and leases went with them


def test_a_pool_of_bridged_containers_gives_each_job_its_own_address_and_port(runtime):
    with runtime.pool(size=2, network="bridge", publish=["80"]) as pool:
        with pool.start(SERVER) as c:
            host, port = c.wait_for_port(80, timeout=30)
            assert answer(host, port) == b"hello\n"
            other = pool.run(["sh", "-c", "ip -4 -o addr show eth0"])
            assert other.exit_code == 0 and c.ip not in other.stdout and "10.213." in other.stdout
    runtime.finish_deletes()
    assert runtime.containers() == {} and _network() == frozenset()


def test_published_ports_are_refused_when_taken(runtime):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidState, match=f"host port {port}/tcp is taken"):
            runtime.run(["true"], network="bridge", publish=[f"{port}:80"])
    with runtime.run(SERVER, network="bridge", publish=["80"], detach=True) as c:
        with pytest.raises(InvalidState, match="is taken"):
            runtime.run(["true"], network="bridge", publish=[f"{c.host_port(80)}:80"])
    assert runtime.containers() == {} and _network() == frozenset()


@pytest.mark.parametrize(
    "spec, said",
    [("0", "from 1 to 65535"), ("8080:70000", "from 1 to 65535"), ("80/sctp", "tcp or udp"), ("x:80:80", "not an IPv4 address"),
     ("a:80", "host port"), ("", "[[IP:]HOSTPORT:]CONTAINERPORT")],
)  # fmt: skip
def test_a_bad_published_port_is_named(spec, said):
    with pytest.raises(InvalidArgument, match=said.replace("[", r"\[")):
        parse_publish(spec)


def test_published_ports_parse_as_podman_takes_them():
    assert parse_publish("8080:80") == PortMapping(80, 8080)
    assert parse_publish("127.0.0.1:8080:80/udp") == PortMapping(80, 8080, "udp", "127.0.0.1")
    assert parse_publish("127.0.0.1::80") == PortMapping(80, 0, "tcp", "127.0.0.1")
    assert parse_publish("53/udp") == PortMapping(53, 0, "udp")


def test_bad_input_is_refused_before_anything_is_made(runtime):
    with pytest.raises(InvalidArgument, match="no network named 'nosuch'"):
        runtime.run(["true"], network="nosuch")
    with pytest.raises(InvalidArgument, match="needs a bridge network"):
        runtime.run(["true"], publish=["80"])
    with pytest.raises(InvalidArgument, match="from 1 to 65535"):
        runtime.run(["true"], network="bridge", publish=["99999"])
    assert runtime.containers() == {} and os.listdir(runtime.dirs.containers) == [] and _network() == frozenset()


def test_a_named_network_has_its_own_bridge_and_subnet(runtime, tmp_path):
    networks = Networks()
    made = networks.create("ocirt-test-net", subnet="10.215.7.0/24")
    try:
        assert (made.subnet, made.gateway) == ("10.215.7.0/24", "10.215.7.1") and made.interface.startswith("ocirt")
        with pytest.raises(InvalidState, match="exists already"):
            networks.create("ocirt-test-net")
        with pytest.raises(InvalidState, match="overlaps"):
            networks.create("ocirt-test-other", subnet="10.215.0.0/16")
        with runtime.run(SERVER, network="ocirt-test-net", detach=True) as c:
            assert c.ip == "10.215.7.2"
            assert c.wait_for_port(80, timeout=30) == (c.ip, 80)  # no port published: at its own address
            assert answer(c.ip, 80) == b"hello\n"
            with pytest.raises(InvalidState, match="has containers on it"):
                networks.remove("ocirt-test-net")
    finally:
        networks.remove("ocirt-test-net")
    assert "ocirt-test-net" not in {n.name for n in networks.list()}
    with pytest.raises(InvalidState, match="built in"):
        networks.remove("bridge")


def test_containers_on_a_named_network_find_each_other_by_name(runtime):
    networks = Networks()
    networks.create("ocirt-test-dns", subnet="10.215.8.0/24")
    try:
        with runtime.run(SERVER, name="web", network="ocirt-test-dns", detach=True) as web:
            web.wait_for_port(80, timeout=30)
            script = "nc web 80 </dev/null; nslookup web | grep -q 'Address: 10.215.8.2' && echo named"
            asked = runtime.run(["sh", "-c", script], network="ocirt-test-dns")
            assert (asked.exit_code, asked.stdout) == (0, "hello\nnamed\n"), asked.stderr
            plain = runtime.run(["sh", "-c", "nslookup web"], network="bridge")  # the default network, as podman's, names nobody
            assert plain.exit_code != 0
    finally:
        networks.remove("ocirt-test-dns")
        reap_orphans()  # aardvark-dns, which netavark started, ends as this subreaper's child


def test_a_failed_create_leaves_no_network_behind(make_runtime, fakes_dir):
    env = {"PATH": os.environ["PATH"], "OCIRT_FAKE_FAIL": "create"}
    rt = make_runtime(runtime_path=os.path.join(fakes_dir, "runc-failing"), conmon_env=env)
    with pytest.raises(ocirt.ConmonError, match="create failed on purpose"):
        rt.run(["true"], network="bridge", publish=["80"])
    assert rt.containers() == {} and _network() == frozenset()


def test_a_forced_delete_after_conmon_died_takes_it_off_its_network(runtime):
    c = runtime.run(["sleep", "1000"], network="bridge", publish=["80"], detach=True)
    os.kill(c._monitor.conmon_pid, signal.SIGKILL)
    reap_orphans()
    c.delete(force=True)
    assert _network() == frozenset()


def test_a_killed_manager_leaves_nothing_that_recovery_does_not_remove(tmp_path):
    root = str(tmp_path / "root")
    script = textwrap.dedent(f"""
        import os, signal, ocirt
        rt = ocirt.Runtime.open({root!r})
        c = rt.run(["sleep", "1000"], network="bridge", publish=["80"], detach=True)
        print(c.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _network() != frozenset()  # its namespace, veth, bridge and leases are there
    rt = ocirt.Runtime.open(root)
    try:
        [c] = rt.list()
        assert c.id == proc.stdout.strip() and c.ip is not None
        c.delete(force=True)
    finally:
        rt.close()
        reap_orphans()
    assert _network() == frozenset()


def test_the_command_line_publishes_shows_and_removes(ocirt):
    server = ["busybox", "nc", "-ll", "-p", "80", "-e", "echo", "hi"]
    cid = ocirt.ok("run", "-d", "--name", "web", "--network", "bridge", "-p", "127.0.0.1::80", *server).strip()
    [line] = ocirt.ok("port", "web").splitlines()
    assert line.startswith("80/tcp -> 127.0.0.1:")
    host_port = int(line.rsplit(":", 1)[1])
    assert ocirt.ok("port", "web", "80") == f"127.0.0.1:{host_port}\n"
    shown = json.loads(ocirt.ok("inspect", "web"))[0]["NetworkSettings"]
    assert shown["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]} and shown["IPAddress"].startswith("10.213.")
    assert f"127.0.0.1:{host_port}->80/tcp" in ocirt.ok("ps")
    rt = ocirt_lib.Runtime.open(ocirt.root)
    try:
        assert rt.get(cid).wait_for_port(80, timeout=30) == ("127.0.0.1", host_port)
    finally:
        rt.close()
    assert answer("127.0.0.1", host_port) == b"hi\n"
    assert ocirt.ok("run", "--rm", "--network", "bridge", "busybox", "sh", "-c", f"nc {shown['IPAddress']} 80 </dev/null") == "hi\n"
    ocirt.ok("rm", "-f", "web")
    assert _network() == frozenset()


@pytest.mark.parametrize(
    "args, said",
    [(["--network", "nosuch"], "no network named 'nosuch'"), (["-p", "80"], "needs a bridge network"),
     (["--network", "bridge", "-p", "70000"], "from 1 to 65535"), (["--network", "bridge", "-p", "1.2.3.4.5:80:80"], "not an IPv4 address")],
)  # fmt: skip
def test_the_command_line_refuses_bad_networks_and_ports_with_125(ocirt, args, said):
    proc = ocirt("run", "--rm", *args, "busybox", "true")
    assert proc.returncode == 125 and said in proc.stderr, proc.stderr
    assert ocirt.ok("ps", "-a", "-q") == "" and _network() == frozenset()


def test_network_create_ls_rm(ocirt):
    assert ocirt.ok("network", "create", "--subnet", "10.215.9.0/24", "ocirt-test-cli") == "ocirt-test-cli\n"
    try:
        listed = {n["name"]: n for n in json.loads(ocirt.ok("network", "ls", "--format", "json"))}
        assert listed["ocirt-test-cli"]["subnets"] == [{"subnet": "10.215.9.0/24", "gateway": "10.215.9.1"}] and "bridge" in listed
        assert ocirt.ok("run", "--rm", "--network", "ocirt-test-cli", "busybox", "sh", "-c", "ip -4 -o addr show eth0").split()[3] == "10.215.9.2/24"
        assert ocirt("network", "create", "ocirt-test-cli").returncode == 125
    finally:
        assert ocirt.ok("network", "rm", "ocirt-test-cli") == "ocirt-test-cli\n"
    assert ocirt("network", "rm", "ocirt-test-cli").returncode == 1
