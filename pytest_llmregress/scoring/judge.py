"""The LLM judge: the prompt it sees and the strict parsing of its verdict.

The judge compares a candidate output with the reference output and answers with one JSON
object scoring accuracy, completeness and format on 0..1 plus a reason. A reply that is not
such an object is a ``ScorerError`` (an error outcome), never a silent score of 0.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pytest_llmregress.scoring.score import Score, ScorerError

# Bump when the prompt changes: cached verdicts are keyed by it.
JUDGE_PROMPT_VERSION = "1"
CRITERIA = ("accuracy", "completeness", "format")

JUDGE_SYSTEM = """\
You are a strict evaluator of AI assistant outputs in a regression test suite.
You compare a CANDIDATE output with a REFERENCE output that is known to be good,
for the same task. Judge the candidate on three criteria, each a number from 0 to 1:
- accuracy: are the facts, values and conclusions of the candidate the same as the reference's?
- completeness: does the candidate cover everything the reference covers?
- format: does the candidate follow the same format (structure, length, language, JSON shape)?
Wording may differ; meaning may not. Answer with exactly one JSON object and nothing else:
{"accuracy": <0..1>, "completeness": <0..1>, "format": <0..1>, "reason": "<one sentence>"}"""


@dataclass(frozen=True)
class JudgePrompt:
    system: str
    user: str


def build_judge_prompt(*, task: str, reference: str, candidate: str) -> JudgePrompt:
    """The judge's conversation for one case: the task, the reference, the candidate."""
    user = (
        f"<task>\n{task}\n</task>\n\n"
        f"<reference>\n{reference}\n</reference>\n\n"
        f"<candidate>\n{candidate}\n</candidate>\n\n"
        "Score the candidate against the reference. Reply with the JSON object only."
    )
    return JudgePrompt(system=JUDGE_SYSTEM, user=user)


_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def _first_json_object(text: str) -> Any:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    start = stripped.find("{")
    if start < 0:
        raise ScorerError(f"judge reply is not JSON: {_snippet(text)}")
    try:
        obj, _ = json.JSONDecoder().raw_decode(stripped[start:])
    except json.JSONDecodeError:
        raise ScorerError(f"judge reply is not JSON: {_snippet(text)}") from None
    return obj


def _snippet(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def parse_judge_reply(text: str, *, judge_model: str, threshold: float) -> Score:
    """Turn the judge's reply into a ``Score``: the mean of the three criteria."""
    obj = _first_json_object(text)
    if not isinstance(obj, dict):
        raise ScorerError(f"judge reply is not a JSON object: {_snippet(text)}")
    parts: dict[str, float] = {}
    for name in CRITERIA:
        value = obj.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScorerError(f"judge reply has no numeric {name!r}: {_snippet(text)}")
        number = float(value)
        if math.isnan(number) or not 0.0 <= number <= 1.0:
            raise ScorerError(f"judge reply has {name}={value!r}, outside 0..1: {_snippet(text)}")
        parts[name] = number
    reason = obj.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ScorerError(f"judge reply has no reason: {_snippet(text)}")
    value = round(sum(parts.values()) / len(parts), 4)
    detail = ", ".join(f"{name} {parts[name]:.2f}" for name in CRITERIA)
    return Score(
        scorer="judge",
        value=value,
        passed=value >= threshold,
        reason=f"{reason.strip()} ({detail})",
        threshold=threshold,
        judge_model=judge_model,
        raw=text,
    )
