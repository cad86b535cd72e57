"""The restart-on-crash supervisor of one app: `python keeper.py --max-restarts N --status FILE -- CMD`.

Run instead of the app's own command when its release sets `max_restarts` > 0. It starts the command
through /bin/sh in its own process group (the group the infrastructure agent stops as a whole),
and when the app exits without being asked to, starts it again after a backoff (0.5 s, doubling,
at most 30 s), up to N times; then it gives up and exits with the app's exit code, so the app
reads as down. Every start and exit is recorded in the status file (JSON) the health check reads.
Standard library only: it runs with the app's environment, from the release folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0


def _write_status(path: Path, **status: object) -> None:
    status["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(status, indent=2))
    os.replace(partial, path)


def _log(message: str) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"[devtools-supervisor] {stamp} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-restarts", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = " ".join(args.command[1:] if args.command[:1] == ["--"] else args.command)
    if not command:
        parser.error("no command to run")

    stopping = threading.Event()
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: FrameType | None) -> None:
        # A requested stop (SIGTERM to the group, or to us): end the app, never restart it.
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts, exit_code = 0, 0
    while not stopping.is_set():
        child = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL)
        _write_status(
            args.status,
            restarts=restarts,
            max_restarts=args.max_restarts,
            app_pid=child.pid,
            last_exit_code=exit_code if restarts else None,
            gave_up=False,
        )
        exit_code = child.wait()
        if stopping.is_set():
            return 0
        if restarts >= args.max_restarts:
            _log(f"app exited with {exit_code}; giving up after {restarts} restart(s)")
            _write_status(
                args.status,
                restarts=restarts,
                max_restarts=args.max_restarts,
                app_pid=None,
                last_exit_code=exit_code,
                gave_up=True,
            )
            return exit_code if exit_code > 0 else 1
        delay = min(BACKOFF_FIRST_SECONDS * 2**restarts, BACKOFF_MAX_SECONDS)
        restarts += 1
        _log(f"app exited with {exit_code}; restart {restarts}/{args.max_restarts} in {delay:g}s")
        stopping.wait(delay)  # a requested stop ends the wait early, and the loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
