"""Who is calling: write endpoints need ``Authorization: Bearer <DEVTOOLS_API_TOKEN>``.

DEVTOOLS_API_TOKEN is either one token (its holder is recorded as "operator") or a
comma-separated list of ``name=token`` pairs, so each approver has a token of their
own and approvals record who approved. The name always comes from the token, never
from the request body.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from shared.config import Settings
from shared.lib.http_service import require_bearer, tokens_equal

DEFAULT_IDENTITY = "operator"


def token_identities(settings: Settings) -> dict[str, str]:
    """token -> identity, from DEVTOOLS_API_TOKEN."""
    raw = settings.api_token_value()
    if not raw:
        return {}
    if "=" not in raw:
        return {raw: DEFAULT_IDENTITY}
    identities: dict[str, str] = {}
    for pair in raw.split(","):
        name, _, token = pair.strip().partition("=")
        if name and token:
            identities[token] = name
    return identities


def caller_identity(request: Request, settings: Settings) -> str:
    """The identity of the bearer token, or 401/503 (no token configured: writes are disabled)."""
    identities = token_identities(settings)
    if not identities:
        raise HTTPException(503, "write endpoints are disabled: set DEVTOOLS_API_TOKEN on the orchestrator")
    presented = require_bearer(request)
    for token, name in identities.items():
        if tokens_equal(presented, token):
            return name
    raise HTTPException(401, "invalid bearer token", {"WWW-Authenticate": "Bearer"})
