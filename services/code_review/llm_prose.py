"""Prose from an optional langchain-core chat model, added on top of a deterministic result."""

from __future__ import annotations

import logging

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

log = logging.getLogger(__name__)
MAX_PROMPT_CHARS = 24_000  # keep prompts bounded however large the diff or repository is


def ask(chat_model: BaseChatModel, instructions: str, material: str) -> str:
    """The model's answer as plain text. Model errors propagate: the caller asked for prose."""
    if len(material) > MAX_PROMPT_CHARS:
        material = material[:MAX_PROMPT_CHARS] + "\n[... truncated]"
    reply = chat_model.invoke([SystemMessage(content=instructions), HumanMessage(content=material)])
    content = reply.content
    if isinstance(content, list):  # some providers answer with content blocks
        content = "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    log.info("llm prose generated", extra={"chars": len(content)})
    return content.strip()
