"""Terminal sessions driven through a real terminal: a tmux server of the
test's own, whose window output is piped to a file watched with inotify."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Iterator

import psutil
import pytest

from ocirt import native as _native

from .observe import until

TIMEOUT = 60

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/install installs it)")


class Tmux:
    """One tmux window running sh, with `ocirt` on hand."""

    def __init__(self, tmp_path, env) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        self.output = str(tmp_path / "window.out")
        self.env = env
        self.seen = 0  # how much of the output earlier waits consumed
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-c", str(tmp_path), "-x", "100", "-y", "30", "sh")
        self._tmux("pipe-pane", "-t", "t", "-o", f"cat >> {shlex.quote(self.output)}")

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def type(self, line: str) -> None:
        """Type `line` and Enter."""
        self._tmux("send-keys", "-t", "t", "-l", line)
        self._tmux("send-keys", "-t", "t", "Enter")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def resize(self, columns: int, rows: int) -> None:
        self._tmux("resize-window", "-t", "t", "-x", str(columns), "-y", str(rows))

    def expect(self, pattern: str) -> "re.Match[str]":
        """The first match of `pattern` in the window's output after what
        earlier expects consumed; waits for it (inotify on the output file)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            with open(self.output, "rb") as f:
                f.seek(self.seen)
                data = f.read()
            found = re.search(pattern, data.decode("latin-1"))  # a character a byte: offsets stay byte offsets
            if found:
                self.seen += found.end()
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never appeared; the window shows:\n{self._tmux('capture-pane', '-p', '-t', 't')}"
            _native.wait_change(self.output, left, known_size=self.seen + len(data))

    def pane_children(self) -> "list[psutil.Process]":
        """The processes the window's shell started."""
        return psutil.Process(int(self._tmux("display-message", "-p", "-t", "t", "#{pane_pid}"))).children()

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], env=self.env, capture_output=True)


@pytest.fixture
def tmux(tmp_path, ocirt) -> Iterator[Tmux]:
    """A terminal whose `ocirt` is the test's (its root), closed before the test's containers are checked."""
    open(tmp_path / "window.out", "w").close()
    env = dict(ocirt.env, PS1="$ ", TERM="xterm", ocirt=f"{shlex.quote(sys.executable)} -m ocirt")
    term = Tmux(tmp_path, env)
    try:
        term.type("stty -g > stty.before")  # the window's settings before any ocirt
        yield term
    finally:
        term.close()


def sane(term: Tmux, tag: str) -> None:
    """The window's terminal settings are what they were before ocirt ran."""
    term.type(f"stty -g > stty.after; cmp -s stty.before stty.after && echo sane-$((0+{tag}))")
    term.expect(f"sane-{int(tag)}")


def size_becomes(term: Tmux, rows: int, columns: int) -> None:
    """`stty size` inside shows rows x columns, asked again until it does
    (the resize reaches the container through conmon, after the keys may)."""
    deadline = time.monotonic() + TIMEOUT
    attempt = 0
    while time.monotonic() < deadline:  # each look waits for its own answer: no sleep
        attempt += 1
        term.type(f"echo size-$((0+{attempt})) $(stty size)")
        size = term.expect(rf"size-{attempt} (\d+) (\d+)")
        if (int(size[1]), int(size[2])) == (rows, columns):
            return
    raise AssertionError(f"the terminal never became {rows}x{columns} (asked {attempt} times)")


def prompt_answered(term: Tmux) -> None:
    """Wait for busybox's prompt and for the terminal's answer to the cursor
    query the shell prints after it (ESC [6n) to be in the shell's input.
    tmux answers as it reads the query; a key typed now echoes after
    everything printed before it, so once its echo shows, the answer is
    ahead of whatever is typed next (a detach, say: an answer still on its
    way would reach the window's own shell instead)."""
    term.expect("/ # ")
    term.keys("x")
    term.expect("x")
    term.keys("BSpace")


def test_a_shell_follows_resizes_detaches_with_ctrl_p_ctrl_q_and_attach_picks_it_up(tmux, ocirt):
    tmux.type('$ocirt run -it --rm --name shell busybox sh; echo "run-ended-$((1+$?))"')
    tmux.expect("/ # ")  # the container's prompt
    size_becomes(tmux, 30, 100)
    tmux.resize(80, 20)
    size_becomes(tmux, 20, 80)
    tmux.type("sleep 1000")
    tmux.keys("C-c")  # raw mode: the key reaches the container's terminal, not ocirt
    prompt_answered(tmux)
    tmux.keys("C-p", "C-q")
    tmux.expect("run-ended-1")  # detached: 0
    assert json.loads(ocirt.ok("inspect", "shell"))[0]["State"]["Status"] == "running"
    sane(tmux, "1")
    tmux.type('$ocirt attach shell; echo "attach-ended-$((1+$?))"')
    tmux.type("echo $((6*7))")
    tmux.expect("\n42")
    size_becomes(tmux, 20, 80)
    tmux.type("exit 3")
    tmux.expect("attach-ended-4")  # the container's exit code
    sane(tmux, "2")
    until(lambda: json.loads(ocirt.ok("ps", "-a", "--format", "json")) == [], TIMEOUT)  # --rm: conmon's exit command removes it


def test_exec_it_gets_a_terminal_of_its_own_sized_like_the_callers(tmux, ocirt):
    ocirt.ok("run", "-d", "--name", "host", "busybox", "sleep", "1000")
    tmux.type('$ocirt exec -it host sh; echo "exec-ended-$((1+$?))"')
    tmux.expect("/ # ")
    tmux.type("tty")
    tmux.expect(r"/dev/pts/\d+")
    size_becomes(tmux, 30, 100)
    tmux.resize(90, 25)
    size_becomes(tmux, 25, 90)
    tmux.type("exit 4")
    tmux.expect("exec-ended-5")
    sane(tmux, "1")
    ocirt.ok("rm", "-f", "host")


def test_an_error_in_a_terminal_session_restores_the_terminal(tmux, ocirt):
    tmux.type('$ocirt run -it --rm --name gone busybox no-such-binary; echo "run-ended-$?"')
    tmux.expect("run-ended-127")
    sane(tmux, "1")


def test_sigterm_goes_to_the_container_and_the_terminal_is_restored(tmux, ocirt):
    tmux.type("$ocirt run -it --rm --name sig busybox sh -c 'trap \"exit 7\" TERM; echo armed; sleep 1000 & wait'; echo \"run-ended-$?\"")
    tmux.expect("\narmed")
    [manager] = tmux.pane_children()  # ocirt, attached in raw mode
    manager.terminate()
    tmux.expect("run-ended-7")  # the container's trap ran; its exit code is ocirt's
    sane(tmux, "1")
