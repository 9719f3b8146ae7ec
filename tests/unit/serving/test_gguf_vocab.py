"""``gguf_vocab``: a transformers tokenizer as llama.cpp's ``gpt2`` tokenizer metadata, with the name
llama.cpp gives its pre-tokenizer, and the tokenizers llama.cpp would tokenize differently refused."""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from openft.errors import InvalidRequest
from openft.serving.gguf_vocab import LLAMA3_SPLIT, QWEN2_SPLIT, gguf_vocab

VOCAB = {"a": 0, "b": 1, "ab": 2}


def _byte_level(pre_tokenizer: Any, **bpe: Any) -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE(vocab=VOCAB, merges=[("a", "b")], **bpe))
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="b")


def _split(regex: str) -> Any:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


@pytest.mark.parametrize(
    ("pre_tokenizer", "name"),
    [
        (pre_tokenizers.ByteLevel(add_prefix_space=False), "gpt-2"),
        (
            pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
            ),
            "smollm",
        ),
        (_split(LLAMA3_SPLIT), "llama-bpe"),
        (_split(QWEN2_SPLIT), "qwen2"),
    ],
)
def test_byte_level_tokenizers_get_llama_cpp_s_pre_tokenizer_name(pre_tokenizer: Any, name: str) -> None:
    vocab = gguf_vocab(_byte_level(pre_tokenizer), 5)
    assert (vocab.pre, vocab.merges, vocab.special_ids) == (name, ["a b"], {"eos": 1})
    # Embedding rows no token uses (a vocabulary padded to a round size) are named and marked unused.
    assert (vocab.tokens, vocab.token_types) == (["a", "b", "ab", "[PAD3]", "[PAD4]"], [1, 3, 1, 5, 5])


def test_tokenizers_llama_cpp_cannot_reproduce_are_refused() -> None:
    spm = _byte_level(pre_tokenizers.Metaspace(), byte_fallback=True)  # sentencepiece style (Llama 2, Mistral v0.1)
    spm.backend_tokenizer.decoder = decoders.Metaspace()
    with pytest.raises(InvalidRequest, match=r"only byte-level BPE tokenizers .* with byte fallback"):
        gguf_vocab(spm, 3)
    odd = _byte_level(
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    )
    with pytest.raises(InvalidRequest, match=r"splits text with \['WhitespaceSplit', 'ByteLevel'\]"):
        gguf_vocab(odd, 3)
    with pytest.raises(InvalidRequest, match=r"adds a space before the text \(add_prefix_space\)"):
        gguf_vocab(_byte_level(pre_tokenizers.ByteLevel(add_prefix_space=True)), 3)
    with pytest.raises(InvalidRequest, match="token id 2, beyond the model's 2 embeddings"):
        gguf_vocab(_byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False)), 2)
