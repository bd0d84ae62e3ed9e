"""The `ocirt` script (also `python -m ocirt`): the command line, in a process of its own."""

import gc
import os
import sys
from typing import NoReturn


def console() -> NoReturn:
    """Run `ocirt.cli.main()` on sys.argv, then leave the process at once.

    The command line's imports make many objects and no garbage, so the
    collector is off while they run. Everything `main` opens it also closes
    (the Runtime, its database and background deletes, the containers'
    descriptors), so what is left at the end is the interpreter's own
    teardown, freeing every module and object one by one: skipped, with only
    the buffered output still to write. Together about 45 ms a command here.
    """
    gc.disable()
    from .cli import main
    from .cli.common import EXIT_ERROR

    gc.enable()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # a reader that went away (`ocirt ps | head -1`) misses nothing it wanted
            pass
        except OSError:  # output lost (a full disk): not a success
            code = code or EXIT_ERROR
    os._exit(code)


if __name__ == "__main__":
    console()
