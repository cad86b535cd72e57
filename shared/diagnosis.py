"""Optional LLM judgement on top of a deterministic result: a short diagnosis of a failure log.

The deterministic result never depends on it; a model that errors out or does not answer in time
only costs the prose, and the result's `llm_warning` says why it is missing.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from shared.llm import Prose, optional_prose

_SYSTEM = (
    "You are a CI engineer. Given a failing command's log tail, say in at most five sentences "
    "what failed and the most likely cause and fix. Quote file names and test names from the log."
)


def diagnose(chat_model: BaseChatModel | None, what: str, log_text: str) -> Prose:
    """Prose() without a model; else the model's diagnosis, or a warning when it failed."""
    return optional_prose(chat_model, _SYSTEM, f"{what}\n\nLog tail:\n{log_text}")
