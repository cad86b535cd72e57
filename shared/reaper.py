"""`python -m shared.reaper CMD ARG...`: run CMD and take its whole process group down with the agent.

`shared.process.run_command` starts each command in a session of its own, so that a timeout or a
cancel can kill everything the command started. That also means nothing ties the command to the
agent: an agent killed with SIGKILL (no chance to clean up) would leave a test suite or a build
running, holding files and ports. This wrapper is the session's first process. It starts CMD in the
same process group and watches its own parent: once the agent is gone (the wrapper is re-parented),
it kills the group, itself included. It ends with CMD's exit status (a signal death as that signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

PARENT_POLL_SECONDS = 0.5


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m shared.reaper CMD [ARG...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    child = subprocess.Popen(argv)
    while True:
        try:
            code = child.wait(timeout=PARENT_POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:  # the agent died: nobody will ever stop this command
                os.killpg(0, signal.SIGKILL)
            continue
        if code < 0:  # killed by a signal: die of it too, so the caller sees the same status
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
