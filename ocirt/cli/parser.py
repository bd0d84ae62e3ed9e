"""The argument parser: the COMMANDS table (each verb's help and module), and
a parser that defines only the options of the command being run."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Dict, Optional, Sequence, Tuple

from .. import __version__
from .common import Usage, Verb


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        raise Usage(f"{self.prog}: {message}")


EXIT_CODES = """exit codes:
  0    done (run, start -a, attach, exec: the container's or process's own code)
  1    rm: a name matched no container
  2    rm: the container is running (use -f)
  125  ocirt itself failed, or the command line was wrong
  126  the container's command could not be run
  127  the container's command was not found"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help (where it has one to show and the
    help does not already say), and the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


# name: (help, the module of ocirt.cli whose VERBS has it), in the order of --help
COMMANDS: Dict[str, Tuple[str, str]] = {
    "run": ("create, start and wait for a container", "create"),
    "create": ("create a container", "create"),
    "start": ("start containers", "attached"),
    "attach": ("attach to a running container's output (and input)", "attached"),
    "pause": ("pause containers", "manage"),
    "unpause": ("resume containers", "manage"),
    "restart": ("stop and start containers again", "manage"),
    "wait": ("wait for containers to exit (or to reach a --condition)", "manage"),
    "stop": ("stop containers", "manage"),
    "kill": ("signal containers", "manage"),
    "rm": ("remove containers", "manage"),
    "ps": ("list containers", "show"),
    "pull": ("pull an image from a registry, an OCI layout or an archive", "images"),
    "images": ("list images", "images"),
    "rmi": ("remove images", "images"),
    "load": ("load the images of a docker-archive or oci-archive", "images"),
    "save": ("write an image to an oci-archive", "images"),
    "image": ("image subcommands: prune (remove what no image uses; -a: unused images too), inspect", "images"),
    "inspect": ("show containers as JSON", "show"),
    "logs": ("show a container's output", "show"),
    "exec": ("run a command in a running container", "attached"),
    "stats": ("show containers' resource use", "show"),
    "update": ("change running containers' limits", "manage"),
    "bench": ("run a command in many containers, K at a time, and report", "tools"),
    "version": ("print versions", "tools"),
    "info": ("show what ocirt runs with: versions, cgroups, directories", "show"),
    "top": ("show the processes of a running container (from its cgroup)", "show"),
    "container": ("container subcommands: prune (remove every stopped container)", "manage"),
    "pool": ("pool subcommands: create, ls, rm, fill (containers kept ready for run --pool)", "pools"),
    "network": ("network subcommands: create, ls, rm (bridge networks)", "networks"),
    "port": ("show the ports a container publishes", "networks"),
    "completion": ("print a completion script for bash, zsh or fish", "tools"),
    "cleanup": ("", "tools"),  # conmon's exit command for `run -d --rm`; not for people
}
_GLOBAL_WITH_VALUE = ("--root", "--log-level", "--runtime", "--conmon")


def verb_of(name: str) -> Verb:
    """The Verb of command `name`, its module imported (only it)."""
    module = importlib.import_module("." + COMMANDS[name][1], __package__)
    found: Verb = module.VERBS[name]
    return found


def build_parser(command: Optional[str] = None) -> Parser:
    """The whole parser; with `command`, only that subcommand (what a
    single run parses is all it needs: each subparser costs a command's
    start-up time). Internal commands (conmon's exit command) are not listed."""
    p = Parser(prog="ocirt", description="Run OCI containers with conmon and runc, no daemon.", epilog=EXIT_CODES, formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"ocirt version {__version__}")
    p.add_argument("--root", help="state directory (default: $OCIRT_ROOT, else /var/lib/ocirt)")
    p.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="what ocirt logs on stderr (debug: with tracebacks)"
    )
    p.add_argument("--runtime", help="OCI runtime binary (default: runc on PATH)")
    p.add_argument("--conmon", help="conmon binary (default: conmon on PATH)")
    shown = [name for name, (text, _) in COMMANDS.items() if text]
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{" + ",".join(shown) + "}")
    for name, (text, _) in COMMANDS.items():
        if command is not None and command != name:
            continue
        extra: Dict[str, Any] = dict(help=text, description=text.capitalize() + ".") if text else {}
        verb_of(name).options(sub.add_parser(name, epilog=EXIT_CODES, formatter_class=_Help, **extra))
    return p


def command_of(argv: Sequence[str]) -> Optional[str]:
    """The subcommand `argv` names (skipping the global options and their values), or None."""
    args = iter(argv)
    for arg in args:
        if arg in _GLOBAL_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None
