"""Optional LLM judgement on top of a deterministic result: a short diagnosis of a failure log.

The deterministic result never depends on it; a model that errors out only costs the prose.
"""

from __future__ import annotations

import logging

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

log = logging.getLogger(__name__)

_SYSTEM = (
    "You are a CI engineer. Given a failing command's log tail, say in at most five sentences "
    "what failed and the most likely cause and fix. Quote file names and test names from the log."
)


def diagnose(chat_model: BaseChatModel | None, what: str, log_text: str) -> str | None:
    if chat_model is None:
        return None
    try:
        reply = chat_model.invoke(
            [SystemMessage(content=_SYSTEM), HumanMessage(content=f"{what}\n\nLog tail:\n{log_text}")]
        )
    except Exception as exc:  # any provider failure: keep the deterministic answer, note why prose is missing
        log.warning("llm diagnosis failed", extra={"error": str(exc)})
        return None
    content = reply.content
    return content if isinstance(content, str) else str(content)
