"""Loading the shipped patterns, and the refusals at load: each names the file and the key path."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from agent_orchestrator.coordination import PATTERNS_DIR, PatternError, load_pattern_file, load_patterns

pytestmark = pytest.mark.unit

REVIEW = """\
      capability: code_review
      request_type: REVIEW_CODE
      payload: {repo: "{repo.path}", base: "{repo.base_branch}", head: "{params.head}"}
"""


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.pattern.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def user(name: str, uses: str) -> str:
    return f"""\
name: {name}
parameters: {{head: {{type: string}}}}
result: inner
steps:
  - key: inner
    use: {uses}
    with: {{head: main}}
"""


def refusal(folder: Path) -> PatternError:
    with pytest.raises(PatternError) as caught:
        load_patterns(folder)
    return caught.value


def test_the_shipped_patterns_load() -> None:
    patterns = load_patterns()
    assert sorted(patterns) == ["majority_vote", "parallel_implementation", "review_feedback_loop"]
    vote = patterns["majority_vote"].spec
    assert vote.result == "verdict"
    merge_step = next(s for s in vote.steps if s.key == "verdict")
    assert merge_step.merge.strategy == "majority" and merge_step.merge.tie_breaker == "most_severe"
    loop = patterns["review_feedback_loop"].spec.steps[0]
    assert loop.loop.until.step == "review" and loop.loop.until.equals == "approve"
    parallel = patterns["parallel_implementation"].spec
    assert [s.kind for s in parallel.steps] == ["task", "join", "merge", "task", "task"]
    # task_catalogue.yaml beside them is the orchestrator agent's, not a pattern
    assert (PATTERNS_DIR / "task_catalogue.yaml").is_file()


def test_a_pattern_that_reaches_itself_through_others_is_named_as_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a", user("a", "b"))
    write(tmp_path, "b", user("b", "c"))
    write(tmp_path, "c", user("c", "a"))
    error = refusal(tmp_path)
    assert error.file.endswith("a.pattern.yaml")
    assert error.key == "steps[0].use"
    assert "pattern cycle: a -> b -> c -> a" in error.reason


def test_a_pattern_using_itself_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, "selfish", user("selfish", "selfish"))
    error = refusal(tmp_path)
    assert (error.key, error.reason.split(" (")[0]) == ("steps[0].use", "pattern cycle: selfish -> selfish")


def test_a_cycle_inside_a_loop_body_is_found_too(tmp_path: Path) -> None:
    write(tmp_path, "a", user("a", "b"))
    write(
        tmp_path,
        "b",
        """\
        name: b
        parameters: {head: {type: string}}
        result: again
        steps:
          - key: again
            loop:
              max_rounds: 2
              until: {step: inner, field: verdict, equals: approve}
              result: inner
              steps:
                - key: inner
                  use: a
                  with: {head: "{params.head}"}
        """,
    )
    error = refusal(tmp_path)
    assert error.file.endswith("a.pattern.yaml") and "a -> b -> a" in error.reason


def test_an_unknown_pattern_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a", user("a", "nowhere"))
    error = refusal(tmp_path)
    assert (error.key, error.reason) == ("steps[0].use", "unknown pattern 'nowhere' (known: a)")


def test_an_unknown_variable_is_refused_with_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p",
        """\
        name: p
        parameters: {head: {type: string}}
        steps:
          - key: review
            capability: code_review
            request_type: REVIEW_CODE
            payload: {repo: "{repo.path}", head: "{params.heda}"}
        """,
    )
    with pytest.raises(PatternError) as caught:
        load_pattern_file(path)
    assert caught.value.file == str(path)
    assert caught.value.key == "steps[0].payload.head"
    assert caught.value.reason == "unknown parameter 'heda' in {params.heda} (parameters: head)"


@pytest.mark.parametrize(
    ("payload", "key", "reason"),
    [
        ('{x: "{tiket.title}"}', "steps[0].payload.x", "unknown variable namespace 'tiket'"),
        ('{x: "{ticket.owner}"}', "steps[0].payload.x", "unknown ticket field 'owner'"),
        ('{x: "{steps.nope.verdict}"}', "steps[0].payload.x", "unknown step 'nope'"),
        ('{x: "{steps.review.verdict}"}', "steps[0].payload.x", "a step cannot read its own result"),
        ('{x: "{part.index}"}', "steps[0].payload.x", "for the payload of a split step only"),
        ('{x: "{loop.round}"}', "steps[0].payload.x", "for the steps of a loop only"),
        ('{x: ["ok", "{params}"]}', "steps[0].payload.x[1]", "names a whole namespace"),
        ('{x: "{params.head"}', "steps[0].payload.x", "is not a placeholder"),
    ],
)
def test_placeholders_that_can_never_resolve(tmp_path: Path, payload: str, key: str, reason: str) -> None:
    write(
        tmp_path,
        "p",
        f"""\
        name: p
        parameters: {{head: {{type: string}}}}
        steps:
          - key: review
            capability: code_review
            request_type: REVIEW_CODE
            payload: {payload}
        """,
    )
    error = refusal(tmp_path)
    assert error.key == key
    assert reason in error.reason


def test_an_unknown_key_is_refused_listing_the_allowed_ones(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p",
        """\
        name: p
        steps:
          - key: review
            capabilty: code_review
            request_type: REVIEW_CODE
        """,
    )
    error = refusal(tmp_path)
    assert error.key == "steps[0].capabilty"
    assert error.reason.startswith("unknown key 'capabilty' (allowed: key, title, depends_on, capability,")


def test_an_unknown_key_of_a_primitive_is_named_without_pydantic_tags(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p",
        """\
        name: p
        steps:
          - {key: review, capability: code_review, request_type: REVIEW_CODE, split: {count: 2}}
          - key: done
            join: {of: [review], mode: all, quorom: 2}
        """,
    )
    error = refusal(tmp_path)
    assert error.key == "steps[1].join.quorom"
    assert error.reason == "unknown key 'quorom' (allowed: of, mode, quorum, cancel_rest)"


def test_use_is_checked_against_the_used_patterns_parameters_and_result(tmp_path: Path) -> None:
    shutil.copy(PATTERNS_DIR / "majority_vote.pattern.yaml", tmp_path)
    write(
        tmp_path, "u", "name: u\nsteps:\n  - {key: v, use: majority_vote, with: {head: x, reviewers: 12}}\n"
    )
    error = refusal(tmp_path)
    assert (error.key, error.reason) == (
        "steps[0].with.reviewers",
        "parameter of majority_vote: 12 is more than the maximum 9",
    )
    write(tmp_path, "u", "name: u\nsteps:\n  - {key: v, use: majority_vote, with: {head: x, voters: 3}}\n")
    error = refusal(tmp_path)
    assert (
        error.key == "steps[0].with.voters"
        and "unknown parameter 'voters' of pattern majority_vote" in error.reason
    )
    write(tmp_path, "u", "name: u\nsteps:\n  - {key: v, use: majority_vote}\n")
    error = refusal(tmp_path)
    assert (error.key, error.reason) == (
        "steps[0].with",
        "missing required parameter 'head' of pattern majority_vote",
    )
    write(
        tmp_path,
        "u",
        "name: u\nsteps:\n  - {key: v, use: majority_vote, with: {head: x}}\n  - {key: j, join: {of: [v]}}\n",
    )
    error = refusal(tmp_path)
    assert error.key == "steps[1].join.of[0]"
    assert "the result of pattern majority_vote (verdict) is not a task made up front" in error.reason


def test_file_level_refusals(tmp_path: Path) -> None:
    write(tmp_path, "p", "name: q\nsteps:\n  - {key: a, capability: cicd, request_type: RUN_PIPELINE}\n")
    error = refusal(tmp_path)
    assert (error.key, error.reason) == ("name", "'q' differs from the file's name (p.pattern.yaml)")
    write(tmp_path, "p", "name: p\nname: p\nsteps: []\n")
    assert (refusal(tmp_path).key, refusal(tmp_path).reason) == ("name (line 2)", "duplicate key")
    write(tmp_path, "p", "name: p\nsteps: [\n")
    assert refusal(tmp_path).reason.startswith("not valid YAML")
    write(tmp_path, "p", "- just a list\n")
    assert refusal(tmp_path).key == "(top level)"
    write(
        tmp_path,
        "p",
        "name: p\nsteps:\n  - {key: a, capability: cicd, request_type: RUN_PIPELINE, max_attempts: '3'}\n",
    )
    error = refusal(tmp_path)
    assert (
        error.key == "steps[0].max_attempts" and "valid integer" in error.reason
    )  # strict: "3" is no number


def test_other_yaml_files_are_not_patterns(tmp_path: Path) -> None:
    (tmp_path / "task_catalogue.yaml").write_text("capabilities: {}\n", encoding="utf-8")
    assert load_patterns(tmp_path) == {}
