"""REVIEW_CODE and EXPLAIN_CODE against real git repositories the tests build."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from pydantic import ValidationError

from services.code_review.explain import explain_code
from services.code_review.models import ExplainCodePayload, ReviewCodePayload, ReviewError
from services.code_review.review import review_code
from shared.git import run_git
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

BASE_APP = '''"""A tiny app."""


def add(a: int, b: int) -> int:
    return a + b
'''
BASE_TEST = """from app import add


def test_add() -> None:
    assert add(1, 2) == 3
"""
FAKE_AWS_KEY = "AKIA" + "Q3EXAMPLE7KEY2ZZ"  # split so this file itself holds no key-shaped literal


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"app.py": BASE_APP, "test_app.py": BASE_TEST})
    return repo


def _review(repo: GitRepo, head: str = "feature", **fields: object) -> dict:
    payload = ReviewCodePayload(repo=str(repo.path), base="main", head=head, **fields)
    return review_code(payload).model_dump()


def test_lint_error_and_aws_key_request_changes_naming_both_lines(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.commit(
        "feature",
        {
            "app.py": BASE_APP + "\n\ndef total(items: list[int]) -> int:\n    return sum(itemz)\n",
            "settings.py": f'REGION = "eu-west-1"\nAWS_KEY_ID = "{FAKE_AWS_KEY}"\n',
            "test_app.py": BASE_TEST + "\n\ndef test_more() -> None:\n    assert add(2, 2) == 4\n",
        },
    )
    result = _review(repo)
    assert result["verdict"] == "request_changes"
    assert result["decided_by"]["rule"] == "blocking-findings"
    blocking = {(f["file"], f["line"], f["rule"]) for f in result["findings"] if f["severity"] == "error"}
    assert blocking == {("app.py", 9, "F821"), ("settings.py", 2, "aws-access-key-id")}
    assert "app.py:9 F821" in result["decided_by"]["reason"]
    assert "settings.py:2 aws-access-key-id" in result["decided_by"]["reason"]
    # the key itself never appears in the result
    assert FAKE_AWS_KEY not in str(result)


def test_clean_branch_is_approved(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.commit(
        "clean",
        {
            "app.py": BASE_APP
            + '\n\ndef sub(a: int, b: int) -> int:\n    """a minus b."""\n    return a - b\n',
            "test_app.py": BASE_TEST.replace("import add", "import add, sub")
            + "\n\ndef test_sub() -> None:\n    assert sub(3, 2) == 1\n",
        },
    )
    result = _review(repo)
    assert result["findings"] == []
    assert result["verdict"] == "approve"
    assert result["decided_by"]["rule"] == "no-findings"
    assert result["stats"]["python_files_linted"] == 2


def test_lint_only_on_changed_lines(repo: GitRepo) -> None:
    # main already has an unused import; the branch changes a different line: not the branch's finding
    repo.commit("legacy", {"legacy.py": "import os\n\nvalue = 1\n", "test_legacy.py": "def test_x(): pass\n"})
    repo.branch("feature")
    repo.commit("touch", {"legacy.py": "import os\n\nvalue = 2\n", "test_legacy.py": "def test_x(): ...\n"})
    result = _review(repo)
    assert [f for f in result["findings"] if f["category"] == "lint"] == []
    assert result["verdict"] == "approve"


def test_complex_function_touched_by_change(repo: GitRepo) -> None:
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(12))
    repo.branch("feature")
    repo.commit(
        "complex",
        {
            "app.py": BASE_APP + f"\n\ndef pick(x: int) -> int:\n{branches}    return -1\n",
            "test_app.py": BASE_TEST + "\n",
        },
    )
    result = _review(repo)
    complexity = [f for f in result["findings"] if f["rule"] == "complexity"]
    assert len(complexity) == 1
    assert complexity[0]["file"] == "app.py" and complexity[0]["line"] == 8
    assert "complexity 13" in complexity[0]["message"]
    assert result["verdict"] == "comment"
    assert result["decided_by"]["rule"] == "warnings-only"
    # a higher threshold lets it through
    assert _review(repo, complexity_threshold=13)["verdict"] == "approve"


def test_binary_and_large_files(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.commit("assets", {"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00binary", "data.txt": "row\n" * 400})
    result = _review(repo, max_file_bytes=1000)
    rules = {(f["file"], f["rule"]) for f in result["findings"]}
    assert ("logo.png", "binary-file") in rules
    assert ("data.txt", "large-file") in rules
    assert result["verdict"] == "comment"


def test_source_changed_without_tests(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.commit("no tests", {"app.py": BASE_APP + "\n\ndef neg(a: int) -> int:\n    return -a\n"})
    result = _review(repo)
    assert [(f["file"], f["rule"]) for f in result["findings"]] == [("app.py", "missing-tests")]
    assert result["verdict"] == "comment"


def test_unified_diff_on_top_of_base(repo: GitRepo, tmp_path: Path) -> None:
    repo.branch("feature")
    repo.commit("pw", {"config.py": 'db_password = "s3cr3t-Pa55"\n', "test_config.py": "def test_c(): ...\n"})
    diff = run_git(repo.path, "diff", "main", "feature")
    repo.checkout("main")
    payload = ReviewCodePayload(repo=str(repo.path), base="main", diff=diff)
    result = review_code(payload)
    assert result.verdict == "request_changes"
    assert [(f.file, f.line, f.rule) for f in result.findings] == [("config.py", 1, "hardcoded-password")]
    # branches were not moved by applying the diff
    assert run_git(repo.path, "rev-parse", "main") == run_git(repo.path, "rev-parse", "HEAD")


def test_high_entropy_string_is_a_warning(repo: GitRepo) -> None:
    repo.branch("feature")
    token = "q8Zr1Xv7Lp3Nw9Ks2Jd6Hf4Tb0Ym5Gc"
    repo.commit("tok", {"client.py": f'TOKEN = "{token}"\n', "test_client.py": "def test_c(): ...\n"})
    result = _review(repo)
    assert [(f["rule"], f["severity"]) for f in result["findings"]] == [("high-entropy-string", "warning")]
    assert result["verdict"] == "comment"


def test_bad_input_gives_clear_errors(repo: GitRepo, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(ReviewError, match="repo: not a git repository"):
        review_code(ReviewCodePayload(repo=str(tmp_path / "plain"), head="main"))
    with pytest.raises(ReviewError, match="head: unknown ref 'nope'"):
        review_code(ReviewCodePayload(repo=str(repo.path), head="nope"))
    with pytest.raises(ReviewError, match="diff: does not apply"):
        review_code(
            ReviewCodePayload(repo=str(repo.path), diff="--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n")
        )
    with pytest.raises(ValidationError, match="exactly one of `head`"):
        ReviewCodePayload(repo=str(repo.path))
    with pytest.raises(ValidationError, match="complexity_threshold"):
        ReviewCodePayload(repo=str(repo.path), head="main", complexity_threshold=0)


def test_llm_summary_comes_on_top_of_the_findings(repo: GitRepo) -> None:
    repo.branch("feature")
    repo.commit("no tests", {"app.py": BASE_APP + "\n\ndef neg(a: int) -> int:\n    return -a\n"})
    model = FakeListChatModel(responses=["Adds `neg`; please add a test for it."])
    payload = ReviewCodePayload(repo=str(repo.path), base="main", head="feature")
    with_llm = review_code(payload, chat_model=model)
    without = review_code(payload)
    assert with_llm.llm_summary == "Adds `neg`; please add a test for it."
    assert without.llm_summary is None
    assert with_llm.findings == without.findings and with_llm.verdict == without.verdict == "comment"


SYMBOLS = '''"""Shapes."""
import math


class Circle:
    """A circle."""

    def __init__(self, radius: float = 1.0) -> None:
        self.radius = radius

    def area(self, *, precise: bool = False) -> float:
        """Area of the circle."""
        if precise:
            return math.pi * self.radius**2
        return 3.14 * self.radius**2


def unit() -> Circle:
    return Circle()
'''


def test_explain_a_symbol_and_a_file(repo: GitRepo) -> None:
    repo.commit("shapes", {"shapes.py": SYMBOLS})
    method = explain_code(
        ExplainCodePayload(repo=str(repo.path), path="shapes.py", symbol="Circle.area", ref="main")
    )
    assert method.function is not None
    assert method.function.signature == "area(self, *, precise: bool = False) -> float"
    assert (method.function.start_line, method.function.end_line) == (11, 15)
    assert method.function.complexity == 2
    assert method.function.docstring == "Area of the circle."
    assert method.source is not None and method.source.startswith("    def area(")
    assert "`Circle.area` is a method" in method.explanation

    whole = explain_code(ExplainCodePayload(repo=str(repo.path), path="shapes.py"))
    assert whole.module is not None
    assert [i.statement for i in whole.module.imports] == ["import math"]
    assert [m.name for m in whole.module.classes[0].methods] == ["__init__", "area"]
    assert [f.signature for f in whole.module.functions] == ["unit() -> Circle"]

    with pytest.raises(ReviewError, match="symbol: 'Square' is not defined"):
        explain_code(ExplainCodePayload(repo=str(repo.path), path="shapes.py", symbol="Square"))
    with pytest.raises(ReviewError, match=r"path: missing\.py does not exist"):
        explain_code(ExplainCodePayload(repo=str(repo.path), path="missing.py"))


def failing_model() -> GenericFakeChatModel:
    """A scripted model with nothing left to say: every call raises."""
    return GenericFakeChatModel(messages=iter([]))


def test_a_failing_model_keeps_the_review_and_says_why_there_is_no_summary(repo: GitRepo) -> None:
    repo.branch("feature")
    files = {"settings.py": f'KEY = "{FAKE_AWS_KEY}"\n', "test_settings.py": "def test_s(): ...\n"}
    repo.commit("key", files)
    payload = ReviewCodePayload(repo=str(repo.path), base="main", head="feature")

    with_failing_llm = review_code(payload, chat_model=failing_model())
    without = review_code(payload)

    assert with_failing_llm.verdict == without.verdict == "request_changes"
    assert with_failing_llm.findings == without.findings and with_failing_llm.summary == without.summary
    assert with_failing_llm.llm_summary is None
    assert with_failing_llm.llm_warning is not None
    assert with_failing_llm.llm_warning.startswith("no LLM prose: the model call failed")
    assert without.llm_warning is None


def test_explain_code_adds_the_models_explanation_on_top(repo: GitRepo) -> None:
    repo.commit("shapes", {"shapes.py": SYMBOLS})
    payload = ExplainCodePayload(repo=str(repo.path), path="shapes.py", symbol="Circle.area")
    model = FakeListChatModel(responses=["`area` approximates pi unless asked to be precise."])

    explained = explain_code(payload, chat_model=model)
    plain = explain_code(payload)
    failed = explain_code(payload, chat_model=failing_model())

    assert explained.llm_explanation == "`area` approximates pi unless asked to be precise."
    assert explained.llm_warning is None
    assert explained.explanation == plain.explanation and explained.function == plain.function
    assert (failed.llm_explanation, failed.function) == (None, plain.function)
    assert failed.llm_warning is not None and "model call failed" in failed.llm_warning
