"""Model graders (``score_model``, ``label_model``): prompts, reply parsing, and the ``Judge`` seam.

A ``Judge`` answers a list of chat messages with a model this server can run. The API process uses
``ServingJudge`` (the same registry and backend as ``/v1/chat/completions``, so fine-tuned models
can judge too); a training process builds one over its own in-process backend. Model graders
default to greedy decoding (``temperature`` 0) so the same sample gets the same grade.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from openft.graders.template import render
from openft.serving.backend import SamplingParams
from openft.tenancy import Principal

DEFAULT_MAX_TOKENS = 128
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_REFUSAL = re.compile(r"\b(I can(?:'|no)t|I am unable|I'm unable|I won't)\b", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeReply:
    text: str
    model: str
    """The model that answered (a checkpoint or base id)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Judge(Protocol):
    def __call__(self, model: str, messages: list[dict[str, str]], params: SamplingParams) -> JudgeReply:
        """Answer ``messages`` with ``model``; raises ``openft.errors.OpenFTError`` when it cannot."""
        ...


class ServingJudge:
    """A ``Judge`` over the serving registry and backend, on behalf of ``principal``."""

    def __init__(
        self,
        resolve: Callable[[Principal, str], Any],
        backend: Callable[[], Any],
        principal: Principal,
        *,
        background: bool = False,
    ):
        """``background``: the judge grades work nobody waits on token by token (an eval run)."""
        self._resolve = resolve
        self._backend = backend
        self._principal = principal
        self._background = background

    def __call__(self, model: str, messages: list[dict[str, str]], params: SamplingParams) -> JudgeReply:
        served = self._resolve(self._principal, model)
        generation = self._backend().chat(served, messages, params, background=self._background)
        return JudgeReply(
            text=generation.choices[0].text,
            model=served.id,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
        )


def sampling(params: dict[str, Any] | None) -> SamplingParams:
    """Serving parameters from a grader's ``sampling_params`` (greedy unless a temperature is given)."""
    params = params or {}
    return SamplingParams(
        max_tokens=params.get("max_completions_tokens") or DEFAULT_MAX_TOKENS,
        temperature=params["temperature"] if params.get("temperature") is not None else 0.0,
        top_p=params["top_p"] if params.get("top_p") is not None else 1.0,
        seed=params.get("seed"),
    )


def _text(content: Any, item: dict[str, Any], sample: dict[str, Any]) -> str:
    """The text of an ``EvalItem`` content: a string, one text part, or a list of parts."""
    if isinstance(content, str):
        return render(content, item, sample)
    parts = [content] if isinstance(content, dict) else content
    texts = []
    for part in parts:
        if part.get("type", "input_text") not in ("input_text", "output_text", "text"):
            raise ValueError(f"content parts of type '{part.get('type')}' are not supported by local model graders")
        texts.append(render(str(part.get("text", "")), item, sample))
    return "\n".join(texts)


def messages(
    grader: dict[str, Any], item: dict[str, Any], sample: dict[str, Any], instruction: str
) -> list[dict[str, str]]:
    """The judge's chat: ``instruction`` as a system message, then the grader's rendered ``input``."""
    rendered = [{"role": m["role"], "content": _text(m["content"], item, sample)} for m in grader["input"]]
    return [{"role": "system", "content": instruction}, *rendered]


def score_instruction(low: float, high: float) -> str:
    return (
        f'You are a grader. Reply with a JSON object {{"result": <a number from {low:g} to {high:g}>, '
        f'"steps": [{{"description": str, "conclusion": str}}]}} and nothing else.'
    )


def label_instruction(labels: list[str]) -> str:
    return f"You are a grader. Reply with exactly one of these labels and nothing else: {', '.join(labels)}."


def parse_score(text: str) -> float | None:
    """The score in a judge's reply: ``{"result": x}`` when it is JSON, else the first number; None if none."""
    stripped = text.strip()
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        try:
            value = json.loads(stripped[start : end + 1]).get("result")
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
        except (ValueError, AttributeError):
            pass
    match = _NUMBER.search(stripped)
    if match is None:
        return None
    value = float(match.group())
    return value if math.isfinite(value) else None


def parse_label(text: str, labels: list[str]) -> str | None:
    """The label a judge chose: the whole reply if it is one, else the first label the reply contains."""
    stripped = text.strip().strip(".\"'`").strip()
    for label in labels:
        if stripped.lower() == label.lower():
            return label
    lowered = text.lower()
    found = [(lowered.find(label.lower()), label) for label in labels if label.lower() in lowered]
    return min(found)[1] if found else None


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))
