"""The infrastructure agent's skills: one plain function per request type, dispatching to the target.

Each takes its validated payload and the data dir; an optional chat model adds a diagnosis
to answers about something unhealthy, on top of the deterministic result.
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.language_models import BaseChatModel

from services.cicd.diagnosis import diagnose
from services.infrastructure.metrics import HEALTH_CHECKS
from services.infrastructure.models import (
    DeployResult,
    DeployServicePayload,
    HealthCheckPayload,
    HealthReport,
    RestartServicePayload,
    RollbackPayload,
    RollbackResult,
    StopResult,
    StopServicePayload,
    UpdateConfigPayload,
    UpdateConfigResult,
)
from services.infrastructure.targets import get_target


def _with_diagnosis(report: HealthReport, chat_model: BaseChatModel | None) -> HealthReport:
    if report.healthy or chat_model is None:
        return report
    facts = (
        f"Service in environment {report.environment!r} is {report.status}: {report.reason}. "
        f"HTTP status {report.http_status}, process alive: {report.process_alive}."
    )
    return report.model_copy(update={"diagnosis": diagnose(chat_model, facts, "\n".join(report.error_lines))})


def deploy_service(
    payload: DeployServicePayload, *, data_dir: Path, chat_model: BaseChatModel | None = None
) -> DeployResult:
    result = get_target(payload.target, data_dir).deploy(payload)
    if result.status != "deployed" and result.health is not None and chat_model is not None:
        facts = f"Deploy of release {result.release_id} failed: {result.failure_reason}."
        prose = diagnose(chat_model, facts, "\n".join(result.health.error_lines))
        result = result.model_copy(update={"health": result.health.model_copy(update={"diagnosis": prose})})
    return result


def rollback(payload: RollbackPayload, *, data_dir: Path) -> RollbackResult:
    return get_target(payload.target, data_dir).rollback(payload)


def health_check(
    payload: HealthCheckPayload, *, data_dir: Path, chat_model: BaseChatModel | None = None
) -> HealthReport:
    target = get_target(payload.target, data_dir)
    report = target.health(payload)
    HEALTH_CHECKS.labels(target=payload.target, status=report.status).inc()
    return _with_diagnosis(report, chat_model)


def update_config(payload: UpdateConfigPayload, *, data_dir: Path) -> UpdateConfigResult:
    return get_target(payload.target, data_dir).update_config(payload)


def stop_service(payload: StopServicePayload, *, data_dir: Path) -> StopResult:
    return get_target(payload.target, data_dir).stop(payload)


def restart_service(
    payload: RestartServicePayload, *, data_dir: Path, chat_model: BaseChatModel | None = None
) -> HealthReport:
    return _with_diagnosis(get_target(payload.target, data_dir).restart(payload), chat_model)
