"""LLM selection for every agent: `DEVTOOLS_LLM=provider:model` -> a langchain-core chat model.

Provider packages are optional extras (`devtools[openai]`, `[anthropic]`, `[ollama]`) imported
only when that provider is asked for; `none` means no model, and every agent still does its
deterministic work. Feature-dev uses the OpenHands SDK, whose `LLM` is built from the same spec.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from shared.config import Settings

if TYPE_CHECKING:
    from openhands.sdk import LLM as OpenHandsLLM

# litellm (under OpenHands) otherwise downloads its model cost map at import time; set before
# anything imports it, and keep the SDK's banner out of service logs.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_SECONDS = 120.0
# Prose is a bonus on top of a deterministic answer: never worth holding that answer up for long.
PROSE_TIMEOUT_SECONDS = 60.0
MAX_PROSE_INPUT_CHARS = 24_000  # keep prompts bounded however large the diff, log or document is
_SPEC = re.compile(r"^(?P<provider>[a-z][a-z0-9_-]*):(?P<model>\S+)$")


class LLMConfigError(ValueError):
    """DEVTOOLS_LLM is malformed, names an unknown provider, or the provider's extra is not installed."""


class LLMCallError(RuntimeError):
    """The model call failed or timed out."""


class LLMOutputError(ValueError):
    """The model answered, but not with what was asked for (not JSON, or JSON failing the schema)."""


@dataclass(frozen=True)
class Provider:
    module: str
    class_name: str
    extra: str  # the pyproject extra that installs it
    package: str  # the PyPI package inside that extra
    litellm_prefix: str  # how litellm (OpenHands) names this provider


PROVIDERS: dict[str, Provider] = {
    "openai": Provider("langchain_openai", "ChatOpenAI", "openai", "langchain-openai", "openai"),
    "anthropic": Provider(
        "langchain_anthropic", "ChatAnthropic", "anthropic", "langchain-anthropic", "anthropic"
    ),
    "ollama": Provider("langchain_ollama", "ChatOllama", "ollama", "langchain-ollama", "ollama_chat"),
}


@dataclass(frozen=True)
class LLMSpec:
    provider: str
    model: str

    @property
    def litellm_model(self) -> str:
        return f"{PROVIDERS[self.provider].litellm_prefix}/{self.model}"

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_llm_spec(spec: str | None) -> LLMSpec | None:
    """`provider:model` -> LLMSpec; `none` (or empty) -> None; anything else -> LLMConfigError."""
    text = (spec or "").strip()
    if text.lower() in ("", "none"):
        return None
    match = _SPEC.match(text)
    if match is None:
        raise LLMConfigError(
            f"DEVTOOLS_LLM: {text!r} is not 'none' or 'provider:model' (e.g. 'openai:gpt-4o-mini')"
        )
    provider, model = match["provider"], match["model"]
    if provider not in PROVIDERS:
        known = ", ".join(sorted(PROVIDERS))
        raise LLMConfigError(f"DEVTOOLS_LLM: unknown provider {provider!r}; known providers: {known}")
    return LLMSpec(provider, model)


def chat_model_from_spec(
    spec: str | LLMSpec | None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, **kwargs: Any
) -> BaseChatModel | None:
    """The chat model DEVTOOLS_LLM names, or None for `none`. API keys come from the provider's own
    environment variables (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...), read by the provider package."""
    parsed = spec if isinstance(spec, LLMSpec) or spec is None else parse_llm_spec(spec)
    if parsed is None:
        return None
    provider = PROVIDERS[parsed.provider]
    try:
        module = importlib.import_module(provider.module)
    except ImportError as exc:
        raise LLMConfigError(
            f"DEVTOOLS_LLM={parsed}: the {parsed.provider} provider needs the package {provider.package!r}; "
            f"install it with `uv sync --extra {provider.extra}` (or `pip install {provider.package}`)"
        ) from exc
    model_class = getattr(module, provider.class_name)
    options: dict[str, Any] = {"model": parsed.model, **kwargs}
    if parsed.provider == "ollama":
        options.setdefault("client_kwargs", {"timeout": timeout})
    else:
        options.setdefault("timeout", timeout)
    try:
        return model_class(**options)  # type: ignore[no-any-return]
    except Exception as exc:  # e.g. a missing API key: providers raise their own error types
        raise LLMConfigError(f"DEVTOOLS_LLM={parsed}: {str(exc).splitlines()[0]}") from exc


def chat_model_from_settings(settings: Settings, **kwargs: Any) -> BaseChatModel | None:
    return chat_model_from_spec(settings.llm, **kwargs)


def openhands_llm_from_spec(
    spec: str | LLMSpec | None, *, usage_id: str = "feature-dev", **kwargs: Any
) -> OpenHandsLLM | None:
    """An OpenHands SDK `LLM` (litellm model name `provider/model`) for the same spec, or None."""
    parsed = spec if isinstance(spec, LLMSpec) or spec is None else parse_llm_spec(spec)
    if parsed is None:
        return None
    try:
        from openhands.sdk import LLM
    except ImportError as exc:
        raise LLMConfigError(
            "feature-dev needs the OpenHands SDK: install it with `uv sync --extra openhands`"
        ) from exc
    return LLM(model=parsed.litellm_model, usage_id=usage_id, **kwargs)


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # some providers answer with content blocks
        return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    return str(content)


def invoke_text(
    chat_model: BaseChatModel, system: str, user: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> str:
    """The model's plain-text answer within `timeout` seconds; LLMCallError otherwise."""
    messages = [SystemMessage(content=system), HumanMessage(content=user)]
    # A worker thread gives a hard deadline whatever the provider does with its own timeouts.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-call")
    future = pool.submit(chat_model.invoke, messages)
    try:
        reply = future.result(timeout=timeout)
    except FutureTimeout:
        raise LLMCallError(f"the model did not answer within {timeout:g}s") from None
    except Exception as exc:
        raise LLMCallError(f"the model call failed: {exc}") from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return _content_text(reply.content).strip()


@dataclass(frozen=True)
class Prose:
    """Optional prose for a deterministic result: the text, or None and (when a model failed) why."""

    text: str | None = None
    warning: str | None = None


def optional_prose(
    chat_model: BaseChatModel | None,
    system: str,
    material: str,
    *,
    timeout: float = PROSE_TIMEOUT_SECONDS,
    max_chars: int = MAX_PROSE_INPUT_CHARS,
) -> Prose:
    """The model's prose on `material`, never an exception: a failing, silent or slow model costs the
    prose only, and the warning says why it is missing. No model configured: Prose() (no warning)."""
    if chat_model is None:
        return Prose()
    if len(material) > max_chars:
        material = material[:max_chars] + "\n[... truncated]"
    try:
        text = invoke_text(chat_model, system, material, timeout=timeout)
    except LLMCallError as exc:
        log.warning("llm prose unavailable", extra={"error": str(exc)})
        return Prose(warning=f"no LLM prose: {exc}")
    if not text:
        return Prose(warning="no LLM prose: the model answered with an empty text")
    return Prose(text=text)


def extract_json(text: str) -> Any:
    """The first JSON value in a model's answer, ignoring Markdown fences and prose around it."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    candidate = fenced.group(1) if fenced else text
    starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
    if not starts:
        raise LLMOutputError("the model's answer contains no JSON")
    try:
        value, _ = json.JSONDecoder().raw_decode(candidate[min(starts) :])
    except json.JSONDecodeError as exc:
        raise LLMOutputError(f"the model's answer is not valid JSON: {exc.msg} at char {exc.pos}") from None
    return value


def invoke_structured[T: BaseModel](
    chat_model: BaseChatModel,
    schema: type[T],
    system: str,
    user: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> T:
    """Ask for JSON matching `schema` and validate it. Plain JSON in the text works with every
    provider (and with scripted test models), unlike tool-calling structured output."""
    instructions = (
        f"{system}\n\nAnswer with one JSON object only, no prose, matching this JSON schema:\n"
        f"{json.dumps(schema.model_json_schema())}"
    )
    answer = invoke_text(chat_model, instructions, user, timeout=timeout)
    value = extract_json(answer)
    try:
        return schema.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise LLMOutputError(
            f"the model's JSON does not match {schema.__name__}: {where}: {first['msg']}"
        ) from None
