"""The verbs that report: ps, inspect, logs, stats, top and info."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any, Dict, Optional

from .. import __version__, logs as logfile, native as _native
from ..container import Container
from ..errors import OcirtError
from ..runtime import Runtime
from ..state import ContainerStatus
from . import values
from .common import EXIT_ERROR, Out, Verb, names_option, no_options, report


def _ps_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-a", "--all", action="store_true", help="stopped and created ones too")
    sp.add_argument("--format", help="json, or a Go template such as 'table {{.ID}}\\t{{.Names}}' (default: the table)")
    sp.add_argument("-q", "--quiet", action="store_true", help="the ids only")
    sp.add_argument("--no-trunc", action="store_true", help="whole ids and commands")
    sp.add_argument("--noheading", action="store_true", help="no header row")
    sp.add_argument("-n", "--last", type=values.positive_int, metavar="N", help="the N most recently created (stopped ones too)")
    sp.add_argument("-l", "--latest", action="store_true", help="the most recently created (stopped ones too)")
    _filter_option(sp)
    sp.add_argument("--sync", action="store_true", help="ask the runtime for each container's status (default: the store and conmon's files)")


def _filter_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
        help="id=, name= (a regular expression), status=, label=KEY[=VALUE], exited=CODE; repeatable",
    )  # fmt: skip


def _inspect_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--format", help="json (the default), or a Go template such as '{{.State.Status}}'")
    names_option(sp)


def _logs_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the container exits")
    sp.add_argument("-t", "--timestamps", action="store_true", help="each line's time (RFC 3339, UTC) first")
    when = "an RFC 3339 time, a date, Unix seconds, or a duration like 10m"
    sp.add_argument("--since", type=values.when, help=f"only lines written since then: {when} ago")
    sp.add_argument("--until", type=values.until, help=f"only lines written until then: {when} from now (as podman)")
    sp.add_argument("-n", "--tail", type=values.tail, default=None, metavar="N", help="only the last N lines (-1: all; with -f, then all new ones)")
    sp.add_argument("name")


def _stats_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-stream", action="store_true", help="print once and exit")
    sp.add_argument("--format", choices=["table", "json"], default="table", help="a table for people, or JSON")
    sp.add_argument("-i", "--interval", type=values.positive_float, default=1.0, help="seconds between refreshes")
    sp.add_argument("names", nargs="*", help="containers (default: every running one)")


def _one_name(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("name")


def cmd_ps(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    from .. import gotemplate, reports  # only ps and inspect need them

    keep = reports.parse_filters(args.filter)
    template = None
    if args.format not in (None, "json", "table", "{{json .}}"):
        template = gotemplate.parse(args.format, reports.PS_HEADERS)
    everything = args.all or args.last or args.latest or args.filter
    listed = rt.list()
    for c in listed if args.sync else ():
        with contextlib.suppress(OcirtError):  # removed meanwhile, or a runtime that cannot tell: as the store says
            c.update_status()
    shown = [c for c in listed if (everything or c.state.status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED)) and keep(c)]
    if args.last or args.latest:
        shown = sorted(shown, key=lambda c: c.created_at)[-(1 if args.latest else args.last) :]
    now = time.time()
    if args.quiet:
        for c in shown:
            out(c.id if args.no_trunc else c.id[:12])
        return 0
    if args.format in ("json", "{{json .}}"):
        out(json.dumps([reports.ps_record(c, now) for c in shown], indent=2))
        return 0
    if template is None:
        template = gotemplate.parse(
            "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            dict(reports.PS_HEADERS, CreatedAt="CREATED"),
        )
        rows = [reports.ps_view(c, now, args.no_trunc) for c in shown]
        for row in rows:
            row["CreatedAt"] = row["RunningFor"]
    else:
        rows = [reports.ps_view(c, now, args.no_trunc) for c in shown]
    text = template.table(rows)
    if args.noheading and template.is_table:
        text = text.split("\n", 1)[1]
    sys.stdout.write(text)
    return 0


def cmd_inspect(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Each container in podman's inspect layout: a JSON list, or a template's line each."""
    from .. import gotemplate, reports  # only ps and inspect need them

    template = gotemplate.parse(args.format) if args.format not in (None, "json") else None
    found, code = [], 0
    for name in args.names:
        try:
            c = rt.get(name)
            found.append(reports.inspect_record(c, c.exec_sessions(), _live_limits(c)))
        except OcirtError as e:
            report(name, e)
            code = EXIT_ERROR
    if template is None:
        out(json.dumps(found, indent=2))
    else:
        sys.stdout.write(template.table(found))
    return code


def _live_limits(c: Container) -> Optional[Dict[str, Any]]:
    """The limits in force, while the container's cgroup is there to say."""
    if c.state.status not in (ContainerStatus.CREATED, ContainerStatus.RUNNING, ContainerStatus.PAUSED):
        return None
    try:
        return c.limits()
    except OcirtError:
        return None


def cmd_logs(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    c = rt.get(args.name)
    for record in c.logs(follow=args.follow, since=args.since, until=args.until, tail=args.tail):
        stream = sys.stdout if record.stream == "stdout" else sys.stderr
        prefix = logfile.format_time(record.time) + " " if args.timestamps else ""
        stream.write(prefix + record.text + "\n")
        stream.flush()
    return 0


def cmd_stats(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """Each container's resource use, once or refreshed every interval until Ctrl-C."""
    from ..statsview import StatsView  # only this verb needs it

    containers = [rt.get(n) for n in args.names] if args.names else [c for c in rt.list() if c.state.status is ContainerStatus.RUNNING]
    view = StatsView(containers, json_format=args.format == "json", clear=not args.no_stream and sys.stdout.isatty())
    try:
        out(view.render())
        while not args.no_stream:
            time.sleep(args.interval)  # the refresh rate, not a wait for anything
            out(view.render())
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_top(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """The container's processes, read from its cgroup: user, pid, parent, command."""
    import pwd

    from ..gotemplate import align  # only this verb needs it
    from ..layout import read_small

    rows = ["USER\tPID\tPPID\tCOMMAND"]
    for pid in rt.get(args.name).pids():
        try:
            text = read_small(f"/proc/{pid}/status").decode(errors="replace")
            status = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
            command = read_small(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # ended meanwhile
        uid = int(status.get("Uid", "0").split()[0])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rows.append(f"{user}\t{pid}\t{status.get('PPid', '').strip()}\t{command or status.get('Name', '').strip()}")
    sys.stdout.write(align(rows, min_width=8))
    return 0


def cmd_info(rt: Runtime, args: argparse.Namespace, out: Out) -> int:
    """What this ocirt runs with, as JSON."""
    import subprocess  # only this verb needs it

    from ..cgroups import hierarchies

    def version_of(path: str) -> str:
        try:
            proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        except OSError as e:
            return f"unavailable: {e.strerror}"
        return proc.stdout.splitlines()[0] if proc.stdout else ""

    mounts = hierarchies()
    info = {
        "version": __version__,
        "backend": _native.BACKEND,
        "runtime": {"path": rt.oci.path, "version": version_of(rt.oci.path)},
        "conmon": {"path": rt.launcher.conmon_path, "version": version_of(rt.launcher.conmon_path)},
        "cgroups": "v2" if all(h.version == 2 for h in mounts) else "v1" if all(h.version == 1 for h in mounts) else "hybrid",
        "root": rt.root,
        "run_dir": rt.tmp_dir,
        "containers": len(rt.list()),
    }
    out(json.dumps(info, indent=2))
    return 0


VERBS: Dict[str, Verb] = {
    "ps": Verb(_ps_options, cmd_ps),
    "inspect": Verb(_inspect_options, cmd_inspect),
    "logs": Verb(_logs_options, cmd_logs),
    "stats": Verb(_stats_options, cmd_stats),
    "info": Verb(no_options, cmd_info),
    "top": Verb(_one_name, cmd_top),
}
