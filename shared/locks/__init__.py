"""Resource locks: leases over the SQL stored procedures in `config/state/`, with fencing tokens.

`ResourceLockManager` is the entry point (acquire, renew, release, status, force-release);
`Lease` is what an acquisition holds. Modules: `manager`, `acquisition` (waiting in the queue),
`lease` (renewal), `listener` (NOTIFY wake-ups), `results` (the procedures' result rows), `errors`,
`metrics`.
"""

from shared.locks.errors import LeaseLostError, LockArgumentError, ResourceLockError, argument_error_from
from shared.locks.lease import Lease, OnLost
from shared.locks.manager import ResourceLockManager
from shared.locks.results import AcquireResult, LockStatus, ReleaseResult, RenewResult

__all__ = [
    "AcquireResult",
    "Lease",
    "LeaseLostError",
    "LockArgumentError",
    "LockStatus",
    "OnLost",
    "ReleaseResult",
    "RenewResult",
    "ResourceLockError",
    "ResourceLockManager",
    "argument_error_from",
]
