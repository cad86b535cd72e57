"""`python -m support.tests.workflows.scripted_feature_dev`: the real feature-dev agent (its runtime,
bus, registry entry, git worktrees and OpenHands tools), with its model calls answered by a script
(OpenHands' TestLLM) instead of a provider: the only part that stands in.

The script plays a developer in the review feedback loop on the sample repository. Its first attempt
adds `greeter/shout.py` with its test and a hard-coded password (the code-review agent's secret scan
asks for changes); told the findings in the next round, it removes the password (the review
approves). An instruction containing "stubborn" makes it add a note instead and keep the password,
so every round is reviewed with the same blocking finding.

In the parallel implementation it writes the files of its part (the prompt lists them) from PARTS, and
asked to merge the parts' branches it checks each branch's files out into its worktree (the parts
touch different files), which feature-dev then commits as the merge.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from itertools import count
from typing import Any

from openhands.sdk import Message, TextContent
from openhands.sdk.llm import MessageToolCall
from openhands.sdk.testing import TestLLM

import shared.llm  # noqa: F401  (LITELLM_LOCAL_MODEL_COST_MAP before OpenHands loads)
from shared.agents import run_agent

feature_dev = importlib.import_module("services.feature_dev.agent")

SHOUT = 'def shout(name):\n    return f"{name.upper()}!"\n'
PASSWORD_LINE = 'ADMIN_PASSWORD = "Tr0ub4dor-and-3-horses"\n'
SHOUT_TEST = "from greeter.shout import shout\n\n\ndef test_shout():\n    assert shout('ada') == 'ADA!'\n"
# The parallel implementation's files: a function, its test, its page.
PARTS = {
    "greeter/loud.py": 'def loud(name):\n    return f"HELLO, {name.upper()}"\n',
    "tests/test_loud.py": (
        "from greeter.loud import loud\n\n\ndef test_loud():\n    assert loud('ada') == 'HELLO, ADA'\n"
    ),
    "LOUD.md": "# loud\n\n`loud(name)` greets loudly.\n",
}
_calls = count(1)


def _call(name: str, **arguments: Any) -> Message:
    call = MessageToolCall(
        id=f"call_{next(_calls)}", name=name, arguments=json.dumps(arguments), origin="completion"
    )
    return Message(role="assistant", content=[TextContent(text="")], tool_calls=[call])


def _prompt(messages: list[Message]) -> str:
    return "\n".join(getattr(part, "text", "") for m in messages for part in m.content)


def _script(prompt: str) -> list[Message]:
    workspace = prompt.split("checked out at ", 1)[1].split(".\n", 1)[0].strip()
    if "Merge these branches" in prompt:
        branches = sorted(set(re.findall(r"devtools/ticket-[0-9a-f-]+-part[0-9]+", prompt)))
        checkouts = " && ".join(f"git checkout {b} -- ." for b in branches)
        return [
            _call("terminal", command=f"cd {workspace} && {checkouts}"),
            _call("finish", message="merged"),
        ]
    if "You implement part" in prompt:
        mine = [f for f in PARTS if f in prompt.split("change only these files", 1)[1]]
        return [
            *(
                _call("file_editor", command="create", path=f"{workspace}/{f}", file_text=PARTS[f])
                for f in mine
            ),
            _call("finish", message=f"wrote {', '.join(mine)}"),
        ]
    first_round = "(none in the first round): []" in prompt
    if first_round:
        return [
            _call(
                "file_editor",
                command="create",
                path=f"{workspace}/greeter/shout.py",
                file_text=SHOUT + PASSWORD_LINE,
            ),
            _call(
                "file_editor", command="create", path=f"{workspace}/tests/test_shout.py", file_text=SHOUT_TEST
            ),
            _call("finish", message="added shout() with its test"),
        ]
    if "stubborn" in prompt:
        note = f"{workspace}/NOTES-{next(_calls)}.md"  # the root: the editor makes no folders
        return [
            _call("file_editor", command="create", path=note, file_text="The password stays.\n"),
            _call("finish", message="kept the password"),
        ]
    return [
        _call(
            "file_editor",
            command="str_replace",
            path=f"{workspace}/greeter/shout.py",
            old_str=PASSWORD_LINE,
            new_str="",
        ),
        _call("finish", message="removed the hard-coded password the review found"),
    ]


class ScriptedDeveloper(TestLLM):
    """Writes its script when it reads the first prompt (the worktree and the round are in it)."""

    def completion(self, messages: list[Message], *args: Any, **kwargs: Any) -> Any:
        if self.call_count == 0 and self.remaining_responses == 0:
            self._scripted_responses.extend(_script(_prompt(messages)))
        return super().completion(messages, *args, **kwargs)


def scripted_llm(spec: Any) -> TestLLM | None:
    return None if spec is None else ScriptedDeveloper.from_messages([])


if __name__ == "__main__":
    # Any provider:model spec turns the model on; the scripted one answers whatever it names.
    os.environ["DEVTOOLS_LLM"] = "openai:scripted-developer"
    feature_dev.openhands_llm_from_spec = scripted_llm  # type: ignore[assignment]
    run_agent(feature_dev.agent)
