"""Who is calling: write endpoints need ``Authorization: Bearer <DEVTOOLS_API_TOKEN>``.

DEVTOOLS_API_TOKEN is either one token (its holder is recorded as "operator") or a
comma-separated list of ``name=token`` pairs, so each approver has a token of their
own and approvals record who approved. The name always comes from the token, never
from the request body.
"""

from __future__ import annotations

from fastapi import Request

from shared.config import Settings
from shared.http import require_platform_caller


def caller_identity(request: Request, settings: Settings) -> str:
    """The identity of the bearer token, or 401/503 (no token configured: writes are disabled)."""
    return require_platform_caller(request, settings.api_token_value())
