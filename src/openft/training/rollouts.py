"""Rollouts for reinforcement fine-tuning: RFT prompts, sampling completions, and their log-probabilities.

An RFT line is ``{"messages": [...], "tools"?: [...], ...}``; the messages are the prompt (rendered
with the chat template and a generation prompt) and the whole line is the grader's ``item``.
Completions keep their end-of-turn token, so the policy also learns when to stop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openft.data.chat_messages import TrainingDataError, normalize_messages
from openft.data.tool_format import for_template


@dataclass(frozen=True)
class Prompt:
    line: int
    item: dict[str, Any]
    """The whole JSONL line: ``{{item.*}}`` in graders."""
    input_ids: list[int]


@dataclass(frozen=True)
class Completion:
    token_ids: list[int]
    """Generated tokens, the end-of-turn token included when the model produced one."""
    text: str
    """The decoded text without special tokens."""
    finished: bool
    """False when the completion was cut at the token limit."""


def load_prompts(
    path: str | Path, tokenizer: Any, max_prompt_tokens: int, purpose: str
) -> tuple[list[Prompt], list[int]]:
    """The prompts of an RFT file, and the lines whose prompt was cut to its last ``max_prompt_tokens`` tokens.

    Raises:
        TrainingDataError: a line is not JSON, has no messages, or the chat template rejects it.
    """
    prompts: list[Prompt] = []
    truncated: list[int] = []
    with open(path, encoding="utf-8-sig") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
                messages, _, tools = normalize_messages(item)
                messages, tools = for_template(tokenizer.chat_template, messages, tools)
                text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
            except TrainingDataError as exc:
                raise TrainingDataError(f"{purpose.capitalize()} file line {line_no}: {exc}") from exc
            except Exception as exc:  # invalid JSON or a template error: the line is at fault
                raise TrainingDataError(f"{purpose.capitalize()} file line {line_no}: {exc}") from exc
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(ids) > max_prompt_tokens:
                truncated.append(line_no)
                ids = ids[-max_prompt_tokens:]
            prompts.append(Prompt(line=line_no, item=item, input_ids=ids))
    return prompts, truncated


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a turn: the generation config's and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


@torch.no_grad()
def sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    n: int,
    max_new_tokens: int,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
) -> list[list[Completion]]:
    """``n`` completions for each prompt, generated in one left-padded batch (in eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p.input_ids) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p.input_ids)) + p.input_ids for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in prompts], device=device)
    # OpenAI-style sampling has no top-k: switch off transformers' default of 50.
    options: dict[str, Any] = (
        {"do_sample": False} if greedy else {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    )
    output = model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n,
        pad_token_id=pad,
        use_cache=True,
        **options,
    )
    if was_training:
        model.train()
    eos = eos_token_ids(model, tokenizer)
    groups: list[list[Completion]] = []
    for i in range(len(prompts)):
        group = []
        for row in output[i * n : (i + 1) * n, width:].tolist():
            end = next((j for j, token in enumerate(row) if token in eos), None)
            tokens = row if end is None else row[: end + 1]
            text_tokens = tokens if end is None else tokens[:-1]
            group.append(Completion(tokens, tokenizer.decode(text_tokens, skip_special_tokens=True), end is not None))
        groups.append(group)
    return groups


def completion_logprobs(
    model: Any, prompt: Prompt, completions: Sequence[Completion], temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of each completion after ``prompt`` under the sampling distribution
    (logits divided by ``temperature``), and the mask of real tokens.

    Both have shape ``(len(completions), longest completion)``; padding positions have mask 0.
    """
    device = next(model.parameters()).device
    longest = max(len(c.token_ids) for c in completions)
    rows = [prompt.input_ids + c.token_ids + [0] * (longest - len(c.token_ids)) for c in completions]
    attention = [
        [1] * (len(prompt.input_ids) + len(c.token_ids)) + [0] * (longest - len(c.token_ids)) for c in completions
    ]
    input_ids = torch.tensor(rows, device=device)
    # Right padding keeps every real token's position; logits only for the positions that predict completions.
    logits = (
        model(
            input_ids=input_ids,
            attention_mask=torch.tensor(attention, device=device),
            use_cache=False,
            logits_to_keep=longest + 1,
        )
        .logits[:, :-1]
        .float()
    ) / temperature
    targets = input_ids[:, -longest:]
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = torch.tensor(
        [[1.0] * len(c.token_ids) + [0.0] * (longest - len(c.token_ids)) for c in completions], device=device
    )
    return logprobs, mask
