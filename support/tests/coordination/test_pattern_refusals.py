"""Parameters and steps that could never work are refused when the file is read, naming the key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent_orchestrator.coordination import PatternError, load_patterns

pytestmark = pytest.mark.unit


def refusal(folder: Path) -> PatternError:
    with pytest.raises(PatternError) as caught:
        load_patterns(folder)
    return caught.value


@pytest.mark.parametrize(
    ("parameter", "key", "reason"),
    [
        ("{type: integer, min: 5, max: 2}", "parameters.n.max", "max 2 is less than min 5"),
        ("{type: integer, default: 12, max: 9}", "parameters.n.default", "12 is more than the maximum 9"),
        ('{type: integer, default: "3"}', "parameters.n.default", "expected integer, got string '3'"),
        ("{type: boolean, min: 1}", "parameters.n.min", "a boolean parameter has no bounds"),
        ("{type: list, max: 1.5}", "parameters.n.max", "a whole number >= 0"),
        ("{type: integer, choices: [a]}", "parameters.n.choices", "choices are for string parameters"),
        ("{type: string, default: c, choices: [a, b]}", "parameters.n.default", "'c' is not one of a, b"),
        ('{type: string, default: "{params.x}"}', "parameters.n.default", "the repo or the context only"),
        ("{type: text}", "parameters.n.type", "Input should be"),
    ],
)
def test_bad_parameters_and_bounds(tmp_path: Path, parameter: str, key: str, reason: str) -> None:
    body = f"""\
        name: p
        parameters: {{n: {parameter}}}
        steps:
          - {{key: t, capability: cicd, request_type: RUN_PIPELINE}}
        """
    (tmp_path / "p.pattern.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    error = refusal(tmp_path)
    assert error.key == key
    assert reason in error.reason


@pytest.mark.parametrize(
    ("steps", "key", "reason"),
    [
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, depends_on: [b]}\n"
            "- {key: b, capability: cicd, request_type: RUN_PIPELINE, depends_on: [a]}",
            "steps[0]",
            "dependency cycle between steps: a -> b -> a",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE}\n"
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE}",
            "steps[1].key",
            "step key 'a' is already used in this scope",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, depends_on: [z]}",
            "steps[0].depends_on[0]",
            "unknown step 'z' (steps here: a)",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 2}}\n"
            "- {key: m, merge: {of: [a], strategy: majority, field: status}}",
            "steps[1].merge",
            "a majority merge declares its `tie_breaker`",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 2}}\n"
            "- {key: m, merge: {of: [a], strategy: majority, field: s, tie_breaker: most_severe}}",
            "steps[1].merge",
            "`severity_order` (most severe first) goes with `tie_breaker: most_severe`",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 2}}\n"
            "- {key: m, merge: {of: [a], strategy: combine, field: s}}\n"
            "- {key: j, join: {of: [m]}}",
            "steps[2].join.of[0]",
            "'m' is a merge: a join reads tasks",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 2}}\n"
            '- {key: b, capability: cicd, request_type: RUN_PIPELINE, payload: {ref: "{steps.a.commit}"}}',
            "steps[1].payload.ref",
            "'a' is split; read its results through a merge",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 2}}\n"
            "- {key: m, merge: {of: [a], strategy: combine, field: s}}\n"
            '- {key: b, capability: cicd, request_type: RUN_PIPELINE, payload: {x: "{steps.m.winner}"}}',
            "steps[2].payload.x",
            "unknown field 'winner' of the merge 'm'",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 2}}\n"
            "- {key: m, merge: {of: [a], strategy: combine, field: s}}\n"
            '- {key: b, capability: cicd, request_type: RUN_PIPELINE, payload: {x: "{steps.m.value}"}}\n'
            "- {key: j, join: {of: [b]}}",
            "steps[3].join.of[0]",
            "'b' is created only once what it waits for is done",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: 51}}",
            "steps[0].split.count",
            "51 is not within 1..50",
        ),
        (
            '- {key: a, capability: cicd, request_type: RUN_PIPELINE, split: {count: "{ticket.title}"}}',
            "steps[0].split.count",
            "exactly one {params.x} of a integer parameter",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE}\n"
            "- {key: j, join: {of: [a], mode: quorum, quorum: 2}}",
            "steps[1].join.quorum",
            "2 is not within 1..1",
        ),
        (
            "- key: l\n"
            "  loop:\n"
            "    max_rounds: 2\n"
            "    until: {step: a, field: status, equals: passed}\n"
            "    steps:\n"
            "      - {key: a, capability: cicd, request_type: RUN_PIPELINE}\n"
            "      - {key: inner, loop: {max_rounds: 1, until: {step: x, field: y, equals: 1}, steps: []}}",
            "steps[0].loop.steps[1]",
            "a loop step cannot be here",
        ),
        (
            "- key: l\n"
            "  loop:\n"
            "    max_rounds: 2\n"
            "    until: {step: b, field: status, equals: passed}\n"
            "    steps:\n"
            "      - {key: a, capability: cicd, request_type: RUN_PIPELINE}",
            "steps[0].loop.until.step",
            "unknown step 'b' (steps of this loop: a)",
        ),
        (
            "- key: l\n"
            "  loop:\n"
            "    max_rounds: 2\n"
            "    until: {step: a, field: status, equals: passed}\n"
            "    steps:\n"
            '      - {key: a, capability: cicd, request_type: RUN_PIPELINE, payload: {x: "{loop.previous}"}}',
            "steps[0].loop.steps[0].payload.x",
            "unknown loop variable 'previous' in {loop.previous} (round, )",
        ),
        (
            "- {key: a, capability: cicd, request_type: RUN_PIPELINE}\n"
            "- key: l\n"
            "  loop:\n"
            "    max_rounds: 2\n"
            '    until: {step: t, field: status, equals: "{steps.a.status}"}\n'
            "    steps:\n"
            "      - {key: t, capability: cicd, request_type: RUN_PIPELINE}",
            "steps[1].loop.until.equals",
            "the value to reach is known before the loop starts",
        ),
    ],
)
def test_steps_that_could_never_run(tmp_path: Path, steps: str, key: str, reason: str) -> None:
    body = "name: p\nsteps:\n" + textwrap.indent(steps, "  ") + "\n"
    (tmp_path / "p.pattern.yaml").write_text(body, encoding="utf-8")
    error = refusal(tmp_path)
    assert (error.key, error.file) == (key, str(tmp_path / "p.pattern.yaml"))
    assert reason in error.reason
