"""PostgreSQL connections: one async pool per process, plus short sync connections for tools."""

from __future__ import annotations

from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


async def open_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, name: str = "devtools"
) -> AsyncConnectionPool:
    """An opened async pool of autocommit connections: every stored-procedure call is its own transaction.

    Each connection is checked as it is handed out (an empty query): one the server dropped (a restart,
    `pg_terminate_backend`) is replaced by a fresh one instead of failing the caller's operation."""
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "application_name": name, "row_factory": dict_row},
        open=False,
        name=name,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def connect_async(
    database_url: str, *, name: str = "devtools", autocommit: bool = True
) -> AsyncConnection:
    return await AsyncConnection.connect(
        database_url, autocommit=autocommit, application_name=name, row_factory=dict_row
    )


def connect(database_url: str, *, name: str = "devtools", autocommit: bool = True) -> Connection:
    return Connection.connect(
        database_url, autocommit=autocommit, application_name=name, row_factory=dict_row
    )


def server_version(database_url: str) -> str:
    with connect(database_url, name="devtools-doctor") as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row["server_version"]) if row else "?"


def with_database(database_url: str, dbname: str) -> str:
    """The same server URL pointing at another database (query parameters such as host= are kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))
