"""Who may scrape `/metrics`: a caller with the metrics token or an API token, or anyone where the
metrics are configured public; with nothing configured, nobody (a 503 saying what to set).

The real services are checked the same way in support/tests/api/test_openapi_fuzz.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.config import load_settings
from shared.http import MetricsAccess, create_service_app

pytestmark = pytest.mark.unit

METRICS_TOKEN = "tok-prometheus"
SETTINGS = {
    "metrics_token": METRICS_TOKEN,
    "api_token": "alice=tok-alice,bob=tok-bob",
    "api_read_token": "tok-viewer",
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def scrape(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a service app built with the settings the test is parametrized with."""
    settings = load_settings(**request.param)
    app = create_service_app("metrics-probe", metrics_access=MetricsAccess.from_settings(settings))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        yield client


@pytest.mark.parametrize("scrape", [SETTINGS], indirect=True)
@pytest.mark.parametrize("token", [METRICS_TOKEN, "tok-alice", "tok-bob", "tok-viewer"])
async def test_the_metrics_token_and_the_api_tokens_scrape(scrape: httpx.AsyncClient, token: str) -> None:
    response = await scrape.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert "devtools_http_requests_total" in response.text


@pytest.mark.parametrize("scrape", [SETTINGS], indirect=True)
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("tok-wrong"), {"Authorization": "Basic dG9rLXByb21ldGhldXM="}, bearer("alice=tok-alice")],
    ids=["none", "wrong", "basic", "pair"],
)
async def test_without_a_valid_token_is_401(scrape: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await scrape.get("/metrics", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert "devtools_http" not in response.text


@pytest.mark.parametrize("scrape", [{**SETTINGS, "metrics_public": True}], indirect=True)
async def test_public_metrics_need_no_token(scrape: httpx.AsyncClient) -> None:
    response = await scrape.get("/metrics")
    assert response.status_code == 200 and "devtools_http_requests_total" in response.text


@pytest.mark.parametrize("scrape", [{}], indirect=True)
async def test_nothing_configured_is_closed(scrape: httpx.AsyncClient) -> None:
    response = await scrape.get("/metrics", headers=bearer("anything"))
    assert response.status_code == 503
    assert "DEVTOOLS_METRICS_TOKEN" in response.json()["error"]
    assert "DEVTOOLS_METRICS_PUBLIC" in response.json()["error"]


async def test_an_app_told_nothing_is_closed() -> None:
    transport = httpx.ASGITransport(app=create_service_app("metrics-probe"))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        assert (await client.get("/metrics")).status_code == 503


def test_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVTOOLS_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.setenv("DEVTOOLS_METRICS_PUBLIC", "true")
    monkeypatch.delenv("DEVTOOLS_API_TOKEN", raising=False)
    monkeypatch.delenv("DEVTOOLS_API_READ_TOKEN", raising=False)
    access = MetricsAccess.from_settings(load_settings())
    assert access == MetricsAccess(public=True, tokens=(METRICS_TOKEN,))
    monkeypatch.delenv("DEVTOOLS_METRICS_PUBLIC")
    assert not MetricsAccess.from_settings(load_settings()).public
