"""Workflow state with optimistic locking, over the procedures in config/state/020_workflow_state.sql.

    states = await WorkflowStateManager.connect(database_url)
    await states.create("run-1", "pr_deployment", {"attempts": 0})
    await states.update("run-1", lambda data: {**data, "attempts": data["attempts"] + 1})

`update` re-applies `fn` to the current data on every version conflict (the procedure returns the
current version and data with the conflict, so no extra read is needed); with retry=False a conflict
raises VersionConflict instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shared.db import open_pool

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]

SQL_CREATE = "SELECT * FROM create_workflow_state(%s, %s, %s, %s, %s, %s)"
SQL_GET = "SELECT * FROM workflow_state WHERE workflow_id = %s"
SQL_UPDATE = "SELECT * FROM update_workflow_state(%s, %s, %s, %s, %s, %s)"
SQL_CHECKPOINT = "SELECT create_workflow_checkpoint(%s, %s, %s, %s, %s, %s) AS id"
SQL_CHECKPOINTS = "SELECT * FROM workflow_checkpoints WHERE workflow_id = %s ORDER BY id"
SQL_RESTORE = "SELECT * FROM restore_workflow_checkpoint(%s, %s, %s)"
SQL_TRANSITION = "SELECT * FROM transition_workflow_status(%s, %s, %s, %s)"
SQL_CLEANUP = "SELECT cleanup_old_workflows(%s) AS deleted"


class WorkflowStateError(Exception):
    """Base of workflow state errors."""


class WorkflowArgumentError(WorkflowStateError, ValueError):
    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class WorkflowNotFound(WorkflowStateError, LookupError):
    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class WorkflowExists(WorkflowStateError):
    pass


class InvalidTransition(WorkflowStateError, ValueError):
    pass


class VersionConflict(WorkflowStateError):
    """The state changed since it was read: `expected` was stale, `current` is the version now."""

    def __init__(self, workflow_id: str, expected: int, current: int) -> None:
        super().__init__(f"version conflict on {workflow_id}: expected {expected}, current is {current}")
        self.workflow_id, self.expected, self.current = workflow_id, expected, current


def _mapped(exc: psycopg.Error) -> Exception | None:
    argument = exc.diag.column_name or "argument"
    message = exc.diag.message_primary or str(exc)
    return {
        "DW001": lambda: WorkflowArgumentError(argument, message),
        "DW002": lambda: InvalidTransition(message),
        "DW003": lambda: WorkflowNotFound(argument, message),
        "DW004": lambda: WorkflowExists(message),
    }.get(exc.sqlstate or "", lambda: None)()


@dataclass(frozen=True)
class WorkflowState:
    workflow_id: str
    workflow_type: str
    current_step: str | None
    state_data: JsonObject
    participating_agents: list[str]
    status: str
    version: int
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    error_message: str | None
    metadata: JsonObject


@dataclass(frozen=True)
class Checkpoint:
    id: int
    workflow_id: str
    step: str
    agent: str | None
    data: JsonObject
    duration_seconds: float | None
    status: str
    workflow_version: int
    created_at: datetime


class WorkflowStateManager:
    def __init__(self, pool: AsyncConnectionPool, *, owns_pool: bool) -> None:
        self._pool = pool
        self._owns_pool = owns_pool

    @classmethod
    async def connect(
        cls, database_url: str, *, max_size: int = 4, name: str = "devtools-workflow-state"
    ) -> WorkflowStateManager:
        return cls(await open_pool(database_url, max_size=max_size, name=name), owns_pool=True)

    @classmethod
    def from_pool(cls, pool: AsyncConnectionPool) -> WorkflowStateManager:
        return cls(pool, owns_pool=False)

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            async with self._pool.connection() as conn:
                return await (await conn.execute(sql, params)).fetchall()
        except psycopg.Error as exc:
            mapped = _mapped(exc)
            if mapped is not None:
                raise mapped from None
            raise

    async def create(
        self,
        workflow_id: str,
        workflow_type: str,
        state_data: JsonObject | None = None,
        *,
        participating_agents: list[str] | None = None,
        metadata: JsonObject | None = None,
        current_step: str | None = None,
    ) -> WorkflowState:
        rows = await self._rows(
            SQL_CREATE,
            (
                workflow_id,
                workflow_type,
                Jsonb(state_data or {}),
                participating_agents or [],
                Jsonb(metadata or {}),
                current_step,
            ),
        )
        return WorkflowState(**rows[0])

    async def get(self, workflow_id: str) -> WorkflowState:
        rows = await self._rows(SQL_GET, (workflow_id,))
        if not rows:
            raise WorkflowNotFound("workflow_id", f"unknown workflow_id: {workflow_id}")
        return WorkflowState(**rows[0])

    async def set(
        self,
        workflow_id: str,
        state_data: JsonObject,
        expected_version: int,
        *,
        current_step: str | None = None,
        participating_agents: list[str] | None = None,
        metadata: JsonObject | None = None,
    ) -> int:
        """Compare-and-set: the new version, or VersionConflict if expected_version is stale."""
        row = await self._cas(
            workflow_id, expected_version, state_data, current_step, participating_agents, metadata
        )
        if not row["updated"]:
            raise VersionConflict(workflow_id, expected_version, int(row["version"]))
        return int(row["version"])

    async def _cas(
        self,
        workflow_id: str,
        expected: int,
        data: JsonObject,
        step: str | None,
        agents: list[str] | None,
        metadata: JsonObject | None,
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise WorkflowArgumentError(
                "state_data", f"invalid state_data: must be a dict, got {type(data).__name__}"
            )
        params = (
            workflow_id,
            expected,
            Jsonb(data),
            step,
            agents,
            None if metadata is None else Jsonb(metadata),
        )
        return (await self._rows(SQL_UPDATE, params))[0]

    async def update(
        self,
        workflow_id: str,
        fn: Callable[[JsonObject], JsonObject],
        *,
        retry: bool = True,
        max_attempts: int = 100,
        current_step: str | None = None,
    ) -> WorkflowState:
        """Apply fn to the current data and store it; on a conflict re-apply fn to the newer data.

        fn may run several times, so it must be a pure function of its argument.
        """
        if max_attempts < 1:
            raise WorkflowArgumentError("max_attempts", "invalid max_attempts: must be at least 1")
        current = await self.get(workflow_id)
        version, data = current.version, current.state_data
        for attempt in range(1, max_attempts + 1):
            row = await self._cas(workflow_id, version, fn(dict(data)), current_step, None, None)
            if row["updated"]:
                return replace(
                    current,
                    version=int(row["version"]),
                    state_data=row["state_data"],
                    current_step=current_step or current.current_step,
                )
            if not retry:
                raise VersionConflict(workflow_id, version, int(row["version"]))
            log.debug(
                "workflow update conflict; re-applying",
                extra={"workflow_id": workflow_id, "attempt": attempt},
            )
            version, data = int(row["version"]), row["state_data"]
        raise VersionConflict(workflow_id, version, version)

    async def checkpoint(
        self,
        workflow_id: str,
        step: str,
        *,
        agent: str | None = None,
        data: JsonObject | None = None,
        duration_seconds: float | None = None,
        status: str = "completed",
    ) -> int:
        rows = await self._rows(
            SQL_CHECKPOINT,
            (workflow_id, step, agent, None if data is None else Jsonb(data), duration_seconds, status),
        )
        return int(rows[0]["id"])

    async def checkpoints(self, workflow_id: str) -> list[Checkpoint]:
        return [Checkpoint(**row) for row in await self._rows(SQL_CHECKPOINTS, (workflow_id,))]

    async def restore(
        self, workflow_id: str, checkpoint_id: int, *, expected_version: int | None = None
    ) -> int:
        row = (await self._rows(SQL_RESTORE, (workflow_id, checkpoint_id, expected_version)))[0]
        if not row["restored"]:
            raise VersionConflict(workflow_id, expected_version or 0, int(row["version"]))
        return int(row["version"])

    async def transition(
        self,
        workflow_id: str,
        new_status: str,
        *,
        error_message: str | None = None,
        expected_version: int | None = None,
    ) -> WorkflowState:
        try:
            rows = await self._rows(
                SQL_TRANSITION, (workflow_id, new_status, error_message, expected_version)
            )
        except psycopg.Error as exc:
            if exc.sqlstate == "DW005" and expected_version is not None:
                raise VersionConflict(
                    workflow_id, expected_version, (await self.get(workflow_id)).version
                ) from None
            raise
        return WorkflowState(**rows[0])

    async def cleanup_old(self, retention: timedelta) -> int:
        return int((await self._rows(SQL_CLEANUP, (retention,)))[0]["deleted"])
