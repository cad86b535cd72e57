"""The rows the lock procedures return, as frozen dataclasses.

They live in their own module, importing nothing else of the package, so that the manager (which
makes the calls), the acquisition (which waits on `AcquireResult`s) and the lease (which renews) can
all use them without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AcquireResult:
    """`acquire_resource_lock`: on refusal, `holder`/`expires_at` name who holds it and until when."""

    acquired: bool
    fencing_token: int | None
    holder: str | None
    expires_at: datetime | None
    message: str


@dataclass(frozen=True)
class ReleaseResult:
    """`release_resource_lock`: on refusal, `holder` names the real holder(s)."""

    released: bool
    holder: str | None
    message: str


@dataclass(frozen=True)
class RenewResult:
    """`renew_resource_lock`: `renewed=False` once the lease was taken over or force-released."""

    renewed: bool
    expires_at: datetime | None
    message: str


@dataclass(frozen=True)
class LockStatus:
    """`check_lock_status`, with the resource id it was asked for."""

    resource_id: str
    locked: bool
    mode: str | None
    holder: str | None
    owners: list[str]
    fencing_token: int | None
    acquired_at: datetime | None
    expires_at: datetime | None
    waiters: int
    last_token: int | None
