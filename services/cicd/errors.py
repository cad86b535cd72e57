"""Domain errors of the cicd agent: each a ValueError with a message the caller can act on."""

from __future__ import annotations

from shared.agents import PermanentAgentError


class CicdError(ValueError):
    """A request the cicd agent cannot carry out as asked."""


class NoTestCommandError(CicdError):
    """Nothing configured and nothing detected to run as the repository's tests."""


class NoBuildCommandError(CicdError):
    """Nothing configured and the repository is not a buildable Python project."""


class BuildFailedError(CicdError):
    """Raised only where a caller needs an exception; VALIDATE_BUILD itself reports failure in its result."""


class DeployHandoffError(CicdError):
    """The infrastructure agent could not be reached or refused the deploy of an artifact."""


class NoInfrastructureAgentError(DeployHandoffError):
    """No live agent with the infrastructure capability answered the DEPLOY_SERVICE request."""


class TestsFailedError(PermanentAgentError):
    """RUN_PIPELINE with require_pass: the tests did not pass (the message names the failing ones)."""

    code = "tests_failed"
    __test__ = False  # a name pytest would otherwise take for a test class
