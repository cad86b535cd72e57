"""What a workflow's node raises to tell the run engine how its run should go on.

- `TransientRunError`: worth retrying the whole run later, after backoff (an agent unreachable).
- `RunFailed`: the run ended without doing its job (a verdict, not a bug): it fails at once.

Workflows import these from here; the engine never imports a workflow.
"""

from __future__ import annotations

import psycopg


class TransientRunError(Exception):
    """Raise from a node for a failure worth retrying the whole run later (after backoff)."""


class RunFailed(RuntimeError):
    """Raise from a node when the run ended without doing its job (its verdict, not a bug):
    the run fails at once with the message, logged as one line without a traceback."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientRunError,
    psycopg.OperationalError,
    ConnectionError,
    TimeoutError,
)
