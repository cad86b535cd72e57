"""The `local` deploy target: releases as folders, the app as a supervised local process group.

A deploy stops the running release, starts the new one on the configured port and gives it
`health_timeout_seconds` to answer its health path; if it does not, the new release is
stopped and the previous one is made current and started again. All mutating operations on
one environment are serialized by its file lock and checked against its highest fencing token.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.infrastructure import env_file, recovery
from services.infrastructure.contract import DeployResult, DeployServicePayload, HealthReport
from services.infrastructure.deploy_target import DeployTarget, TokenCheck
from services.infrastructure.env_state import EnvironmentDir, EnvironmentState, ReleaseInfo
from services.infrastructure.errors import (
    DeployConfigError,
    ReleaseNotFoundError,
    StaleFencingTokenError,
    UnknownEnvironmentError,
)
from services.infrastructure.health import app_url, health_report, wait_until_healthy
from services.infrastructure.metrics import DEPLOY_DURATION, DEPLOYS, ROLLBACKS, STALE_TOKENS
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
from services.infrastructure.releases import export_git_ref, is_release_of, new_release_id, unpack_artifact
from services.infrastructure.supervisor import (
    PortInUseError,
    is_alive,
    start_app,
    stop_app,
)
from shared.process import clean_environment
from shared.project import ProjectConfigError, load_project_config

log = logging.getLogger(__name__)

REMEMBERED_DEPLOYS = 20  # deploy results kept by idempotency_key per environment


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LocalTarget(DeployTarget):
    name = "local"

    def __init__(self, data_dir: Path, token_check: TokenCheck | None = None) -> None:
        self.data_dir = data_dir
        self.token_check = token_check  # the agent's lock-table check; None: state.json fencing only

    # -- helpers -------------------------------------------------------------------------------

    def _existing(self, environment: str) -> EnvironmentDir:
        env = EnvironmentDir(self.data_dir, environment)
        if not env.exists():
            raise UnknownEnvironmentError(f"environment {environment!r} has never been deployed to")
        return env

    def _fence(self, env: EnvironmentDir, state: EnvironmentState, token: int | None) -> None:
        try:
            env.check_fencing(state, token)
        except StaleFencingTokenError:
            STALE_TOKENS.inc()
            raise
        if token is not None and self.token_check is not None:
            # Under the file lock: no other operation on the environment runs between check and change.
            self.token_check(env.name, token)
        env.save(state)  # a newer token is remembered even if the operation fails afterwards

    def _create_release(self, env: EnvironmentDir, payload: DeployServicePayload) -> ReleaseInfo:
        # Filled under a hidden name and renamed once complete: a crash never leaves a half release.
        staging = env.releases / f".staging-{new_release_id('new')}"
        if payload.repo is not None:
            source = export_git_ref(payload.repo, payload.ref, staging)
        else:
            assert payload.artifact_sha256 is not None  # the payload model guarantees one source
            source = unpack_artifact(self.data_dir, payload.artifact_sha256, staging)
        try:
            config = load_project_config(staging)
            run_command = payload.run_command or config.run_command
            port = payload.port or config.port
            if not run_command:
                raise DeployConfigError("no run_command: set it under [tool.devtools] or in the request")
            if not port:
                raise DeployConfigError("no port: set it under [tool.devtools] or in the request")
        except (DeployConfigError, ProjectConfigError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        release_id = new_release_id(source.get("commit") or source["artifact_sha256"])
        staging.rename(env.releases / release_id)
        info = ReleaseInfo(
            release_id=release_id,
            source=source,
            run_command=run_command,
            port=port,
            health_path=payload.health_path or config.health_path,
            health_timeout_seconds=payload.health_timeout_seconds or config.health_timeout_seconds,
            max_restarts=config.max_restarts if payload.max_restarts is None else payload.max_restarts,
            created=_now(),
        )
        env.save_release_info(info)
        return info

    def _stop_running(self, env: EnvironmentDir, state: EnvironmentState) -> None:
        if state.process is not None:
            stop_app(state.process)
            state.process = None
            env.save(state)

    def _start_and_check(self, env: EnvironmentDir, state: EnvironmentState, info: ReleaseInfo) -> str | None:
        """Make `info` current and start it; None when healthy, else why not (the app is then stopped)."""
        env.point_current_at(info.release_id)
        state.current_release = info.release_id
        release_dir = env.release_dir(info.release_id)
        environment = clean_environment(release_dir, env_file.read(env.config_file))
        try:
            running = start_app(
                info.run_command,
                cwd=release_dir,
                port=info.port,
                env=environment,
                log_path=release_dir / "app.log",
                release_id=info.release_id,
                environment_dir=env.root,
                max_restarts=info.max_restarts,
            )
        except PortInUseError as exc:
            state.process = None
            env.save(state)
            return str(exc)
        state.process, state.stopped_by_request = running, False
        env.save(state)  # the pid is on disk before we wait, so a crashed agent can still find the app
        url = app_url(info.port, info.health_path)
        _, reason = wait_until_healthy(url, info.health_timeout_seconds, lambda: is_alive(running))
        if reason is not None:
            stop_app(running)
            state.process = None
            env.save(state)
        return reason

    # -- request types -------------------------------------------------------------------------

    def deploy(self, payload: DeployServicePayload) -> DeployResult:
        started = time.monotonic()
        env = EnvironmentDir(self.data_dir, payload.environment)
        with env.locked():
            state = env.load()
            self._fence(env, state, payload.fencing_token)
            recorded = state.deploys.get(payload.idempotency_key or "")
            if recorded is not None and recorded.get("active_release") == state.current_release:
                # The same deploy again, and nothing deployed since: it was done, answer as then.
                return self._replayed(env, recorded)
            env.releases.mkdir(parents=True, exist_ok=True)
            self._recover(env, state, payload)
            live = self._already_live(env, state, payload)
            if live is not None:
                return self._remember(env, state, payload, self._unchanged(env, state, live, started))
            info = self._create_release(env, payload)
            previous = state.current_release
            self._stop_running(env, state)
            reason = self._start_and_check(env, state, info)
            info.outcome = "healthy" if reason is None else "failed_health_check"
            env.save_release_info(info)
            if reason is None:
                state.history.append(info.release_id)
                status, message = "deployed", f"release {info.release_id} is live on port {info.port}"
            elif previous is not None:
                restored = self._start_and_check(env, state, env.release_info(previous))
                ROLLBACKS.labels(target=self.name, trigger="automatic").inc()
                status = "rolled_back"
                message = f"release {info.release_id} failed its health check; restored {previous}" + (
                    "" if restored is None else f", which is not healthy either: {restored}"
                )
            else:
                env.point_current_at(None)
                state.current_release = None
                status, message = "failed", f"release {info.release_id} failed its health check"
            elapsed = time.monotonic() - started
            result = DeployResult(
                environment=env.name,
                status=status,
                release_id=info.release_id,
                active_release=state.current_release,
                previous_release=previous,
                message=message,
                failure_reason=reason,
                health=health_report(env, state),
                duration_seconds=round(elapsed, 3),
            )
            self._remember(env, state, payload, result)  # saves the state
        DEPLOYS.labels(target=self.name, status=status).inc()
        DEPLOY_DURATION.labels(target=self.name).observe(elapsed)
        log.info(
            "deploy finished", extra={"environment": env.name, "release": info.release_id, "status": status}
        )
        return result

    @staticmethod
    def _remember(
        env: EnvironmentDir, state: EnvironmentState, payload: DeployServicePayload, result: DeployResult
    ) -> DeployResult:
        """Save the state, with the result under the request's idempotency_key (the latest few kept)."""
        if payload.idempotency_key is not None:
            state.deploys.pop(payload.idempotency_key, None)
            state.deploys[payload.idempotency_key] = result.model_dump(mode="json")
            for key in list(state.deploys)[:-REMEMBERED_DEPLOYS]:
                del state.deploys[key]
        env.save(state)
        return result

    def _replayed(self, env: EnvironmentDir, recorded: dict[str, Any]) -> DeployResult:
        """The answer to a deploy already done under the same idempotency_key: what it answered then."""
        result = DeployResult.model_validate({**recorded, "replayed": True})
        DEPLOYS.labels(target=self.name, status="replayed").inc()
        log.info(
            "deploy: done before",
            extra={"environment": env.name, "release": result.release_id},
        )
        return result

    def _recover(self, env: EnvironmentDir, state: EnvironmentState, payload: DeployServicePayload) -> None:
        """Put right what a dead attempt left (services/infrastructure/recovery.py). An unjudged current
        release of what `payload` asks for is judged now (the retry of the deploy that made it):
        healthy, it is recorded as this deploy's release; otherwise it is stopped and given up."""
        self._tidy(env, state)
        info = recovery.unjudged_current(env, state)
        if info is None:
            return
        running = state.process
        if is_release_of(info, payload) and running is not None and running.release_id == info.release_id:
            url = app_url(info.port, info.health_path)
            _, reason = wait_until_healthy(url, info.health_timeout_seconds, lambda: is_alive(running))
            if reason is None:
                info.outcome = "healthy"
                env.save_release_info(info)
                state.history.append(info.release_id)
                env.save(state)
                log.info("deploy: a dead attempt's release is healthy", extra={"release": info.release_id})
                return
        self._stop_running(env, state)
        recovery.give_up_current(env, state, info)

    @staticmethod
    def _tidy(env: EnvironmentDir, state: EnvironmentState) -> None:
        """Before an operation that may start an app: stray apps stopped, dead attempts' folders removed."""
        recovery.stop_strays(env, state)
        recovery.remove_dead_folders(env, state)

    def _already_live(
        self, env: EnvironmentDir, state: EnvironmentState, payload: DeployServicePayload
    ) -> ReleaseInfo | None:
        """The live release when it is what `payload` asks for (same commit or artifact, no other
        settings) and it serves: deploying it again would only stop and restart it."""
        if state.current_release is None or state.stopped_by_request:
            return None
        info = env.release_info(state.current_release)
        if not is_release_of(info, payload):
            return None
        return info if health_report(env, state).status == "up" else None

    def _unchanged(
        self, env: EnvironmentDir, state: EnvironmentState, live: ReleaseInfo, started: float
    ) -> DeployResult:
        DEPLOYS.labels(target=self.name, status="unchanged").inc()
        earlier = [r for r in state.history if r != live.release_id]
        log.info("deploy: already live", extra={"environment": env.name, "release": live.release_id})
        return DeployResult(
            environment=env.name,
            status="deployed",
            release_id=live.release_id,
            active_release=live.release_id,
            previous_release=earlier[-1] if earlier else None,
            message=f"release {live.release_id} of this commit is already live and healthy: nothing to do",
            health=health_report(env, state),
            duration_seconds=round(time.monotonic() - started, 3),
            unchanged=True,
        )

    def rollback(self, payload: RollbackPayload) -> RollbackResult:
        env = self._existing(payload.environment)
        with env.locked():
            state = env.load()
            self._fence(env, state, payload.fencing_token)
            current = state.current_release
            target_id = payload.release_id or self._previous_of(state)
            target = env.release_info(target_id)
            self._tidy(env, state)
            self._stop_running(env, state)
            reason = self._start_and_check(env, state, target)
            ROLLBACKS.labels(target=self.name, trigger="requested").inc()
            if reason is None:
                status, message = "rolled_back", f"release {target_id} is live again (was {current})"
            else:
                if current is not None and current != target_id:
                    self._start_and_check(env, state, env.release_info(current))
                status, message = "failed", f"release {target_id} did not come up ({reason}); kept {current}"
            env.save(state)
            report = health_report(env, state)
        return RollbackResult(
            environment=env.name,
            status=status,
            from_release=current,
            to_release=target_id,
            message=message,
            health=report,
        )

    @staticmethod
    def _previous_of(state: EnvironmentState) -> str:
        history = state.history
        if state.current_release in history:
            history = history[: len(history) - 1 - history[::-1].index(state.current_release)]
        earlier = [release for release in history if release != state.current_release]
        if not earlier:
            raise ReleaseNotFoundError("no previous release to roll back to")
        return earlier[-1]

    def health(self, payload: HealthCheckPayload) -> HealthReport:
        env = self._existing(payload.environment)
        return health_report(env, env.load())  # read-only: no lock, so a long deploy never blocks it

    def update_config(self, payload: UpdateConfigPayload) -> UpdateConfigResult:
        env = EnvironmentDir(self.data_dir, payload.environment)
        with env.locked():
            state = env.load()
            self._fence(env, state, payload.fencing_token)
            before = env_file.read(env.config_file)
            if payload.revert:
                after = env_file.revert(env.config_file)
            else:
                after = {k: v for k, v in {**before, **payload.values}.items() if k not in payload.unset}
                env_file.write_keeping_previous(env.config_file, after)
            changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
            running = state.process is not None and is_alive(state.process)
            status, restarted, message = "applied", False, f"{len(changed)} variable(s) changed"
            if payload.restart and running and state.current_release:
                info = env.release_info(state.current_release)
                self._stop_running(env, state)
                reason = self._start_and_check(env, state, info)
                restarted = True
                if reason is not None:
                    env_file.revert(env.config_file)
                    self._start_and_check(env, state, info)
                    status, message = (
                        "reverted",
                        f"the app failed its health check with the new values: {reason}",
                    )
            env.save(state)
            report = health_report(env, state) if state.current_release else None
        return UpdateConfigResult(
            environment=env.name,
            status=status,
            keys_changed=changed,
            restarted=restarted,
            message=message,
            health=report,
        )

    def stop(self, payload: StopServicePayload) -> StopResult:
        env = self._existing(payload.environment)
        with env.locked():
            state = env.load()
            self._fence(env, state, payload.fencing_token)
            stopped = state.process is not None and stop_app(state.process)
            state.process, state.stopped_by_request = None, True
            env.save(state)
        message = "stopped" if stopped else "nothing was running"
        return StopResult(
            environment=env.name, stopped=stopped, release_id=state.current_release, message=message
        )

    def restart(self, payload: RestartServicePayload) -> HealthReport:
        env = self._existing(payload.environment)
        with env.locked():
            state = env.load()
            self._fence(env, state, payload.fencing_token)
            if state.current_release is None:
                raise ReleaseNotFoundError(f"environment {env.name!r} has no current release to restart")
            self._tidy(env, state)
            self._stop_running(env, state)
            reason = self._start_and_check(env, state, env.release_info(state.current_release))
            env.save(state)
            return health_report(env, state, reason)
