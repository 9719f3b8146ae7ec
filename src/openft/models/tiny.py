"""``openft/tiny-chat``: a tiny Llama-architecture chat model built locally and deterministically.

A byte-level tokenizer (256 byte tokens plus ChatML specials, no merges, so nothing needs
training or downloading) with a chat template that renders tools and tool calls, and a
four-layer Llama of about 200k parameters initialised from a fixed seed. It exists so tests
train real steps with the real code path in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

VERSION = 2
"""Bumped whenever the built model changes; a cached build of another version is rebuilt."""
EMBEDDING_STD = 0.1

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

CHAT_TEMPLATE = (
    # Newlines are emitted as literals so whitespace control never swallows them.
    "{%- if tools -%}"
    "{{ '<|im_start|>tools\\n' }}{{ tools | tojson }}{{ '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- elif message['content'] -%}{%- for part in message['content'] -%}{{ part['text'] }}{%- endfor -%}"
    "{%- endif -%}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] -%}"
    "{%- for call in message['tool_calls'] -%}"
    "<tool_call>{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "</tool_call>"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which tokenizers' ByteLevel expects."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def build_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = _bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)


def build_model(directory: Path, vocab_size: int, *, bos_id: int, eos_id: int, pad_id: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_cache=True,
    )
    # The global RNG is borrowed and restored so building never perturbs a caller's seeded run.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
        # The (tied) embeddings get a larger scale than the default 0.02 so that the output layer,
        # which LoRA does not train, can still express confident predictions: with 0.02 the loss
        # of a perfectly learned answer cannot fall below ~4 nats.
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0.0, EMBEDDING_STD)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(directory)


def _built_version(target: Path) -> int | None:
    try:
        return int(json.loads((target / "openft.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def build_tiny_chat(target: Path) -> Path:
    """Build the model into ``target`` (atomically: concurrent builders race harmlessly)."""
    if _built_version(target) == VERSION:
        return target
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tokenizer(tmp)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tmp)
        ids: dict[str, int] = {}
        for token in SPECIAL_TOKENS:
            token_id = tokenizer.convert_tokens_to_ids(token)
            assert isinstance(token_id, int)  # one token in, one id out
            ids[token] = token_id
        build_model(tmp, len(tokenizer), bos_id=ids["<|endoftext|>"], eos_id=ids["<|im_end|>"], pad_id=ids["<|pad|>"])
        (tmp / "openft.json").write_text(json.dumps({"model": "openft/tiny-chat", "version": VERSION}))
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
