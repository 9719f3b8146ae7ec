"""Count the tokens of every example in a fine-tuning JSONL file at tokenizer speed, without torch.

Each line is rendered with the base model's chat template (exactly as training renders it), then
whole batches of rendered lines go through the Rust ``tokenizers`` library's ``encode_batch``,
which spreads a batch across all cores. The file is streamed in batches of ``batch_size`` lines,
so memory stays flat however large the file is: only counts are kept, plus at most
``MAX_REPORTED_LINES`` line numbers per list.

The tokenizer comes from the model's ``tokenizer.json`` (converted or built under
``$OPENFT_HOME/models``). When the model has not been converted yet, only its tokenizer is
extracted, into ``$OPENFT_HOME/models/.tokenizers``, which needs no torch either.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openft.data.chat_messages import TrainingDataError, normalize_messages
from openft.data.tool_format import for_template
from openft.models.catalog import BaseModel, find_base_model

DEFAULT_BATCH_SIZE = 1024
"""Lines rendered and encoded together: large enough to keep every core busy, small enough for flat memory."""
MAX_REPORTED_LINES = 1000
"""Line-number lists stop growing here; their counts keep going."""


@dataclass(frozen=True)
class TokenStats:
    """Token counts of the examples of one file, as the model's chat template renders them."""

    examples: int
    """Examples counted (non-blank lines that parse as an example of the method)."""
    min_tokens: int
    mean_tokens: float
    max_tokens: int
    total_tokens: int
    """Sum over examples; for ``dpo`` the longer of the two completions is counted."""
    context_length: int
    """The model's training context; longer examples are truncated when trained on."""
    n_over_context: int
    """Examples longer than ``context_length`` tokens."""
    lines_over_context: list[int] = field(default_factory=list)
    """1-based line numbers of those examples (the first ``MAX_REPORTED_LINES``)."""
    n_skipped: int = 0
    """Lines that could not be rendered (bad JSON or shape); ``validate_file`` reports why."""
    skipped_lines: list[int] = field(default_factory=list)
    """1-based line numbers of the skipped lines (the first ``MAX_REPORTED_LINES``)."""


def count_example_tokens(
    path: Path,
    model_id: str,
    method: str,
    *,
    models_dir: Path | None = None,
    registered: dict[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TokenStats:
    """Stream ``path`` and count each example's tokens with ``model_id``'s tokenizer and chat template.

    Args:
        path: A JSONL file of ``method`` examples.
        model_id: A catalog base model id, a registered local model, or a model directory.
        method: ``supervised``, ``dpo`` or ``reinforcement``.
        models_dir: Where converted models and extracted tokenizers live; default ``$OPENFT_HOME/models``.
        registered: Local models registered with ``openft models add`` (name -> directory).
        batch_size: Lines per ``encode_batch`` call.

    Raises:
        ValueError: ``model_id`` is unknown or ``method`` is not a fine-tuning method.
        OSError: The file cannot be read.
    """
    if method not in ("supervised", "dpo", "reinforcement"):
        raise ValueError(f"unknown method {method!r}; expected supervised, dpo or reinforcement")
    base = _resolve_model(model_id, registered)
    if models_dir is None:
        from openft.settings import Settings

        models_dir = Settings().models_dir
    counter = _ChatTokenCounter(tokenizer_directory(base, models_dir))
    tally = _Tally(base.context_length)

    def record(lines: list[int], groups: list[int], lengths: list[int]) -> None:
        at = 0
        for line, size in zip(lines, groups, strict=True):
            tally.add(line, max(lengths[at : at + size]))
            at += size

    # encode_batch releases the GIL, so batch N is encoded (on every core) while batch N+1 is parsed
    # and rendered in Python; at most two batches are in memory.
    with ThreadPoolExecutor(max_workers=1) as encoder:
        pending: tuple[list[int], list[int], Future[list[int]]] | None = None
        for lines, texts, groups in _rendered_batches(Path(path), method, counter, batch_size, tally):
            if pending is not None:
                record(pending[0], pending[1], pending[2].result())
            pending = (lines, groups, encoder.submit(counter.count, texts))
        if pending is not None:
            record(pending[0], pending[1], pending[2].result())
    return tally.stats()


def tokenizer_directory(base: BaseModel, models_dir: Path) -> Path:
    """A directory holding ``base``'s ``tokenizer.json`` and ``tokenizer_config.json``, without loading weights."""
    if base.source in ("local", "hf-cache"):
        assert base.path is not None
        return Path(base.path)
    converted = models_dir / base.cache_name
    if (converted / "tokenizer.json").exists() and (converted / "config.json").exists():
        return converted
    target = models_dir / ".tokenizers" / base.cache_name
    if (target / "tokenizer.json").exists():
        return target
    # transformers imports torch; extracting in a child process keeps the caller (a worker, the CLI) light.
    code = "import sys, openft.data.tokenize as t; t._extract_tokenizer(sys.argv[1], sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, base.id, str(target)], check=True, capture_output=True)
    return target


def _extract_tokenizer(model_id: str, target: str) -> None:
    """Save the tokenizer of a catalog model into ``target`` (atomically), without converting its weights."""
    base = find_base_model(model_id)
    if base is None:
        raise ValueError(f"unknown base model {model_id!r}")
    directory = Path(target)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tok-", dir=directory.parent))
    try:
        if base.source == "tiny":
            from openft.models.tiny import build_tokenizer

            build_tokenizer(tmp)
        else:
            from transformers import AutoTokenizer

            gguf = Path(base.path or "")
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        os.rename(tmp, directory)
    except OSError:
        if not (directory / "tokenizer.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resolve_model(model_id: str, registered: dict[str, str] | None) -> BaseModel:
    base = find_base_model(model_id, registered)
    if base is not None:
        return base
    if Path(model_id).is_dir():
        from openft.models.catalog import _context_length

        return BaseModel(
            id=model_id,
            source="local",
            path=model_id,
            context_length=_context_length(Path(model_id)),
            lora_learning_rate=2e-4,
        )
    raise ValueError(f"unknown base model {model_id!r}")


class _ChatTokenCounter:
    """The model's chat template and its Rust tokenizer, read from the tokenizer files (no torch)."""

    def __init__(self, directory: Path):
        from tokenizers import Tokenizer

        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        template_file = directory / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.exists() else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if not isinstance(template, str):
            raise ValueError(f"the tokenizer in {directory} has no chat template")
        self.template = template
        # What apply_chat_template passes to the template besides the conversation.
        self.special_tokens: dict[str, Any] = {
            key: value["content"] if isinstance(value, dict) else value
            for key, value in config.items()
            if key.endswith("_token") and isinstance(value, (str, dict))
        }
        self.backend = Tokenizer.from_file(str(directory / "tokenizer.json"))

    def render(self, conversations: list[dict[str, Any]]) -> list[str]:
        """Each conversation (``messages``, ``tools``, ``add_generation_prompt``) as the template renders it."""
        # Loads transformers' template utilities only, not torch.
        from transformers.utils.chat_template_utils import render_jinja_template

        texts = []
        for c in conversations:
            messages, tools = for_template(self.template, c["messages"], c["tools"])
            rendered, _ = render_jinja_template(  # type: ignore[str-unpack]  # annotated -> str; returns a pair
                conversations=[messages],
                tools=tools,
                chat_template=self.template,
                add_generation_prompt=c["add_generation_prompt"],
                **self.special_tokens,
            )
            texts.append(rendered[0])
        return texts

    def count(self, texts: list[str]) -> list[int]:
        """Token counts, encoded as training encodes them (no added special tokens), across all cores."""
        return [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=False)]


def _conversations(example: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """What gets tokenized for one example: one conversation, or two for ``dpo`` (one per completion)."""
    if method == "dpo":
        inp = example.get("input")
        if not isinstance(inp, dict):
            raise TrainingDataError("expected an 'input' object")
        preferred, non_preferred = example.get("preferred_output"), example.get("non_preferred_output")
        if not isinstance(preferred, list) or not isinstance(non_preferred, list):
            raise TrainingDataError("expected 'preferred_output' and 'non_preferred_output' lists")
        result = []
        for output in (preferred, non_preferred):
            messages, _, tools = normalize_messages({**inp, "messages": [*inp.get("messages", []), *output]})
            result.append({"messages": messages, "tools": tools, "add_generation_prompt": False})
        return result
    messages, _, tools = normalize_messages(example)
    # Reinforcement examples end before the answer the model will generate.
    return [{"messages": messages, "tools": tools, "add_generation_prompt": method == "reinforcement"}]


def _rendered_batches(
    path: Path, method: str, counter: _ChatTokenCounter, batch_size: int, tally: _Tally
) -> Iterator[tuple[list[int], list[str], list[int]]]:
    """``(line numbers, rendered texts, texts per line)`` for each batch of ``batch_size`` examples."""
    lines: list[int] = []
    conversations: list[dict[str, Any]] = []
    groups: list[int] = []
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                example = json.loads(raw)
                if not isinstance(example, dict):
                    raise TrainingDataError("not an object")
                found = _conversations(example, method)
            except (ValueError, TrainingDataError, TypeError, AttributeError):
                tally.skip(line_no)
                continue
            lines.append(line_no)
            conversations += found
            groups.append(len(found))
            if len(lines) >= batch_size:
                texts, kept = _render_or_skip(counter, conversations, lines, groups, tally)
                yield lines, texts, kept
                lines, conversations, groups = [], [], []
    if lines:
        texts, kept = _render_or_skip(counter, conversations, lines, groups, tally)
        yield lines, texts, kept


def _render_or_skip(
    counter: _ChatTokenCounter,
    conversations: list[dict[str, Any]],
    lines: list[int],
    groups: list[int],
    tally: _Tally,
) -> tuple[list[str], list[int]]:
    """Render a batch; a conversation the template rejects (jinja ``raise_exception``) skips its line.

    Mutates ``lines`` and ``groups`` to drop skipped lines, so the three stay aligned.
    """
    try:
        return counter.render(conversations), groups
    except Exception:  # rare: fall back to one line at a time to find the culprit
        pass
    texts: list[str] = []
    kept_lines: list[int] = []
    kept_groups: list[int] = []
    at = 0
    for line, size in zip(lines, groups, strict=True):
        try:
            texts += counter.render(conversations[at : at + size])
            kept_lines.append(line)
            kept_groups.append(size)
        except Exception:
            tally.skip(line)
        at += size
    lines[:] = kept_lines
    return texts, kept_groups


class _Tally:
    def __init__(self, context_length: int):
        self.context_length = context_length
        self.n = self.total = self.n_over = self.n_skipped = 0
        self.min: int | None = None
        self.max = 0
        self.over: list[int] = []
        self.skipped: list[int] = []

    def add(self, line: int, tokens: int) -> None:
        self.n += 1
        self.total += tokens
        self.min = tokens if self.min is None else min(self.min, tokens)
        self.max = max(self.max, tokens)
        if tokens > self.context_length:
            self.n_over += 1
            if len(self.over) < MAX_REPORTED_LINES:
                self.over.append(line)

    def skip(self, line: int) -> None:
        self.n_skipped += 1
        if len(self.skipped) < MAX_REPORTED_LINES:
            self.skipped.append(line)

    def stats(self) -> TokenStats:
        return TokenStats(
            examples=self.n,
            min_tokens=self.min or 0,
            mean_tokens=self.total / self.n if self.n else 0.0,
            max_tokens=self.max,
            total_tokens=self.total,
            context_length=self.context_length,
            n_over_context=self.n_over,
            lines_over_context=self.over,
            n_skipped=self.n_skipped,
            skipped_lines=self.skipped,
        )
