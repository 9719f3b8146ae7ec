"""From a request to prompt token ids: checks, chat templates, the context window. No torch.

Everything here raises ``InvalidRequest`` naming the ``param``, before any generation starts.
"""

from __future__ import annotations

from typing import Any

from openft.data.tool_format import for_template
from openft.errors import InvalidRequest
from openft.serving.backend import SamplingParams

DEFAULT_MAX_TOKENS = 256
MAX_N = 128
MAX_STOP = 4


def check_params(params: SamplingParams) -> None:
    """Raise InvalidRequest for parameters outside OpenAI's ranges."""
    if params.max_tokens is not None and params.max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
    if not 1 <= params.n <= MAX_N:
        raise InvalidRequest(f"n must be between 1 and {MAX_N}.", param="n")
    if not 0 <= params.temperature <= 2:
        raise InvalidRequest("temperature must be between 0 and 2.", param="temperature")
    if not 0 < params.top_p <= 1:
        raise InvalidRequest("top_p must be greater than 0 and at most 1.", param="top_p")
    if len(params.stop) > MAX_STOP or not all(isinstance(s, str) for s in params.stop):
        raise InvalidRequest(f"stop must be a string or a list of up to {MAX_STOP} strings.", param="stop")
    if params.logprobs is not None and not 0 <= params.logprobs <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20.", param="top_logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        if not -2 <= getattr(params, name) <= 2:
            raise InvalidRequest(f"{name} must be between -2 and 2.", param=name)


def max_new_tokens(params: SamplingParams, prompt_tokens: int, context: int, *, prompt_param: str) -> int:
    """The tokens a choice may generate: ``max_tokens``, or what is left of the context up to 256.

    Raises:
        InvalidRequest: The prompt plus ``max_tokens`` do not fit the context window.
    """
    room = context - prompt_tokens
    wanted = params.max_tokens if params.max_tokens is not None else min(DEFAULT_MAX_TOKENS, room)
    if room < 1 or wanted > room:
        raise InvalidRequest(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + max(wanted, 1)} tokens ({prompt_tokens} in the {prompt_param}, "
            f"{max(wanted, 1)} in the completion). Please reduce the length of the {prompt_param} "
            "or completion.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    return wanted


def chat_prompt_ids(
    tokenizer: Any, model_id: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[int]:
    """The prompt token ids of ``messages`` rendered through the model's chat template."""
    template = tokenizer.chat_template
    if not template:
        raise InvalidRequest(f"The model `{model_id}` has no chat template; use /v1/completions.", param="model")
    rendered, tools = for_template(
        template, normalise_messages(messages, has_developer="developer" in str(template)), tools
    )
    try:
        text = tokenizer.apply_chat_template(rendered, tools=tools, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja2 errors raised by templates ("roles must alternate", ...)
        raise InvalidRequest(f"The chat template rejected the messages: {exc}", param="messages") from exc
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """``prompt`` as raw text (the tokenizer adds BOS where it normally does)."""
    ids = list(tokenizer(prompt)["input_ids"])
    if not ids:
        bos = tokenizer.bos_token_id
        if bos is None:
            raise InvalidRequest("The prompt is empty.", param="prompt")
        ids = [bos]
    return ids


def normalise_messages(messages: list[dict[str, Any]], *, has_developer: bool) -> list[dict[str, Any]]:
    """Text-part lists -> strings, None content -> "", and ``developer`` -> ``system`` where unknown.

    Everything else (``tool_calls`` with their JSON-string ``arguments``, ``tool_call_id``, ``name``)
    reaches the chat template as the client sent it.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        msg = dict(message)
        content = msg.get("content")
        if content is None:
            msg["content"] = ""
        elif isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise InvalidRequest(
                        f"Content parts of type {kind!r} are not supported; use text.",
                        param=f"messages[{i}].content[{j}]",
                    )
                texts.append(part["text"])
            msg["content"] = "".join(texts)
        if msg.get("role") == "developer" and not has_developer:
            msg["role"] = "system"
        out.append(msg)
    return out
