"""Template variables: JSON types kept for whole-value placeholders, text inside strings, nested
fields and list indexes, escapes, and errors that name the placeholder."""

from __future__ import annotations

from typing import Any

import pytest

from agent_orchestrator.tickets import VariableError, resolve, template_variables
from agent_orchestrator.tickets.variables import parse_template
from support.tests.tickets.helpers import make_ticket

pytestmark = pytest.mark.unit

REVIEW = {
    "verdict": "request_changes",
    "findings": [{"file": "app.py", "line": 6, "rule": "F821"}, {"file": "settings.py", "line": 1}],
    "stats": {"files_changed": 2, "lines_added": 5, "ratio": 0.5},
    "approved": False,
    "llm_summary": None,
}


@pytest.fixture
def variables() -> dict[str, Any]:
    return template_variables(make_ticket(context={"review": REVIEW}))


def test_a_whole_value_placeholder_keeps_its_json_type(variables: dict[str, Any]) -> None:
    payload = {
        "findings": "{context.review.findings}",
        "stats": "{context.review.stats}",
        "count": "{context.review.stats.files_changed}",
        "ratio": "{context.review.stats.ratio}",
        "approved": "{context.review.approved}",
        "labels": "{ticket.labels}",
        "fixed": 3,
        "nested": {"list": ["{repo.path}", "{context.review.findings.1}"]},
    }
    assert resolve(payload, variables) == {
        "findings": REVIEW["findings"],
        "stats": REVIEW["stats"],
        "count": 2,
        "ratio": 0.5,
        "approved": False,
        "labels": ["api", "greeting"],
        "fixed": 3,
        "nested": {"list": ["/srv/repos/greeter", {"file": "settings.py", "line": 1}]},
    }


def test_placeholders_inside_text_are_substituted_as_text(variables: dict[str, Any]) -> None:
    assert resolve("Fix {ticket.title} ({ticket.priority}) in {repo.name}", variables) == (
        "Fix Add shout() (high) in greeter"
    )
    assert resolve("{context.review.stats.files_changed} files, ok={context.review.approved}", variables) == (
        "2 files, ok=false"
    )
    assert resolve("labels: {ticket.labels}", variables) == 'labels: ["api", "greeting"]'
    assert resolve("{{literal}} and {repo.base_branch}}}", variables) == "{literal} and main}"


def test_nested_fields_and_list_indexes(variables: dict[str, Any]) -> None:
    assert (
        resolve("{context.review.findings.0.file}:{context.review.findings.0.line}", variables) == "app.py:6"
    )
    assert resolve("{ticket.labels.1}", variables) == "greeting"


@pytest.mark.parametrize(
    ("template", "placeholder", "reason"),
    [
        ("{context.deploy.status}", "{context.deploy.status}", "context has no 'deploy' (it has: review)"),
        ("x {context.review.verdikt}", "{context.review.verdikt}", "context.review has no 'verdikt'"),
        (
            "{context.review.findings.5.file}",
            "{context.review.findings.5.file}",
            "a list of 2; '5' is not an index",
        ),
        ("{context.review.verdict.text}", "{context.review.verdict.text}", "has no field 'text'"),
        ("{context.review.llm_summary}", "{context.review.llm_summary}", "has no value (null)"),
    ],
)
def test_a_missing_value_names_the_placeholder(
    variables: dict[str, Any], template: str, placeholder: str, reason: str
) -> None:
    with pytest.raises(VariableError) as missing:
        resolve({"payload": {"head": template}}, variables, where="task review")
    assert missing.value.placeholder == placeholder
    assert reason in missing.value.reason
    assert missing.value.where == "task review: payload.head"
    assert str(missing.value).startswith(f"task review: payload.head: {placeholder}: ")


def test_an_unset_head_branch_is_missing_not_none() -> None:
    variables = template_variables(make_ticket(head_branch=None))
    with pytest.raises(VariableError, match=r"repo\.head_branch has no value"):
        resolve({"head": "{repo.head_branch}"}, variables)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{repo.path", "'{repo.path' is not a placeholder"),
        ("a } b", "unmatched '}'"),
        ("{not valid}", "'{not valid}' is not a placeholder"),
        ("{}", "'{}' is not a placeholder"),
        ("{repo..path}", "is not a placeholder"),
    ],
)
def test_a_stray_brace_is_an_error_not_text(text: str, reason: str) -> None:
    with pytest.raises(VariableError) as bad:
        parse_template(text)
    assert reason in bad.value.reason


def test_template_variables_of_a_ticket() -> None:
    ticket = make_ticket(repo_path="/srv/repos/shop/", context={"a": 1})
    variables = template_variables(ticket)
    assert variables["ticket"]["id"] == str(ticket.id)
    assert variables["ticket"]["status"] == "open"
    assert variables["repo"] == {
        "path": "/srv/repos/shop/",
        "name": "shop",
        "base_branch": "main",
        "head_branch": "feature/shout",
    }
    assert variables["context"] == {"a": 1}
