"""Health probes of the backing servers (PostgreSQL, Redis), for `devtools doctor` and the demo."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
import redis

from shared.logging import redact


@dataclass(frozen=True)
class BackendHealth:
    name: str
    ok: bool
    version: str
    latency_ms: float
    location: str
    detail: str = ""


def _location(url: str) -> str:
    return redact(url)


def check_postgres(database_url: str) -> BackendHealth:
    started = time.perf_counter()
    try:
        with psycopg.connect(database_url, connect_timeout=5, application_name="devtools-health") as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        return BackendHealth("postgresql", True, str(version), _ms(started), _location(database_url))
    except psycopg.Error as exc:
        return BackendHealth(
            "postgresql", False, "-", _ms(started), _location(database_url), str(exc).strip()
        )


def check_redis(redis_url: str) -> BackendHealth:
    started = time.perf_counter()
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        version = client.info("server")["redis_version"]
        return BackendHealth("redis", True, str(version), _ms(started), _location(redis_url))
    except (redis.RedisError, OSError) as exc:
        return BackendHealth("redis", False, "-", _ms(started), _location(redis_url), str(exc))
    finally:
        client.close()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
