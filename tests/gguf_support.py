"""Helpers of the GGUF export tests: load an exported file with transformers' GGUF loader and decode
greedily from it, reporting tokens the way openft's serving reports them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from openft.serving.export import MARKER


def gguf_file(export_dir: Path) -> Path:
    """The GGUF file of an ``openft models export --format gguf`` directory."""
    return export_dir / json.loads((export_dir / MARKER).read_text())["file"]


def load_gguf(path: Path, **config: Any) -> tuple[Any, Any]:
    """The model (fp32, eval mode) and tokenizer transformers builds from the GGUF file ``path``
    (``config``: settings its GGUF reader does not infer, such as ``attention_bias``)."""
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32, **config)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> torch.Tensor:
    """The chat template rendered for the assistant's next turn, as a ``(1, n)`` tensor of ids."""
    rendered = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    return rendered["input_ids"]


def greedy(
    model: Any, tokenizer: Any, messages: list[dict[str, str]], max_tokens: int
) -> tuple[list[str], list[float]]:
    """Greedy tokens as text (each decoded alone, the end-of-turn token left out, as openft reports
    logprobs) and each one's logprob."""
    ids = prompt_ids(tokenizer, messages)
    with torch.no_grad():
        out = model.generate(
            ids,
            do_sample=False,
            max_new_tokens=max_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
    new = out.sequences[0, ids.shape[1] :].tolist()
    logprobs = [
        torch.log_softmax(step[0].float(), -1)[token].item() for step, token in zip(out.logits, new, strict=True)
    ]
    if new and new[-1] == tokenizer.eos_token_id:
        new, logprobs = new[:-1], logprobs[:-1]
    return [tokenizer.decode([token]) for token in new], logprobs
