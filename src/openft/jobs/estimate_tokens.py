"""Count what a training process would train on in a file, exactly, without torch.

Training tokenizes with a Hugging Face tokenizer (``data/chat_data.py``), which imports torch.
Here the same tokenizer files are read by the Rust ``tokenizers`` library and the chat template is
rendered by transformers' jinja helper, behind the two methods ``chat_data`` calls, so the very
functions that tokenize for training (``tokenize_example``, ``tokenize_preference``) run on them.

The counts follow the recipes: supervised examples are cut to ``max_seq_len`` and skipped when no
trainable token is left after the first (``recipes/supervised.py``); a DPO pair is skipped unless
both sides keep one (``recipes/dpo.py``); a reinforcement prompt keeps its last
``max_seq_len - new tokens`` tokens (``recipes/reinforcement.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openft.data.chat_data import IGNORE_INDEX, TokenizedExample, tokenize_example
from openft.data.chat_messages import TrainingDataError, normalize_messages
from openft.data.preference_data import tokenize_preference
from openft.data.tool_format import for_template

MAX_LISTED_LINES = 20


class TemplateTokenizer:
    """A model's tokenizer files as the small part of a Hugging Face tokenizer that ``chat_data`` uses."""

    def __init__(self, directory: Path):
        from tokenizers import Tokenizer

        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        template_file = directory / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.exists() else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self.chat_template: str | None = template if isinstance(template, str) else None
        # What apply_chat_template passes to the template besides the conversation.
        self.special_tokens: dict[str, Any] = {
            key: value["content"] if isinstance(value, dict) else value
            for key, value in config.items()
            if key.endswith("_token") and isinstance(value, str | dict)
        }
        self.backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
        eos = self.special_tokens.get("eos_token")
        self.eos_token_id: int | None = self.backend.token_to_id(eos) if isinstance(eos, str) else None

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[Any] | None = None,
        tokenize: bool = False,
        add_generation_prompt: bool = False,
    ) -> str:
        """The conversation as the template renders it (``tokenize`` must be False, as chat_data passes)."""
        from transformers.utils.chat_template_utils import render_jinja_template  # no torch

        if self.chat_template is None or tokenize:
            raise TrainingDataError("this model has no chat template")
        messages, tools = for_template(self.chat_template, messages, tools)
        # Annotated upstream as returning a string; it returns (rendered texts, generation indices).
        rendered: Any = render_jinja_template(
            conversations=[messages],
            tools=tools,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens,
        )
        return str(rendered[0][0])

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)}


@dataclass
class FileTokens:
    """The trained part of one file."""

    n_examples: int = 0
    n_trained_examples: int = 0
    n_tokens: int = 0
    """Tokens trained per epoch (after truncation, skipped examples excluded)."""
    n_truncated: int = 0
    truncated_lines: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    """Tokens of each trained example, in file order (what the largest step's memory depends on)."""

    def add(self, tokens: int, *, truncated: bool, line: int) -> None:
        self.n_trained_examples += 1
        self.n_tokens += tokens
        self.lengths.append(tokens)
        if truncated:
            self.truncate(line)

    def truncate(self, line: int) -> None:
        self.n_truncated += 1
        if len(self.truncated_lines) < MAX_LISTED_LINES:
            self.truncated_lines.append(line)


def _has_labels(example: TokenizedExample) -> bool:
    # A label at position 0 has no preceding token to predict it from.
    return any(label != IGNORE_INDEX for label in example.labels[1:])


def _cut(example: TokenizedExample, max_seq_len: int) -> TokenizedExample:
    return TokenizedExample(example.input_ids[:max_seq_len], example.labels[:max_seq_len], example.line)


def _supervised(example: dict[str, Any], tok: TemplateTokenizer, line: int, max_len: int, out: FileTokens) -> None:
    if tok.chat_template is not None:
        # One rendering, as training renders the whole conversation. Untruncated, an example trains on
        # each assistant turn of non-zero weight (its end-of-turn token at least), so only a truncated one
        # needs the per-turn renderings that locate its labels.
        messages, weights, tools = normalize_messages(example)
        text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=False)
        n_tokens = len(tok(text, add_special_tokens=False)["input_ids"])
        if n_tokens <= max_len:
            if any(m["role"] == "assistant" and w != 0 for m, w in zip(messages, weights, strict=True)):
                out.add(n_tokens, truncated=False, line=line)
            return
    tokenized = tokenize_example(example, tok, line)
    truncated = len(tokenized.input_ids) > max_len
    if truncated:
        tokenized = _cut(tokenized, max_len)
    if _has_labels(tokenized):
        out.add(len(tokenized.input_ids), truncated=truncated, line=line)
    elif truncated:
        out.truncate(line)


def _dpo(example: dict[str, Any], tok: TemplateTokenizer, line: int, max_len: int, out: FileTokens) -> None:
    pair = tokenize_preference(example, tok, line)
    truncated = max(len(pair.chosen.input_ids), len(pair.rejected.input_ids)) > max_len
    chosen, rejected = _cut(pair.chosen, max_len), _cut(pair.rejected, max_len)
    if _has_labels(chosen) and _has_labels(rejected):
        out.add(len(chosen.input_ids) + len(rejected.input_ids), truncated=truncated, line=line)
    elif truncated:
        out.truncate(line)


def _prompt(example: dict[str, Any], tok: TemplateTokenizer, line: int, max_len: int, out: FileTokens) -> None:
    messages, _, tools = normalize_messages(example)
    text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True)
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    out.add(min(n, max_len), truncated=n > max_len, line=line)


_COUNTERS: dict[str, Callable[[dict[str, Any], TemplateTokenizer, int, int, FileTokens], None]] = {
    "supervised": _supervised,
    "dpo": _dpo,
    "reinforcement": _prompt,
}


def count_trained_tokens(
    path: Path,
    tokenizer: TemplateTokenizer,
    method: str,
    max_seq_len: int,
    *,
    progress: Callable[[], None] | None = None,
) -> FileTokens:
    """Tokenize a file that passed validation as its job's training process would, keeping only counts.

    Args:
        path: A JSONL file of ``method`` examples, already validated.
        tokenizer: The base model's tokenizer.
        method: ``supervised``, ``dpo`` or ``reinforcement``.
        max_seq_len: The training context (for reinforcement: the most prompt tokens kept).
        progress: Called before each line; whatever it raises stops the count.

    Raises:
        TrainingDataError: A line cannot be tokenized (the training process would fail on it too).
    """
    count = _COUNTERS[method]
    out = FileTokens()
    with path.open(encoding="utf-8-sig") as f:
        for line_no, raw in enumerate(f, start=1):
            if progress is not None:
                progress()
            if not raw.strip():
                continue
            out.n_examples += 1
            try:
                count(json.loads(raw), tokenizer, line_no, max_seq_len, out)
            except TrainingDataError as exc:
                raise TrainingDataError(f"Line {line_no}: {exc}") from exc
            except Exception as exc:  # the chat template rejected the conversation (jinja raise_exception)
                raise TrainingDataError(f"Line {line_no}: the chat template failed: {exc}") from exc
    return out
