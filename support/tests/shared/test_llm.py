"""DEVTOOLS_LLM parsing, provider selection and the text/JSON helpers, with scripted models only."""

from __future__ import annotations

import os
import threading

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from shared.config import load_settings
from shared.llm import (
    PROVIDERS,
    LLMCallError,
    LLMConfigError,
    LLMOutputError,
    LLMSpec,
    Prose,
    chat_model_from_settings,
    chat_model_from_spec,
    extract_json,
    invoke_structured,
    invoke_text,
    openhands_llm_from_spec,
    optional_prose,
    parse_llm_spec,
)

pytestmark = pytest.mark.unit


class Verdict(BaseModel):
    verdict: str
    score: int


@pytest.mark.parametrize("spec", [None, "", "none", "NONE", "  none "])
def test_none_means_no_model(spec: str | None) -> None:
    assert parse_llm_spec(spec) is None
    assert chat_model_from_spec(spec) is None
    assert openhands_llm_from_spec(spec) is None


def test_provider_and_model_are_split_at_the_first_colon() -> None:
    assert parse_llm_spec("openai:gpt-4o-mini") == LLMSpec("openai", "gpt-4o-mini")
    assert parse_llm_spec("ollama:llama3.1:8b") == LLMSpec("ollama", "llama3.1:8b")
    assert str(parse_llm_spec("anthropic:claude-3-5-haiku-latest")) == "anthropic:claude-3-5-haiku-latest"
    assert parse_llm_spec("ollama:llama3").litellm_model == "ollama_chat/llama3"  # type: ignore[union-attr]
    assert parse_llm_spec("openai:gpt-4o").litellm_model == "openai/gpt-4o"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt-4o", "not 'none' or 'provider:model'"),
        ("openai:", "not 'none' or 'provider:model'"),
        (":gpt-4o", "not 'none' or 'provider:model'"),
        ("openai:gpt 4o", "not 'none' or 'provider:model'"),
        ("mystery:model-1", "unknown provider 'mystery'; known providers: anthropic, ollama, openai"),
    ],
)
def test_bad_specs_name_the_variable_and_the_problem(spec: str, message: str) -> None:
    with pytest.raises(LLMConfigError, match="DEVTOOLS_LLM") as info:
        parse_llm_spec(spec)
    assert message in str(info.value)


def test_a_provider_is_built_from_its_extra() -> None:
    pytest.importorskip("langchain_ollama")
    model = chat_model_from_spec("ollama:llama3", timeout=7)
    assert type(model).__name__ == "ChatOllama" and model.model == "llama3"  # type: ignore[union-attr]


def test_a_missing_extra_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A provider whose package is not installed: the error says what to install.
    monkeypatch.setitem(
        PROVIDERS,
        "fakeprov",
        PROVIDERS["openai"].__class__(
            "devtools_no_such_module", "Chat", "fakeprov", "langchain-fakeprov", "fakeprov"
        ),
    )
    with pytest.raises(LLMConfigError, match=r"needs the package 'langchain-fakeprov'.*--extra fakeprov"):
        chat_model_from_spec("fakeprov:m1")


def test_a_provider_that_cannot_start_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("langchain_openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMConfigError, match=r"DEVTOOLS_LLM=openai:gpt-4o-mini: .*OPENAI_API_KEY"):
        chat_model_from_spec("openai:gpt-4o-mini")


def test_settings_select_the_model(tmp_path: os.PathLike[str]) -> None:
    assert chat_model_from_settings(load_settings(llm="none", data_dir=tmp_path)) is None


def test_openhands_llm_uses_the_litellm_name() -> None:
    pytest.importorskip("openhands.sdk")
    llm = openhands_llm_from_spec("anthropic:claude-sonnet-4-5")
    assert llm is not None and llm.model == "anthropic/claude-sonnet-4-5"
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_invoke_text_returns_the_answer() -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="  Looks fine.  ")]))
    assert invoke_text(model, "be brief", "review this") == "Looks fine."


def test_invoke_text_has_a_hard_deadline() -> None:
    release = threading.Event()

    class Stuck(FakeListChatModel):
        def _call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            release.wait(30)
            return "late"

    try:
        with pytest.raises(LLMCallError, match=r"did not answer within 0\.2s"):
            invoke_text(Stuck(responses=["late"]), "s", "u", timeout=0.2)
    finally:
        release.set()


def test_a_failing_model_is_a_call_error() -> None:
    model = GenericFakeChatModel(messages=iter([]))  # exhausted at once: the call raises
    with pytest.raises(LLMCallError, match="model call failed"):
        invoke_text(model, "s", "u")


def test_structured_answers_are_parsed_and_validated() -> None:
    fenced = 'Here you go:\n```json\n{"verdict": "approve", "score": 3}\n```\nThanks.'
    model = FakeListChatModel(responses=[fenced, '{"verdict": "approve"}', "no json here"])
    assert invoke_structured(model, Verdict, "judge", "diff") == Verdict(verdict="approve", score=3)
    with pytest.raises(LLMOutputError, match="does not match Verdict: score: Field required"):
        invoke_structured(model, Verdict, "judge", "diff")
    with pytest.raises(LLMOutputError, match="contains no JSON"):
        invoke_structured(model, Verdict, "judge", "diff")


def test_extract_json_reports_broken_json() -> None:
    assert extract_json('prefix [1, 2] suffix {"a": 1}') == [1, 2]
    with pytest.raises(LLMOutputError, match="not valid JSON"):
        extract_json('{"a": 1,,}')


def test_optional_prose_without_a_model_is_empty_and_silent() -> None:
    assert optional_prose(None, "s", "material") == Prose(text=None, warning=None)


def test_optional_prose_returns_the_answer() -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=" Adds a helper. ")]))
    assert optional_prose(model, "s", "diff") == Prose(text="Adds a helper.", warning=None)


def test_optional_prose_turns_a_failing_model_into_a_warning() -> None:
    model = GenericFakeChatModel(messages=iter([]))  # exhausted at once: the call raises
    prose = optional_prose(model, "s", "diff")
    assert prose.text is None
    assert prose.warning is not None and prose.warning.startswith("no LLM prose: the model call failed")


def test_optional_prose_gives_up_on_a_model_that_does_not_answer() -> None:
    release = threading.Event()

    class Stuck(FakeListChatModel):
        def _call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            release.wait(30)
            return "late"

    try:
        prose = optional_prose(Stuck(responses=["late"]), "s", "diff", timeout=0.2)
    finally:
        release.set()
    assert prose == Prose(text=None, warning="no LLM prose: the model did not answer within 0.2s")


def test_optional_prose_warns_about_an_empty_answer() -> None:
    prose = optional_prose(FakeListChatModel(responses=["   "]), "s", "diff")
    assert prose == Prose(text=None, warning="no LLM prose: the model answered with an empty text")


def test_optional_prose_bounds_the_material_it_sends() -> None:
    seen: list[str] = []

    class Recording(FakeListChatModel):
        def _call(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(str(messages[-1].content))
            return "ok"

    assert optional_prose(Recording(responses=["ok"]), "s", "x" * 100, max_chars=10).text == "ok"
    assert seen == ["x" * 10 + "\n[... truncated]"]
