"""Turn OpenAI fine-tuning JSONL lines into token ids and loss labels with the model's chat template.

No torch here: only a Hugging Face tokenizer. One line is either a chat example
(``{"messages": [...], "tools": [...]}``, assistant messages with an optional ``weight`` of 0 or 1
and optional ``tool_calls``) or a legacy ``{"prompt": ..., "completion": ...}`` pair, which becomes
a user turn and an assistant turn, or, for a base model without a chat template, plain text: the
prompt as ``/v1/completions`` tokenizes it, then the completion and EOS, trained on (see
``tokenize_completion``).

Labels are ``-100`` everywhere except on the tokens of assistant messages whose weight is not 0,
end-of-turn token included (so the model learns to stop). An assistant message's tokens are found
by rendering the template twice: on ``messages[:i]`` with the generation prompt, and on
``messages[:i + 1]``; the difference is message ``i``. That only works for a template whose
renderings of prefixes are token prefixes of the full rendering, which is checked for every example.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openft.data.chat_messages import TrainingDataError, normalize_messages
from openft.data.jsonl_lines import tokenized_lines
from openft.data.tool_format import for_template

IGNORE_INDEX = -100
"""The label of a token that is not trained on (PyTorch's cross-entropy default ``ignore_index``)."""


@dataclass(frozen=True)
class TokenizedExample:
    """One example ready to pack: ``labels[t]`` is ``input_ids[t]`` where trained, else ``-100``."""

    input_ids: list[int]
    labels: list[int]
    line: int
    """1-based line number in the JSONL file, for messages a user can act on."""


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None, *, prompt: bool) -> list[int]:
    messages, tools = for_template(tokenizer.chat_template, messages, tools)
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_example(example: dict[str, Any], tokenizer: Any, line: int = 0) -> TokenizedExample:
    """Tokenize one JSONL line with the tokenizer's chat template, labelling trained assistant tokens.

    Args:
        example: One parsed JSONL line (chat or prompt/completion).
        tokenizer: A Hugging Face tokenizer with a chat template.
        line: The line number to report.

    Returns:
        The untruncated example.

    Raises:
        TrainingDataError: The line is malformed, or the chat template renders a conversation's
            prefixes differently from the conversation (so assistant turns cannot be located).
    """
    if "messages" not in example and "prompt" in example and not getattr(tokenizer, "chat_template", None):
        return tokenize_completion(example, tokenizer, line)
    messages, weights, tools = normalize_messages(example)
    input_ids = _render(tokenizer, messages, tools, prompt=False)
    labels = [IGNORE_INDEX] * len(input_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or weights[i] == 0:
            continue
        before = _render(tokenizer, messages[:i], tools, prompt=True) if i else []
        through = _render(tokenizer, messages[: i + 1], tools, prompt=False)
        if through[: len(before)] != before or input_ids[: len(through)] != through:
            raise TrainingDataError(
                f"the chat template of this model is not prefix-stable (rendering the first {i} messages "
                "is not a prefix of rendering the whole conversation), so assistant turns cannot be "
                "located for loss masking"
            )
        labels[len(before) : len(through)] = input_ids[len(before) : len(through)]
    return TokenizedExample(input_ids=input_ids, labels=labels, line=line)


def tokenize_completion(example: dict[str, Any], tokenizer: Any, line: int = 0) -> TokenizedExample:
    """A legacy prompt/completion line as plain text, for a base (non-chat) model.

    The prompt is tokenized on its own, as ``/v1/completions`` tokenizes a prompt (BOS where the
    tokenizer adds one), so the model learns to continue exactly what it will be served; the
    completion follows, then EOS so it learns to stop. Only the completion and EOS carry labels.

    Raises:
        TrainingDataError: ``prompt`` or ``completion`` is not a string.
    """
    prompt, completion = example.get("prompt"), example.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise TrainingDataError("'prompt' and 'completion' must both be strings")
    prompt_ids = list(tokenizer(prompt)["input_ids"])
    completion_ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        completion_ids.append(tokenizer.eos_token_id)
    return TokenizedExample(
        input_ids=prompt_ids + completion_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + completion_ids,
        line=line,
    )


def load_chat_examples(path: str | Path, tokenizer: Any, max_seq_len: int) -> tuple[list[TokenizedExample], list[int]]:
    """Read and tokenize a supervised JSONL file, truncating examples to ``max_seq_len`` tokens.

    Args:
        path: The JSONL file (blank lines skipped, a UTF-8 BOM tolerated).
        tokenizer: A Hugging Face tokenizer with a chat template.
        max_seq_len: Examples longer than this many tokens keep only their first ``max_seq_len``.

    Returns:
        ``(examples, truncated_lines)``: one example per non-blank line, in file order, and the
        1-based line numbers of the examples that were truncated.

    Raises:
        TrainingDataError: A line is not valid JSON or cannot be tokenized; the message names it.
    """
    examples: list[TokenizedExample] = []
    truncated: list[int] = []
    for line_no, example in tokenized_lines(path, lambda data, line: tokenize_example(data, tokenizer, line)):
        if len(example.input_ids) > max_seq_len:
            truncated.append(line_no)
            example = TokenizedExample(example.input_ids[:max_seq_len], example.labels[:max_seq_len], line_no)
        examples.append(example)
    return examples, truncated
