"""A PostgreSQL server of one test's own, from the machine's PostgreSQL binaries, on a free port: a
test may stop and start it (the shared server at 127.0.0.1:5432 must never be restarted).

Run as the `postgres` user when the tests run as root (initdb refuses root); the data folder is
then a temporary folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from shared import migrations
from shared.ports import free_port

DATABASE = "devtools"


class PrivatePostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or no user to run them as."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise PrivatePostgresUnavailable("no pg_ctl: neither /usr/lib/postgresql/*/bin nor PATH has one")
    return Path(pg_ctl).parent


@dataclass
class PrivatePostgres:
    root: Path
    port: int
    bin_dir: Path
    user: str | None  # run the binaries as this user (when we are root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb into a new temporary folder, start it, and create the migrated `devtools` database."""
        bin_dir = _bin_dir()
        user = None
        root = Path(tempfile.mkdtemp(prefix="devtools-pg-"))
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise PrivatePostgresUnavailable("running as root and there is no postgres user") from None
            user = "postgres"
            os.chown(root, account.pw_uid, account.pw_gid)
        server = cls(root, free_port(), bin_dir, user)
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust", "--no-sync")
        server.start()
        with psycopg.connect(server.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        migrations.upgrade(server.url)
        return server

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        """A fast shutdown: every connection is ended, the server is down when this returns."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
