"""A real terminal for the tests: a tmux session to type into and read the screen of."""

from __future__ import annotations

import os
import subprocess


class Pane:
    """A tmux session of its own, 200 columns wide: type into it, read its screen."""

    def __init__(self, tmux: str, name: str) -> None:
        self.tmux, self.name = tmux, name
        subprocess.run(
            [tmux, "new-session", "-d", "-s", name, "-x", "200", "-y", "40"],
            check=True,
            env={**os.environ, "TERM": "xterm-256color"},
        )

    def type(self, *keys: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def screen(self) -> str:
        out = subprocess.run(
            [self.tmux, "capture-pane", "-p", "-t", self.name],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def close(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.name], check=False)
