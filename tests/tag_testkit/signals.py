"""Children that a test interrupts with SIGINT, whatever the test run inherited."""
from __future__ import annotations

import sys

SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])")


def interruptible(argv: list[str]) -> list[str]:
    """`argv` run with SIGINT at its default, so Python in the child turns it into KeyboardInterrupt.

    A test run started in the background (`.ci/run &`, nohup) has SIGINT ignored, and an ignored signal stays
    ignored through fork and exec: a child sent Ctrl-C would never see it. `argv[0]` must be a path."""
    return [sys.executable, "-c", SIGINT_DEFAULT, *argv]
