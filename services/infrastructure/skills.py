"""The infrastructure agent's skills: one plain function per request type, dispatching to the target.

Each takes its validated payload and the data dir; an optional chat model adds a diagnosis
to answers about something unhealthy, on top of the deterministic result.
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.language_models import BaseChatModel

from services.infrastructure.contract import DeployResult, DeployServicePayload, HealthReport
from services.infrastructure.deploy_target import TokenCheck
from services.infrastructure.metrics import HEALTH_CHECKS
from services.infrastructure.models import (
    HealthCheckPayload,
    RestartServicePayload,
    RollbackPayload,
    RollbackResult,
    StopResult,
    StopServicePayload,
    UpdateConfigPayload,
    UpdateConfigResult,
)
from services.infrastructure.targets import get_target
from shared.diagnosis import diagnose


def _with_diagnosis(report: HealthReport, chat_model: BaseChatModel | None) -> HealthReport:
    if report.healthy or chat_model is None:
        return report
    facts = (
        f"Service in environment {report.environment!r} is {report.status}: {report.reason}. "
        f"HTTP status {report.http_status}, process alive: {report.process_alive}."
    )
    prose = diagnose(chat_model, facts, "\n".join(report.error_lines))
    return report.model_copy(update={"diagnosis": prose.text, "llm_warning": prose.warning})


def deploy_service(
    payload: DeployServicePayload,
    *,
    data_dir: Path,
    chat_model: BaseChatModel | None = None,
    token_check: TokenCheck | None = None,
) -> DeployResult:
    result = get_target(payload.target, data_dir, token_check).deploy(payload)
    if result.status != "deployed" and result.health is not None and chat_model is not None:
        facts = f"Deploy of release {result.release_id} failed: {result.failure_reason}."
        prose = diagnose(chat_model, facts, "\n".join(result.health.error_lines))
        health = result.health.model_copy(update={"diagnosis": prose.text, "llm_warning": prose.warning})
        result = result.model_copy(update={"health": health})
    return result


def rollback(
    payload: RollbackPayload, *, data_dir: Path, token_check: TokenCheck | None = None
) -> RollbackResult:
    return get_target(payload.target, data_dir, token_check).rollback(payload)


def health_check(
    payload: HealthCheckPayload, *, data_dir: Path, chat_model: BaseChatModel | None = None
) -> HealthReport:
    target = get_target(payload.target, data_dir)
    report = target.health(payload)
    HEALTH_CHECKS.labels(target=payload.target, status=report.status).inc()
    return _with_diagnosis(report, chat_model)


def update_config(
    payload: UpdateConfigPayload, *, data_dir: Path, token_check: TokenCheck | None = None
) -> UpdateConfigResult:
    return get_target(payload.target, data_dir, token_check).update_config(payload)


def stop_service(
    payload: StopServicePayload, *, data_dir: Path, token_check: TokenCheck | None = None
) -> StopResult:
    return get_target(payload.target, data_dir, token_check).stop(payload)


def restart_service(
    payload: RestartServicePayload,
    *,
    data_dir: Path,
    chat_model: BaseChatModel | None = None,
    token_check: TokenCheck | None = None,
) -> HealthReport:
    report = get_target(payload.target, data_dir, token_check).restart(payload)
    return _with_diagnosis(report, chat_model)
