"""The `ocirt` command line: podman's verbs and flags, where they exist.

Exit codes: a container's own code for `run`, `wait` and `exec`; 125 for
ocirt's own errors (one line on stderr, the traceback with --log-level
debug); 126 and 127 when the container's command cannot run or is missing.

The verbs live in this package's modules (see parser.COMMANDS); a command
imports only its own verb's module.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import List, Optional, Sequence

from ..errors import ConmonError, OcirtError, Terminated, raise_terminated
from ..runtime import Runtime
from .common import EXIT_CANNOT_INVOKE, EXIT_ERROR, EXIT_NOT_FOUND, Out, Usage, log
from .parser import build_parser, command_of, verb_of

__all__ = ["Usage", "build_parser", "cannot_run_code", "command_of", "main"]


def cannot_run_code(error: OcirtError) -> int:
    """126/127 for a container command that cannot run, as podman reports them."""
    text = str(error).lower()
    if isinstance(error, ConmonError):
        if "permission denied" in text:
            return EXIT_CANNOT_INVOKE
        if "no such file or directory" in text or "executable file not found" in text:
            return EXIT_NOT_FOUND
    return EXIT_ERROR


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--log-level=debug" in argv or any(a == "--log-level" and argv[i + 1 : i + 2] == ["debug"] for i, a in enumerate(argv))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_terminated)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except Terminated as e:
        return 128 + e.signum
    except OcirtError as e:
        if debug:
            log.exception("ocirt failed")
        print(f"Error: {e}", file=sys.stderr)
        return cannot_run_code(e)
    except OSError as e:
        if debug:
            log.exception("ocirt failed")
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_ERROR


def _main(argv: List[str]) -> int:
    command = command_of(argv)
    args, unknown = build_parser(command).parse_known_args(argv)
    if unknown:
        where = f"ocirt {args.command}" if getattr(args, "command", None) else "ocirt"
        raise Usage(f"{where}: unknown flag {unknown[0]!r} (see {where} --help)")
    if getattr(args, "cmd", None) and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    if args.command == "exec" and not args.cmd:
        raise Usage("ocirt exec: a command is needed after the container name")
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    out: Out = lambda line: print(line, flush=True)  # noqa: E731
    verb = verb_of(args.command)
    if not verb.needs_runtime:
        return verb.run(None, args, out)  # type: ignore[arg-type]  # a verb without needs_runtime takes no Runtime
    options = {}
    if args.runtime:
        options["runtime_path"] = args.runtime
    if args.conmon:
        options["conmon_path"] = args.conmon
    with Runtime.open(args.root, **options) as rt:
        return verb.run(rt, args, out)
