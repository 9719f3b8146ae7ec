"""A transformers tokenizer as llama.cpp's GGUF tokenizer metadata (``tokenizer.ggml.*``).

Only byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama 3, Qwen2, openft/tiny-chat) are written,
as llama.cpp's ``gpt2`` tokenizer model: the vocabulary in id order spelled in the byte alphabet,
the merges in rank order, a type per token, and ``tokenizer.ggml.pre``, the name llama.cpp gives
the text-splitting rule the merges were learned with. llama.cpp has a fixed list of those rules, so
a tokenizer whose rule is not recognised is refused rather than silently tokenized another way.
Sentencepiece-style tokenizers (Llama 2, Mistral v0.1) are refused too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from openft.errors import InvalidRequest

# The splitting rules of the Llama 3 and Qwen2 tokenizers, as their tokenizer.json spell them.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# tokenizer.json pre-tokenizer shapes -> llama.cpp's pre-tokenizer names (llama-vocab.cpp).
_KNOWN_SPLITS: dict[tuple[tuple[str, Any], ...], str] = {
    (("ByteLevel", True),): "gpt-2",
    (("Digits", True), ("ByteLevel", True)): "smollm",
    (("Split", LLAMA3_SPLIT), ("ByteLevel", False)): "llama-bpe",
    (("Split", QWEN2_SPLIT), ("ByteLevel", False)): "qwen2",
}


class TokenType(IntEnum):
    """llama.cpp's token types (``tokenizer.ggml.token_type``)."""

    NORMAL = 1
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5


@dataclass
class GGUFVocab:
    """What ``tokenizer.ggml.*`` and ``tokenizer.chat_template`` hold."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)
    """``bos``, ``eos``, ``unknown``, ``padding`` -> token id, for those the tokenizer has."""
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def unsupported(message: str) -> InvalidRequest:
    """The error refusing a GGUF export, ``message`` saying what llama.cpp's format cannot hold."""
    return InvalidRequest(f"Cannot export to GGUF: {message}", param="format", code="unsupported_model")


def _split_shape(pre_tokenizer: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The pre-tokenizer as ``(kind, setting)`` pairs, only the settings that change how text splits."""
    if pre_tokenizer is None:
        return ()
    parts = pre_tokenizer["pretokenizers"] if pre_tokenizer["type"] == "Sequence" else [pre_tokenizer]
    shape: list[tuple[str, Any]] = []
    for part in parts:
        kind = part["type"]
        if kind == "ByteLevel":
            shape.append((kind, bool(part.get("use_regex", True))))
        elif kind == "Digits":
            shape.append((kind, bool(part.get("individual_digits", False))))
        elif kind == "Split" and part.get("behavior") == "Isolated" and not part.get("invert", False):
            shape.append((kind, part["pattern"].get("Regex", part["pattern"].get("String"))))
        else:
            shape.append((kind, json.dumps(part, sort_keys=True)))
    return tuple(shape)


def pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for how ``spec`` (a tokenizer.json) splits text before merging.

    Raises:
        InvalidRequest: a splitting rule llama.cpp has no name for.
    """
    if not spec["model"].get("merges"):
        # Nothing to merge: every byte is its own token however the text is split.
        return "default"
    shape = _split_shape(spec.get("pre_tokenizer"))
    name = _KNOWN_SPLITS.get(shape)
    if name is None:
        raise unsupported(
            f"the tokenizer splits text with {[kind for kind, _ in shape]}, a rule llama.cpp has no name for "
            "that openft knows (GPT-2, Llama 3, Qwen2 and SmolLM byte-level tokenizers are supported)."
        )
    return name


def _byte_level_parts(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    parts = node.get("pretokenizers") or node.get("decoders") or [node]
    return [part for part in parts if part.get("type") == "ByteLevel"]


def _check_byte_level(spec: dict[str, Any]) -> None:
    if any(part.get("add_prefix_space") for part in _byte_level_parts(spec.get("pre_tokenizer"))):
        # llama.cpp's gpt2 tokenizer never puts a space before the text.
        raise unsupported("the tokenizer adds a space before the text (add_prefix_space), which llama.cpp does not.")
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or not _byte_level_parts(spec.get("decoder")):
        kind = model.get("type", "unknown")
        raise unsupported(
            f"only byte-level BPE tokenizers (GPT-2 style) can be written; this one is a {kind} tokenizer"
            + (" with byte fallback (sentencepiece style)." if model.get("byte_fallback") else ".")
        )


def _merges(spec: dict[str, Any]) -> list[str]:
    # tokenizers writes merges as "a b" strings (old format) or as [a, b] pairs.
    return [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges") or []]


def _added_ends(tokenizer: Any) -> tuple[bool, bool]:
    """Whether the tokenizer puts its BOS / EOS token into plain text by itself."""
    ids = tokenizer("a")["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    return bos is not None and ids[:1] == [bos], eos is not None and ids[-1:] == [eos]


def _tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    backend = tokenizer.backend_tokenizer
    by_id = {i: t for t, i in backend.get_vocab(with_added_tokens=True).items()}
    added = {i: t for i, t in backend.get_added_tokens_decoder().items()}
    if by_id and max(by_id) >= vocab_size:
        raise unsupported(f"the tokenizer has token id {max(by_id)}, beyond the model's {vocab_size} embeddings.")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i].content)
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
        else:  # embedding rows no token uses (vocabularies padded to a round size)
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
    return tokens, types


def gguf_vocab(tokenizer: Any, vocab_size: int, *, source_gguf: Path | None = None) -> GGUFVocab:
    """The GGUF tokenizer metadata of ``tokenizer`` (a fast transformers tokenizer) for a model with
    ``vocab_size`` embedding rows.

    ``source_gguf``: the GGUF the base model came from; its ``tokenizer.ggml.pre`` is kept, since a
    tokenizer converted from a GGUF by transformers no longer says how the original split text.

    Raises:
        InvalidRequest: a tokenizer llama.cpp's ``gpt2`` tokenizer model cannot express.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise unsupported("the model has no fast (tokenizer.json) tokenizer.")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    _check_byte_level(spec)
    source_pre = _source_pre(source_gguf) if source_gguf is not None else None
    pre = source_pre or pre_tokenizer_name(spec)
    tokens, types = _tokens(tokenizer, vocab_size)
    special_ids = {
        key: token_id
        for key, token_id in (
            ("bos", tokenizer.bos_token_id),
            ("eos", tokenizer.eos_token_id),
            ("unknown", tokenizer.unk_token_id),
            ("padding", tokenizer.pad_token_id),
        )
        if token_id is not None
    }
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    add_bos, add_eos = _added_ends(tokenizer)
    return GGUFVocab(
        tokens=tokens,
        token_types=[int(t) for t in types],
        merges=_merges(spec),
        pre=pre,
        special_ids=special_ids,
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=template,
    )


def _source_pre(path: Path) -> str | None:
    from gguf import GGUFReader

    field_ = GGUFReader(path).get_field("tokenizer.ggml.pre")
    return str(field_.contents()) if field_ is not None else None
