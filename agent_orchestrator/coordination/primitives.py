"""The primitives over tasks, as pure decisions the workflow calls with task rows.

* `split(spec, parts)`: one task spec becomes N, keyed `<key>.1` .. `<key>.N`, each with the spec's
  payload updated by its part, the same capability and request type and everything else.
  `partition(files, count, by)` cuts a change's files into at most `count` parts by file or by module.
* `join(tasks, mode)`: N tasks become one decision: `ready`, `waiting` or `failed`, with the reason.
  `all` is ready when every task succeeded and failed as soon as one ended otherwise;
  `quorum(n)` is ready when n succeeded and failed as soon as n can no longer succeed.
* `sync_point(tasks, deadline, now, on_timeout)`: a barrier with a deadline. `ready` when every task is
  final (whatever its outcome: a sync point is about time, a join about outcomes), `waiting` until the
  deadline, then `timed_out` naming the late tasks the workflow must cancel, and whether it proceeds
  (`on_timeout: proceed`, with the tasks that succeeded) or fails (`on_timeout: fail`).

Nothing here reads or writes the database: the workflow reads the rows, calls these, and acts
(creates the split's tasks, cancels the late ones, moves on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, ValidationError

from agent_orchestrator.coordination.errors import CoordinationArgumentError
from agent_orchestrator.tasks import Task, TaskSpec, TaskStatus

MAX_PARTS = 50


def split(spec: TaskSpec, parts: Sequence[Mapping[str, Any]]) -> list[TaskSpec]:
    """One spec per part: key `<key>.<i>`, payload `{**spec.payload, **part}`, title `... (part i/N)`."""
    if not 1 <= len(parts) <= MAX_PARTS:
        raise CoordinationArgumentError("parts", f"a split makes 1 to {MAX_PARTS} parts, got {len(parts)}")
    specs = []
    count = len(parts)
    for index, part in enumerate(parts, start=1):
        if not isinstance(part, Mapping):
            raise CoordinationArgumentError(f"parts[{index - 1}]", "a part is an object of payload fields")
        fields = spec.model_dump()
        fields.update(
            key=f"{spec.key}.{index}",
            title=f"{spec.title or spec.key} (part {index}/{count})"[:300],
            payload={**spec.payload, **part},
        )
        try:
            specs.append(TaskSpec.model_validate(fields))
        except ValidationError as exc:  # the key grew past 64 characters, the payload past its bound
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CoordinationArgumentError(f"parts[{index - 1}].{where}", first["msg"]) from None
    return specs


def module_of(path: str) -> str:
    """The module a file belongs to for a split by module: its folder (a package's files change together)."""
    parent = str(PurePosixPath(path).parent)
    return "" if parent == "." else parent


def partition(files: Sequence[str], count: int, by: Literal["file", "module"] = "file") -> list[list[str]]:
    """At most `count` non-empty parts of `files` (duplicates dropped), balanced by number of files.

    By module, the files of one folder stay in one part. Deterministic: the largest groups are placed
    first, each into the part with the fewest files so far (the earlier part on equal counts); within
    a part the files keep their given order, and the parts are ordered by their first file.
    """
    if count < 1:
        raise CoordinationArgumentError("count", f"a split makes at least one part, got {count}")
    unique = list(dict.fromkeys(files))
    if not unique:
        raise CoordinationArgumentError("files", "no files to split")
    if by == "module":
        groups: dict[str, list[str]] = {}
        for path in unique:
            groups.setdefault(module_of(path), []).append(path)
        units = list(groups.values())
    elif by == "file":
        units = [[path] for path in unique]
    else:
        raise CoordinationArgumentError("by", f"split by file or module, not {by!r}")
    bins: list[list[str]] = [[] for _ in range(min(count, len(units)))]
    for unit in sorted(units, key=len, reverse=True):  # sorted() is stable: equal sizes keep their order
        min(bins, key=len).extend(unit)  # min() takes the first of equal sizes
    position = {path: i for i, path in enumerate(unique)}
    parts = [sorted(b, key=position.__getitem__) for b in bins]
    return sorted(parts, key=lambda part: position[part[0]])


class Quorum(BaseModel):
    """Join when `n` tasks succeeded."""

    n: int = Field(ge=1)

    def __str__(self) -> str:
        return f"quorum({self.n})"


def quorum(n: int) -> Quorum:
    return Quorum(n=n)


JoinMode = Literal["all"] | Quorum


class JoinDecision(BaseModel):
    status: Literal["ready", "waiting", "failed"]
    reason: str
    mode: str
    needed: int = Field(description="how many tasks must succeed")
    succeeded: list[str]
    unfinished: list[str]
    unsuccessful: list[str] = Field(
        description="final but not succeeded: failed, timed out, cancelled, blocked"
    )
    cancel: list[UUID] = Field(
        default_factory=list,
        description="unfinished tasks nobody waits for any more (a ready quorum that declared cancel_rest)",
    )


def _ordered(tasks: Sequence[Task]) -> list[Task]:
    if not tasks:
        raise CoordinationArgumentError("tasks", "nothing to wait for: a join or sync point needs tasks")
    return list(tasks)


def _outcome(task: Task) -> str:
    why = task.error or task.blocked_reason
    return f"{task.key} {task.status.value}" + (f" ({why[:200]})" if why else "")


def join(tasks: Sequence[Task], mode: JoinMode = "all", *, cancel_rest: bool = False) -> JoinDecision:
    """Whether the join of `tasks` is ready, still waiting, or can no longer be ready."""
    tasks = _ordered(tasks)
    needed = len(tasks) if mode == "all" else mode.n if isinstance(mode, Quorum) else -1
    if needed < 1:
        raise CoordinationArgumentError("mode", f"join all or quorum(n), not {mode!r}")
    if needed > len(tasks):
        raise CoordinationArgumentError("mode", f"{mode} of {len(tasks)} tasks can never be reached")
    succeeded = [t for t in tasks if t.status is TaskStatus.SUCCEEDED]
    unfinished = [t for t in tasks if not t.status.final]
    unsuccessful = [t for t in tasks if t.status.final and t.status is not TaskStatus.SUCCEEDED]
    decision = {
        "mode": str(mode),
        "needed": needed,
        "succeeded": [t.key for t in succeeded],
        "unfinished": [t.key for t in unfinished],
        "unsuccessful": [t.key for t in unsuccessful],
    }
    if len(succeeded) >= needed:
        rest = [t.id for t in unfinished] if cancel_rest else []
        return JoinDecision(
            status="ready",
            reason=f"{len(succeeded)} of {len(tasks)} succeeded ({mode} needs {needed})",
            cancel=rest,
            **decision,
        )
    if len(succeeded) + len(unfinished) < needed:
        ended = "; ".join(_outcome(t) for t in unsuccessful)
        return JoinDecision(
            status="failed",
            reason=f"{mode} of {len(tasks)} can no longer be reached: {ended}",
            **decision,
        )
    waiting = ", ".join(t.key for t in unfinished)
    return JoinDecision(
        status="waiting",
        reason=f"{len(succeeded)} of {needed} needed succeeded; waiting for {waiting}",
        **decision,
    )


class SyncDecision(BaseModel):
    status: Literal["ready", "waiting", "timed_out"]
    reason: str
    on_timeout: Literal["fail", "proceed"]
    proceed: bool = Field(
        description="the workflow goes on past the sync point (ready, or timed out with proceed)"
    )
    deadline: datetime
    succeeded: list[str]
    unsuccessful: list[str]
    late: list[str] = Field(default_factory=list, description="keys of the tasks unfinished at the deadline")
    cancel: list[UUID] = Field(
        default_factory=list, description="the late tasks' ids: the workflow cancels them"
    )


def sync_point(
    tasks: Sequence[Task],
    deadline: datetime,
    now: datetime,
    on_timeout: Literal["fail", "proceed"] = "fail",
) -> SyncDecision:
    """Where the sync point over `tasks` stands at `now` (both datetimes timezone-aware)."""
    tasks = _ordered(tasks)
    if deadline.tzinfo is None or now.tzinfo is None:
        raise CoordinationArgumentError("deadline", "give timezone-aware datetimes (the database's are)")
    if on_timeout not in ("fail", "proceed"):
        raise CoordinationArgumentError("on_timeout", f"fail or proceed, not {on_timeout!r}")
    unfinished = [t for t in tasks if not t.status.final]
    common = {
        "on_timeout": on_timeout,
        "deadline": deadline,
        "succeeded": [t.key for t in tasks if t.status is TaskStatus.SUCCEEDED],
        "unsuccessful": [t.key for t in tasks if t.status.final and t.status is not TaskStatus.SUCCEEDED],
    }
    if not unfinished:  # checked first: a set that finished exactly at the deadline is in time
        return SyncDecision(status="ready", reason=f"all {len(tasks)} tasks finished", proceed=True, **common)
    late = [t.key for t in unfinished]
    if now < deadline:
        return SyncDecision(
            status="waiting",
            reason=f"waiting until {deadline.isoformat()} for {', '.join(late)}",
            proceed=False,
            **common,
        )
    then = "proceeds with the tasks that succeeded" if on_timeout == "proceed" else "fails"
    return SyncDecision(
        status="timed_out",
        reason=f"deadline {deadline.isoformat()} passed with {', '.join(late)} unfinished: they are "
        f"cancelled and the sync point {then}",
        proceed=on_timeout == "proceed",
        late=late,
        cancel=[t.id for t in unfinished],
        **common,
    )


def results_of(tasks: Sequence[Task], keys: Sequence[str] | None = None) -> dict[str, Any]:
    """What a merge takes: every key of `keys` (default: the tasks' keys, in their order) with its
    task's result, or None when the task did not succeed (the merge then lists it as missing)."""
    by_key = {t.key: t for t in tasks}
    order = keys if keys is not None else [t.key for t in tasks]
    return {
        k: by_key[k].result if k in by_key and by_key[k].status is TaskStatus.SUCCEEDED else None
        for k in order
    }
