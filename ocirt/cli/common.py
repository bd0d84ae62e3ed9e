"""What the verb modules share: Usage, exit codes, the Verb record, and the
helpers that apply a verb to each container named."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import sys
from typing import Callable, Iterable, Iterator, List, NamedTuple, Optional

from ..container import Container
from ..errors import ContainerNotFound, OcirtError
from ..runtime import Runtime

STOP_TIMEOUT = 10  # seconds a container gets to stop before SIGKILL, as podman's default
EXIT_ERROR = 125
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
EXIT_NO_SUCH = 1  # rm: a name that matches no container (podman's code)
EXIT_IN_USE = 2  # rm: a running container without -f (podman's code)

log = logging.getLogger("ocirt")

Out = Callable[[str], None]  # prints one line of a verb's output


class Usage(OcirtError):
    """A bad command line (argparse's own errors are turned into this)."""


class Verb(NamedTuple):
    """A subcommand: `options` defines its arguments on its parser, `run`
    carries it out (its exit code); without `needs_runtime`, `run` gets None
    for the Runtime, and no state directory is opened."""

    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Runtime, argparse.Namespace, Out], int]
    needs_runtime: bool = True


def no_options(sp: argparse.ArgumentParser) -> None:
    """A verb that takes no arguments."""


def names_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("names", nargs="+")


def report(name: str, error: OcirtError) -> None:
    """One line on stderr for a failed name; the traceback at --log-level debug."""
    log.debug("%s failed", name, exc_info=error)
    print(f"Error: {name}: {error}", file=sys.stderr)


def each(
    rt: Runtime,
    names: Iterable[str],
    action: Callable[[Container], Optional[str]],
    out: Out,
    *,
    ignore: bool = False,
    picked: bool = False,
) -> int:
    """Apply `action` to each named container; report errors per name, like
    podman. A name that matches none is skipped silently with `ignore`, or
    when `picked` (by -a or --filter: removed meanwhile)."""
    code = 0
    for name in names:
        try:
            result = action(rt.get(name))
        except ContainerNotFound as e:
            if not (ignore or picked):
                report(name, e)
                code = EXIT_ERROR
            continue
        except OcirtError as e:
            report(name, e)
            code = EXIT_ERROR
            continue
        out(result if result is not None else name)
    return code


def chosen(rt: Runtime, args: argparse.Namespace) -> List[str]:
    """The containers a verb's names, --cidfile, -a and --filter pick (names
    first, as given). A missing --cidfile is skipped with -i, else Usage."""
    from .. import reports  # only the verbs with --filter need it

    named = list(args.names) + _cidfile_ids(args.cidfile, args.command, getattr(args, "ignore", False))
    if args.all or args.filter:
        if named:
            raise Usage(f"ocirt {args.command}: give names, or -a/--filter, not both")
        keep = reports.parse_filters(args.filter)
        return [c.id for c in rt.list() if keep(c)]
    if not named and not args.cidfile:
        raise Usage(f"ocirt {args.command}: name at least one container, or give -a, --filter or --cidfile")
    return named


CIDFILE_MAX = 4096  # bytes: an id is 64


def _cidfile_ids(paths: Iterable[str], command: str, ignore: bool) -> List[str]:
    """The container id in each file (as run --cidfile wrote it); a file that
    is not a regular one (a FIFO would block) is refused."""
    from ..layout import read_small

    ids = []
    for path in paths:
        try:
            text = read_small(path, CIDFILE_MAX, regular_only=True).decode("utf-8", errors="replace").strip()
        except FileNotFoundError:
            if ignore:
                continue
            raise Usage(f"ocirt {command}: --cidfile {path}: no such file") from None
        except OSError as e:
            raise Usage(f"ocirt {command}: --cidfile {path}: {e.strerror or e}") from e
        if not text:
            raise Usage(f"ocirt {command}: --cidfile {path} holds no container id")
        ids.append(text)
    return ids


@contextlib.contextmanager
def attending(c: Container) -> Iterator[None]:
    """While held, conmon's exit command (`cleanup`, given to --rm
    containers) leaves the container to this process: a foreground run
    that reads the exit code and removes it, or an rm. (A cleanup that
    waited for it instead would stall both: their delete waits for conmon,
    which waits for its exit command.)"""
    fd = os.open(c._files.attended, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def attended(path: str) -> bool:
    """Whether a process holds the container (see attending), by its `attended` file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
