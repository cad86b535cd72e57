"""Domain errors of the infrastructure agent: each a ValueError whose message says what to change."""

from __future__ import annotations

from shared.bus import RetryableAgentError


class InfrastructureError(ValueError):
    """A request the infrastructure agent cannot carry out as asked."""


class UnknownTargetError(InfrastructureError):
    """No deploy target is registered under the requested name."""


class UnknownEnvironmentError(InfrastructureError):
    """The environment has never been deployed to."""


class ReleaseNotFoundError(InfrastructureError):
    """The named release does not exist in the environment (or there is nothing to roll back to)."""


class DeployConfigError(InfrastructureError):
    """The release lacks what it needs to run: run command, port."""


class StaleFencingTokenError(InfrastructureError):
    """A request carried a lock fencing token lower than one this environment has already seen."""


class EnvironmentBusyError(InfrastructureError):
    """Another operation held the environment's lock for longer than we were willing to wait."""


class ConfigValidationError(InfrastructureError):
    """An environment variable name or value cannot go into the environment's env file."""


class FencingTokenNotHeldError(InfrastructureError):
    """A request's fencing token is not the one the current holder of the `env:<env>` lock holds."""


class EnvironmentLockedError(InfrastructureError):
    """A request without a fencing token, while someone else holds the environment's `env:<env>` lock."""


class FencingUnavailableError(RetryableAgentError):
    """The lock table could not be asked whether a fencing token is current: nothing is changed, so the
    request is worth sending again once the database answers (a retryable `unavailable` error)."""

    code = "unavailable"
