"""The schema of a pattern file (`config/patterns/<name>.pattern.yaml`), as strict pydantic models:
unknown keys are refused everywhere and a quoted "3" is not a number. docs/COORDINATION_PATTERNS.md
describes it; patterns.py loads and checks what a schema cannot (references, cycles, bounds).

A step is one of seven kinds, told apart by the key it carries: `use` (another pattern), `join`,
`sync`, `merge`, `loop`, otherwise a task template (`capability`, `request_type`, `payload`, and an
optional `split`). A loop's body holds steps of every kind but `loop`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

STEP_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"
PATTERN_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
FIELD_PATH_PATTERN = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"  # `verdict`, `decided_by.verdict`, `findings.0`
STEP_FIELD_PATTERN = r"^[a-z][a-z0-9_]{0,30}(\.[A-Za-z0-9_]+)+$"  # `<step>.<field>...`
MAX_STEPS = 50
MAX_ROUNDS = 20

StepKey = Annotated[str, Field(pattern=STEP_KEY_PATTERN)]
FieldPath = Annotated[str, Field(pattern=FIELD_PATH_PATTERN)]
ParamName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,49}$")]
# A number given literally, or as a string that is exactly one `{params.x}` placeholder.
IntOrParam = int | str
NumberOrParam = float | int | str


class _Strict(BaseModel):
    # strict: what the file says is what runs (`yes` is not a string, "3" not a number)
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Parameter(_Strict):
    """A pattern's parameter: its type, default (none: the parameter is required) and bounds."""

    type: Literal["integer", "number", "string", "boolean", "list", "object"]
    description: str = Field("", max_length=1000)
    default: Any = None
    min: int | float | None = Field(None, description="numbers: the least value; strings, lists: length")
    max: int | float | None = Field(None, description="numbers: the greatest value; strings, lists: length")
    choices: list[str] | None = Field(None, min_length=1, max_length=50, description="strings only")

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set

    def problem(self, value: Any) -> str | None:
        """Why `value` does not fit this parameter (type, bounds, choices), or None when it does."""
        expected = _PYTHON_TYPES[self.type]
        if not isinstance(value, expected) or (isinstance(value, bool) and self.type != "boolean"):
            return f"expected {self.type}, got {_json_type(value)} {value!r}"[:300]
        measured, what = (value, "") if self.type in ("integer", "number") else (None, "")
        if self.type in ("string", "list"):
            measured, what = len(value), " in length"
        if measured is not None and self.min is not None and measured < self.min:
            return f"{value!r} is less than the minimum {self.min}{what}"[:300]
        if measured is not None and self.max is not None and measured > self.max:
            return f"{value!r} is more than the maximum {self.max}{what}"[:300]
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(self.choices)}"
        return None


_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "integer": int,
    "number": (int, float),
    "string": str,
    "boolean": bool,
    "list": list,
    "object": dict,
}


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class _StepBase(_Strict):
    kind: ClassVar[str]
    key: StepKey
    title: str = Field("", max_length=300)
    depends_on: list[StepKey] = Field(default_factory=list, max_length=MAX_STEPS)


class SplitOptions(_Strict):
    """One of: `count` copies; `files` cut into at most `count` parts `by` file or module; `parts`."""

    count: IntOrParam | None = None
    files: list[str] | str | None = Field(None, description="paths, or a placeholder naming a list")
    by: Literal["file", "module"] | str | None = Field(
        None, description="file or module, or a `{params.x}` string parameter with those choices"
    )
    parts: list[dict[str, Any]] | str | None = Field(
        None, description="one object per part, merged over the payload; or a placeholder naming a list"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.parts is not None and (self.count is not None or self.files is not None):
            raise ValueError("give `parts`, or `files` (with an optional `count`), or `count` alone")
        if self.parts is None and self.files is None and self.count is None:
            raise ValueError("give `count`, `files` or `parts`")
        if self.by is not None and self.files is None:
            raise ValueError("`by` splits `files`: give them")
        return self

    @property
    def source(self) -> Literal["count", "files", "parts"]:
        return "parts" if self.parts is not None else "files" if self.files is not None else "count"


class TaskStep(_StepBase):
    kind: ClassVar[str] = "task"
    capability: str = Field(pattern=r"^[a-z][a-z0-9_]{0,49}$")
    request_type: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,49}$")
    payload: dict[str, Any] = Field(default_factory=dict)
    # The tasks layer's bounds (agent_orchestrator.tasks.TaskSpec): a file that loads renders valid tasks.
    priority: int = Field(0, ge=-1000, le=1000)
    timeout_seconds: float = Field(600.0, ge=1, le=86400)
    max_attempts: int = Field(3, ge=1, le=20)
    locks: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=5
    )
    split: SplitOptions | None = None


class JoinOptions(_Strict):
    of: list[StepKey] = Field(min_length=1, max_length=MAX_STEPS)
    mode: Literal["all", "quorum"] = "all"
    quorum: IntOrParam | None = None
    cancel_rest: bool = Field(False, description="a ready quorum cancels the tasks still unfinished")

    @model_validator(mode="after")
    def _quorum(self) -> Self:
        if (self.mode == "quorum") != (self.quorum is not None):
            raise ValueError("`quorum: N` goes with `mode: quorum`, and only with it")
        if self.cancel_rest and self.mode != "quorum":
            raise ValueError("`cancel_rest` is for `mode: quorum` (a join of all waits for every task)")
        return self


class JoinStep(_StepBase):
    kind: ClassVar[str] = "join"
    join: JoinOptions


class SyncOptions(_Strict):
    of: list[StepKey] = Field(min_length=1, max_length=MAX_STEPS)
    timeout_seconds: NumberOrParam
    on_timeout: Literal["fail", "proceed"] = "fail"


class SyncStep(_StepBase):
    kind: ClassVar[str] = "sync"
    sync: SyncOptions


class MergeOptions(_Strict):
    of: list[StepKey] = Field(min_length=1, max_length=MAX_STEPS)
    strategy: Literal["combine", "union", "intersection", "majority"]
    field: FieldPath | None = None
    key: list[FieldPath] | None = Field(None, min_length=1, max_length=10)
    tie_breaker: Literal["first", "most_severe", "fail"] | None = None
    severity_order: list[Any] | None = Field(None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _options_fit_the_strategy(self) -> Self:
        if self.key is not None and self.strategy not in ("union", "intersection"):
            raise ValueError(
                f"`key` (the identity of an item) is for union and intersection, not {self.strategy}"
            )
        if self.strategy != "majority" and (self.tie_breaker or self.severity_order):
            raise ValueError(f"`tie_breaker` and `severity_order` are for majority, not {self.strategy}")
        if self.strategy == "majority" and self.tie_breaker is None:
            raise ValueError("a majority merge declares its `tie_breaker` (first, most_severe or fail)")
        if (self.tie_breaker == "most_severe") != (self.severity_order is not None):
            raise ValueError("`severity_order` (most severe first) goes with `tie_breaker: most_severe`")
        return self


class MergeStep(_StepBase):
    kind: ClassVar[str] = "merge"
    merge: MergeOptions


class UseStep(_StepBase):
    kind: ClassVar[str] = "use"
    use: str = Field(pattern=PATTERN_NAME_PATTERN)
    with_: dict[ParamName, Any] = Field(default_factory=dict, alias="with")


class Until(_Strict):
    step: StepKey
    field: FieldPath
    equals: Any


class Carry(_Strict):
    """A value the next round reads as `{loop.<name>}`: `initial` in round 1, then `next` (`<step>.<field>`)
    of the round before."""

    initial: Any
    next: str = Field(pattern=STEP_FIELD_PATTERN)


def step_kind(value: Any) -> str:
    """Which kind a step is: the first of its keys that names one; a task template otherwise."""
    if isinstance(value, dict):
        return next((kind for kind in ("use", "join", "sync", "merge", "loop") if kind in value), "task")
    return getattr(value, "kind", "task")


BodyStep = Annotated[
    Annotated[TaskStep, Tag("task")]
    | Annotated[JoinStep, Tag("join")]
    | Annotated[SyncStep, Tag("sync")]
    | Annotated[MergeStep, Tag("merge")]
    | Annotated[UseStep, Tag("use")],
    Discriminator(step_kind),
]


class LoopOptions(_Strict):
    max_rounds: IntOrParam
    until: Until
    carry: dict[ParamName, Carry] = Field(default_factory=dict, max_length=20)
    result: StepKey | None = Field(None, description="the body step whose last result is the loop's result")
    steps: list[BodyStep] = Field(min_length=1, max_length=MAX_STEPS)


class LoopStep(_StepBase):
    kind: ClassVar[str] = "loop"
    loop: LoopOptions


Step = Annotated[
    Annotated[TaskStep, Tag("task")]
    | Annotated[JoinStep, Tag("join")]
    | Annotated[SyncStep, Tag("sync")]
    | Annotated[MergeStep, Tag("merge")]
    | Annotated[UseStep, Tag("use")]
    | Annotated[LoopStep, Tag("loop")],
    Discriminator(step_kind),
]
AnyStep = TaskStep | JoinStep | SyncStep | MergeStep | UseStep | LoopStep
STEP_MODELS: dict[str, type[_StepBase]] = {
    "task": TaskStep,
    "join": JoinStep,
    "sync": SyncStep,
    "merge": MergeStep,
    "use": UseStep,
    "loop": LoopStep,
}


class PatternFile(_Strict):
    name: str = Field(pattern=PATTERN_NAME_PATTERN)
    description: str = Field("", max_length=2000)
    parameters: dict[ParamName, Parameter] = Field(default_factory=dict, max_length=30)
    result: StepKey | None = Field(None, description="the step whose result is the pattern's result")
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)


def coordination_inputs(step: AnyStep) -> list[str]:
    """The steps a join, sync or merge reads (`of`)."""
    options = getattr(step, step.kind, None)
    return list(getattr(options, "of", []) or [])
