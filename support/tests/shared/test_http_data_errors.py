"""The shared HTTP error handling: a value the database refuses is a 422 with its message, never a 500.

The request models refuse such values first (test_bad_input.py); this is the safety net behind them,
exercised with real PostgreSQL errors raised by a real query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from shared.http import MAX_JSON_DEPTH, StorableStr, create_service_app, storable_json

pytestmark = pytest.mark.integration

QUERIES: dict[str, tuple[str, Any]] = {
    "bigint": ("SELECT %s::bigint", 2**63),
    "nul-text": ("SELECT %s::text", "a\x00b"),
    "nul-jsonb": ("SELECT %s::jsonb", Jsonb({"k": "a\x00b"})),
    "nan-jsonb": ("SELECT %s::jsonb", Jsonb({"k": float("nan")})),
    "surrogate": ("SELECT %s::text", "a\ud800"),
}


def _probe_app(database_url: str) -> FastAPI:
    app = create_service_app("data-error-probe")

    @app.get("/probe/{case}")
    async def probe(case: str) -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            if case == "check":
                await conn.execute("CREATE TEMP TABLE positive (n int CHECK (n > 0))")
                await conn.execute("INSERT INTO positive VALUES (%s)", (0,))
            else:
                sql, value = QUERIES[case]
                await conn.execute(sql, (value,))
        return {"stored": True}

    @app.get("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError("a real bug")

    return app


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_probe_app(database_url), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        yield client


@pytest.mark.parametrize(
    ("case", "word"),
    [
        ("bigint", "out of range"),
        ("nul-text", "NUL"),
        ("nul-jsonb", "Unicode"),
        ("nan-jsonb", "json"),
        ("surrogate", "surrogates"),
        ("check", "check constraint"),
    ],
)
async def test_database_data_errors_are_422_with_the_reason(
    client: httpx.AsyncClient, case: str, word: str
) -> None:
    response = await client.get(f"/probe/{case}")
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"].startswith("invalid value: ") and word.lower() in body["error"].lower(), body


async def test_other_errors_stay_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/boom")
    assert response.status_code == 500 and response.json() == {"error": "internal error"}


class _Named(BaseModel):
    name: StorableStr


def test_storable_models_name_what_cannot_be_stored() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        _Named(name="a\x00")
    with pytest.raises(ValidationError, match="surrogate"):
        _Named(name="\udfff")
    assert _Named(name="ünïcödé ✓").name == "ünïcödé ✓"


def test_storable_json_reports_where() -> None:
    ok = {"a": [1, 2.5, None, True, {"b": "text", "n": 10**40}]}
    assert storable_json(ok) is ok
    with pytest.raises(ValueError, match=r"at \['a'\]\[1\]\['b'\]: must not contain NUL"):
        storable_json({"a": [0, {"b": "x\x00"}]})
    with pytest.raises(ValueError, match=r"key 'k\\x00'"):
        storable_json({"ok": {"k\x00": 1}})
    with pytest.raises(ValueError, match="NaN and Infinity"):
        storable_json({"x": float("inf")})
    deep: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    assert storable_json(deep) is deep
    with pytest.raises(ValueError, match="nested deeper"):
        storable_json([deep])
    # Deeper than Python's recursion limit: reported, not a RecursionError.
    very_deep: Any = []
    for _ in range(5000):
        very_deep = [very_deep]
    with pytest.raises(ValueError, match="nested deeper"):
        storable_json(very_deep)
