"""Who is calling: every endpoint but `/health` needs ``Authorization: Bearer <token>`` (`/metrics`
takes these tokens or DEVTOOLS_METRICS_TOKEN: `shared.http.MetricsAccess`).

DEVTOOLS_API_TOKEN holds the tokens that may read and write: one token (its holder is recorded as
"operator") or a comma-separated list of ``name=token`` pairs, so each approver has a token of their
own and approvals record who approved. DEVTOOLS_API_READ_TOKEN, in the same form, holds tokens that
may only read (a dashboard, an auditor): a write with one is a 403. The name always comes from the
token, never from the request body. With no token configured the API refuses everything (503): there
is no default password.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from shared.config import Settings
from shared.http import bearer_token, require_bearer, require_platform_caller, token_identities, tokens_equal


def _matches(presented: str | None, identities: dict[str, str]) -> str | None:
    for token, name in identities.items():
        if tokens_equal(presented, token):
            return name
    return None


def caller_identity(request: Request, settings: Settings) -> str:
    """The identity of a write's bearer token, or 401 / 403 (a read-only token) / 503 (none configured)."""
    presented = bearer_token(request)
    read_only = token_identities(settings.api_read_token_value())
    writers = token_identities(settings.api_token_value())
    if _matches(presented, read_only) and not _matches(presented, writers):
        raise HTTPException(403, "this token may only read: writes need a token of DEVTOOLS_API_TOKEN")
    return require_platform_caller(request, settings.api_token_value())


def _readers(settings: Settings) -> dict[str, str]:
    return {
        **token_identities(settings.api_read_token_value()),
        **token_identities(settings.api_token_value()),
    }


def reader_of_token(presented: str | None, settings: Settings) -> str | None:
    """Who holds `presented` among the tokens that may read, or None (a WebSocket's check)."""
    return _matches(presented, _readers(settings)) if presented else None


def reader_identity(request: Request, settings: Settings) -> str:
    """The identity of a read's bearer token (a write token reads too), or 401 / 503."""
    identities = _readers(settings)
    if not identities:
        raise HTTPException(503, "the API is disabled: set DEVTOOLS_API_TOKEN (or DEVTOOLS_API_READ_TOKEN)")
    name = _matches(require_bearer(request), identities)
    if name is None:
        raise HTTPException(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})
    return name


def reader(request: Request) -> str:
    """Dependency of every API router: who reads (401 before anything else is looked at)."""
    return reader_identity(request, request.app.state.settings)
