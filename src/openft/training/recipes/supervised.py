"""Supervised fine-tuning (SFT) with LoRA: the ``supervised`` method of a fine-tuning job.

Run it through the training entry point (``python -m openft.training SPEC.json``), which calls
``run(spec, events)``. Reads the base model (``spec.base_model`` from the catalog, built or converted
into ``spec.models_dir``), ``spec.training_file`` and optionally ``spec.validation_file``. Writes into
``spec.output_dir``: event lines through ``events`` (``events.jsonl``), one LoRA adapter per epoch in
``checkpoints/step-N/`` (the last ``spec.keep_checkpoints`` are kept), the final adapter in
``adapter/`` (with the tokenizer, so the directory is self-contained) and ``results.csv``.

The steps, in order: seed -> load the base model -> wrap it with LoRA -> tokenize -> train -> save.
Every optimizer step trains on ``spec.batch_size`` examples packed into one row (no padding):
position ids restart at 0 for each example, attention runs within each example alone
(``training/packed_attention.py``; a model that cannot take it gets the block-diagonal causal mask
transformers builds from the position ids) and the forward runs with ``use_cache=False`` (with a
cache, the mask path silently attends across examples). Over a bf16 base the forward runs under
bf16 autocast (``training/mixed_precision.py``). The LM head runs only at positions with a label.
Two runs of the same spec on the same CPU and thread count produce the same losses, bit for bit.
"""

from __future__ import annotations

import csv
import functools
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.training.chat_data import IGNORE_INDEX, TokenizedExample, TrainingDataError
from openft.training.checkpointing import Checkpointer, Progress, epoch_order, resume
from openft.training.data_cache import cached_chat_examples
from openft.training.distributed import sync_gradients
from openft.training.events import EventWriter
from openft.training.failures import check_loss
from openft.training.linear_cross_entropy import fusable_head, linear_cross_entropy
from openft.training.mixed_precision import compute_precision, keep_adapter_inputs_in_base_dtype
from openft.training.model_setup import load_trainable_model
from openft.training.packed_attention import packed_kwargs, use_packed_attention
from openft.training.spec import TrainingSpec

VALID_SAMPLE_SIZE = 32
"""Validation examples scored every ``eval_every`` steps (the full set is scored once per epoch)."""
AUTO_EVALUATIONS = 10
"""With ``eval_every`` unset, validate about this many times over the run."""
MAX_GRAD_NORM = 1.0
RESULTS_HEADER = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


def run(spec: TrainingSpec, events: EventWriter) -> None:
    """Fine-tune ``spec.base_model`` with LoRA on ``spec.training_file`` and save the adapter.

    Args:
        spec: The job's resolved hyperparameters and paths.
        events: Where progress, checkpoints and the result are reported.

    Raises:
        TrainingDataError: An example cannot be tokenized, or no example has anything to train on.
        ValueError: The base model is unknown or ``spec.dtype`` is not a dtype name.
    """
    started = time.perf_counter()
    output_dir = Path(spec.output_dir)
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)

    # 1-2. The base model with LoRA adapters (frozen base; PEFT keeps the adapters in fp32 over a
    # bf16 base), or with every weight trainable under full fine-tuning: see training/model_setup.py.
    base = resolve_base_model(spec.base_model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_trainable_model(spec, base, events, dtype=resolve_dtype(spec.dtype, base.id, device))
    model, tokenizer, trainable, device = loaded.model, loaded.tokenizer, loaded.trainable, loaded.device
    use_packed_attention(model)  # attention example by example, no mask: see training/packed_attention.py
    keep_adapter_inputs_in_base_dtype(model)
    sync_gradients(trainable)  # data-parallel runs only (training/distributed.py); else a no-op

    # 3. Tokenize with the chat template; labels only on trained assistant turns.
    max_seq_len = spec.max_seq_len or base.context_length
    train = _load(spec.training_file, tokenizer, max_seq_len, events, "training", spec.cache_dir)
    if not train:
        raise TrainingDataError(
            "The training file has no example with an assistant message to train on.", param="training_file"
        )
    valid: list[TokenizedExample] = []
    if spec.validation_file:
        valid = _load(spec.validation_file, tokenizer, max_seq_len, events, "validation", spec.cache_dir)
    n_sample = min(VALID_SAMPLE_SIZE, len(valid))
    valid_sample = [valid[i] for i in sorted(random.Random(spec.seed).sample(range(len(valid)), n_sample))]
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    total_steps = spec.n_epochs * steps_per_epoch
    eval_every = spec.eval_every or max(1, round(total_steps / AUTO_EVALUATIONS))
    events.message(
        f"Training on {len(train)} examples ({sum(len(e.input_ids) for e in train):,} tokens), "
        f"{spec.n_epochs} epochs of {steps_per_epoch} steps, batch size {spec.batch_size}"
        + (f"; validating on {len(valid)} examples" if valid else "")
    )

    # 4. Train: AdamW, linear warmup then linear decay to 0, gradient clipping.
    # fused: one kernel over all adapter tensors instead of a loop of small ops per tensor (~2.5x faster on CPU).
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=0.0, fused=True)
    warmup_steps = round(spec.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup_steps, total_steps))
    # A resumed run takes its place in the data, its history, every tensor and RNG from the saved state.
    progress = resume(
        spec.resume_from,
        model,
        optimizer,
        scheduler,
        Progress(total_steps=total_steps, seed=spec.seed, n_examples=len(train), batch_size=spec.batch_size),
        events,
    )
    started -= progress.elapsed_seconds
    history, saved_steps = progress.history, progress.saved_steps
    step, trained_tokens, train_seconds = progress.step, progress.trained_tokens, progress.train_seconds
    checkpointer = Checkpointer(
        output_dir, every_steps=spec.save_state_every_steps, every_seconds=spec.save_state_every_seconds
    )
    checkpointer.install_stop_handler()

    def save_state(epoch: int, position: int, order: list[int]) -> None:
        checkpointer.save(
            model,
            optimizer,
            scheduler,
            progress,
            step=step,
            epoch=epoch,
            position=position,
            epoch_order=order,
            trained_tokens=trained_tokens,
            train_seconds=train_seconds,
            elapsed_seconds=time.perf_counter() - started,
        )

    def save_checkpoint() -> None:
        """A servable checkpoint at ``step``; only the last keep_checkpoints stay on disk."""
        if spec.keep_checkpoints <= 0 or (saved_steps and saved_steps[-1] == step):
            return
        path = f"checkpoints/step-{step}"
        save_adapter(model, tokenizer, output_dir / path)
        events.checkpoint(
            step=step,
            path=path,
            metrics={k: v for k, v in history[-1].items() if k not in ("total_steps", "epoch")},
        )
        saved_steps.append(step)
        while len(saved_steps) > spec.keep_checkpoints:
            old = saved_steps.pop(0)
            shutil.rmtree(output_dir / f"checkpoints/step-{old}", ignore_errors=True)
            events.checkpoint_deleted(old)

    model.train()
    for epoch in range(progress.epoch, spec.n_epochs):
        order = epoch_order(len(train), spec.seed, epoch)
        start = progress.position if epoch == progress.epoch else 0
        for first in range(start, len(order), spec.batch_size):
            step_started = time.perf_counter()
            batch = pack([train[i] for i in order[first : first + spec.batch_size]], device)
            loss, n_tokens, n_correct = batch_loss(model, batch)
            check_loss(
                float(loss.item()),
                step=step + 1,
                learning_rate=spec.learning_rate,
                multiplier=spec.learning_rate_multiplier,
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            trained_tokens += batch.n_tokens
            train_seconds += time.perf_counter() - step_started
            row: dict[str, Any] = {
                "step": step,
                "total_steps": total_steps,
                "epoch": epoch + 1,
                "train_loss": float(loss.item()),
                "train_mean_token_accuracy": n_correct / max(n_tokens, 1),
            }
            epoch_end = first + spec.batch_size >= len(order)
            if valid_sample and (step % eval_every == 0 or epoch_end):
                row["valid_loss"], row["valid_mean_token_accuracy"] = evaluate(
                    model, valid_sample, spec.batch_size, device
                )
            if valid and epoch_end:
                full = (
                    (row["valid_loss"], row["valid_mean_token_accuracy"])
                    if len(valid_sample) == len(valid)
                    else evaluate(model, valid, spec.batch_size, device)
                )
                row["full_valid_loss"], row["full_valid_mean_token_accuracy"] = full
            history.append(row)
            # tokens/s measures training steps only; elapsed_seconds is wall clock since the run started.
            events.metrics(
                **row,
                trained_tokens=trained_tokens,
                tokens_per_second=trained_tokens / train_seconds,
                elapsed_seconds=time.perf_counter() - started,
            )
            # Full state within the epoch (see training/checkpointing.py); a stop request (SIGTERM)
            # also leaves a servable checkpoint here, then ends the process cleanly.
            if not epoch_end and checkpointer.save_point(
                step,
                epoch_end=False,
                save_checkpoint=save_checkpoint,
                save_state=functools.partial(save_state, epoch, first + spec.batch_size, order),
            ):
                events.stopped(step)
                return

        # 5a. One servable checkpoint and one full state per epoch.
        if checkpointer.save_point(
            step,
            epoch_end=True,
            save_checkpoint=save_checkpoint,
            save_state=functools.partial(save_state, epoch + 1, 0, []),
        ):
            events.stopped(step)
            return

    # 5b. The final adapter and OpenAI's results.csv.
    save_adapter(model, tokenizer, output_dir / "adapter")
    write_results_csv(history, output_dir / "results.csv")
    events.result(
        adapter_path="adapter",
        results_csv="results.csv",
        trained_tokens=trained_tokens,
        n_examples=len(train),
        total_steps=total_steps,
        hyperparameters={
            "n_epochs": spec.n_epochs,
            "batch_size": spec.batch_size,
            "learning_rate_multiplier": spec.learning_rate_multiplier,
        },
    )


def resolve_base_model(model_id: str) -> BaseModel:
    """The catalog entry for ``model_id``, or a model directory given by path.

    Raises:
        ValueError: ``model_id`` is neither in the catalog nor a directory.
    """
    base = find_base_model(model_id)
    if base is not None:
        return base
    if Path(model_id).is_dir():
        return BaseModel(id=model_id, source="local", path=model_id, context_length=2048, lora_learning_rate=2e-4)
    raise ValueError(f"unknown base model {model_id!r}")


def resolve_dtype(name: str, model_id: str, device: torch.device) -> torch.dtype:
    """The dtype of the frozen base weights: ``auto`` is bf16 on CUDA with bf16 or on an AMX CPU, else fp32.

    ``openft/tiny-chat`` stays in fp32 under ``auto``: it is tiny, and tests compare its numbers exactly.
    fp16 is never chosen (on CPU it is slower than fp32).

    Raises:
        ValueError: ``name`` is not ``auto``, ``float32`` or ``bfloat16``.
    """
    if name in ("float32", "bfloat16"):
        return getattr(torch, name)
    if name != "auto":
        raise ValueError(f"unsupported dtype {name!r}; expected auto, float32 or bfloat16")
    if model_id == TINY_CHAT:
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32


def _cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matmuls run 2x (AVX-512) to 4-8x (AMX) faster than fp32 there."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and (" amx_bf16" in line or " avx512_bf16" in line) for line in f)
    except OSError:
        return False


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _load(
    path: str, tokenizer: Any, max_seq_len: int, events: EventWriter, purpose: str, cache_dir: str | None
) -> list[TokenizedExample]:
    """Tokenize a file, reporting truncated examples and dropping those with nothing to train on."""
    try:
        examples, truncated = cached_chat_examples(
            path, tokenizer, max_seq_len, cache_dir=Path(cache_dir) if cache_dir else None
        )  # tokenized once per file
    except TrainingDataError as exc:
        raise TrainingDataError(f"{purpose.capitalize()} file: {exc}", param=f"{purpose}_file") from exc
    if truncated:
        events.message(
            f"{len(truncated)} {purpose} examples were longer than the context ({max_seq_len} tokens) "
            f"and were truncated: lines {', '.join(map(str, truncated))}",
            level="warn",
            data={"file": purpose, "lines": truncated, "max_seq_len": max_seq_len},
        )
    # A label at position 0 has no preceding token to predict it from.
    empty = [e.line for e in examples if all(label == IGNORE_INDEX for label in e.labels[1:])]
    if empty:
        events.message(
            f"{len(empty)} {purpose} examples have no assistant tokens to train on (all weights 0, or "
            f"truncated away) and were skipped: lines {', '.join(map(str, empty))}",
            level="warn",
            data={"file": purpose, "lines": empty},
        )
    skipped = set(empty)
    return [e for e in examples if e.line not in skipped]


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak rate for 0-based ``step``: linear warmup, then linear decay towards 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


@dataclass(frozen=True)
class PackedBatch:
    """Examples concatenated into one row of shape ``(1, n_tokens)``."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    """Restart at 0 for each example, which is how the model tells the examples apart."""
    targets: torch.Tensor
    """The label of the next token within the same example, ``-100`` where nothing is trained."""
    n_tokens: int
    lengths: tuple[int, ...] = ()
    """Tokens of each example, in row order: the boundaries packed attention needs."""


def pack(examples: Sequence[TokenizedExample], device: torch.device | str = "cpu") -> PackedBatch:
    """Pack examples into one row for a ``use_cache=False`` forward (see the module docstring)."""
    input_ids: list[int] = []
    position_ids: list[int] = []
    targets: list[int] = []
    for example in examples:
        input_ids += example.input_ids
        position_ids += range(len(example.input_ids))
        # Shift within the example, so no position predicts the first token of the next one.
        targets += [*example.labels[1:], IGNORE_INDEX]

    def row(values: list[int]) -> torch.Tensor:
        return torch.tensor([values], dtype=torch.long, device=device)

    lengths = tuple(len(example.input_ids) for example in examples)
    return PackedBatch(row(input_ids), row(position_ids), row(targets), len(input_ids), lengths)


def batch_loss(model: Any, batch: PackedBatch) -> tuple[torch.Tensor, int, int]:
    """Mean cross-entropy over the batch's trained tokens, their count and how many argmax got right.

    Runs the decoder over the packed row, then the LM head only at positions with a target, which
    skips most of the head's cost (prompts, system messages); a frozen head and the loss run chunk
    by chunk without ever holding all the logits (``training/linear_cross_entropy.py``).
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(causal_lm, causal_lm.base_model_prefix)
    head = causal_lm.get_output_embeddings()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    fused = not softcap and fusable_head(head)
    where = batch.targets != IGNORE_INDEX
    targets = batch.targets[where]
    n_tokens = int(targets.numel())
    with compute_precision(model):  # bf16 autocast over a bf16 base: see training/mixed_precision.py
        hidden = decoder(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            use_cache=False,
            **packed_kwargs(list(batch.lengths), batch.input_ids.device),
        ).last_hidden_state[where]
        logits = None if fused else head(hidden).float()
    if logits is None:
        loss_sum, correct = linear_cross_entropy(hidden, head.weight, targets)
    else:
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        correct = (logits.detach().argmax(dim=-1) == targets).sum()
    return loss_sum / max(n_tokens, 1), n_tokens, int(correct.item())


@torch.no_grad()
def evaluate(
    model: Any, examples: Sequence[TokenizedExample], batch_size: int, device: torch.device
) -> tuple[float, float]:
    """Token-weighted mean loss and accuracy of ``examples``, in eval mode (no dropout)."""
    model.eval()
    total_loss = 0.0
    total_tokens = total_correct = 0
    for first in range(0, len(examples), batch_size):
        loss, n_tokens, n_correct = batch_loss(model, pack(examples[first : first + batch_size], device))
        total_loss += float(loss.item()) * n_tokens
        total_tokens += n_tokens
        total_correct += n_correct
    model.train()
    return total_loss / max(total_tokens, 1), total_correct / max(total_tokens, 1)


def save_adapter(model: Any, tokenizer: Any, directory: Path) -> None:
    """Write the LoRA weights and the tokenizer, so ``directory`` can be served on its own."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def write_results_csv(history: Sequence[dict[str, Any]], path: Path) -> None:
    """OpenAI's ``results.csv``: one row per step, empty validation cells where none was computed."""

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.8g}"

    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULTS_HEADER)
        for row in history:
            writer.writerow(
                [
                    row["step"],
                    cell(row["train_loss"]),
                    cell(row["train_mean_token_accuracy"]),
                    cell(row.get("valid_loss")),
                    cell(row.get("valid_mean_token_accuracy")),
                ]
            )
