"""Supervised fine-tuning (SFT) with LoRA: the ``supervised`` method of a fine-tuning job.

Run it through the training entry point (``python -m openft.training SPEC.json``), which calls
``run(spec, events)``. Reads the base model (``spec.base_model`` from the catalog, built or converted
into ``spec.models_dir``), ``spec.training_file`` and optionally ``spec.validation_file``. Writes into
``spec.output_dir``: event lines through ``events`` (``events.jsonl``), one LoRA adapter per epoch in
``checkpoints/step-N/`` (the last ``spec.keep_checkpoints`` are kept), the final adapter in
``adapter/`` (with the tokenizer, so the directory is self-contained) and ``results.csv``.

The steps, in order: seed -> load the base model -> wrap it with LoRA -> tokenize -> train -> save.
Every optimizer step trains on ``spec.batch_size`` examples packed into one row, no padding
(``training/packing.py``), with the loss of ``training/supervised_loss.py``: the LM head runs only
at positions with a label. The optimizer, schedule, save points, pause and resume are the shared
loop's (``training/loop.py``). Two runs of the same spec on the same CPU and thread count produce
the same losses, bit for bit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from openft.data.chat_data import IGNORE_INDEX, TokenizedExample
from openft.data.chat_messages import TrainingDataError
from openft.training.common import load_model, report_skipped_lines, validation_sample
from openft.training.data_cache import cached_chat_examples
from openft.training.events import EventWriter
from openft.training.loop import StepResult, TrainingLoop, epoch_steps, interval
from openft.training.packing import pack, prepare_for_packed_rows
from openft.training.spec import TrainingSpec
from openft.training.supervised_loss import batch_loss, evaluate


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
    # The base model with LoRA adapters (frozen base; PEFT keeps the adapters in fp32 over a bf16
    # base), or with every weight trainable under full fine-tuning: see training/model_setup.py.
    base, trainable = load_model(spec, events)
    model, device = trainable.model, trainable.device
    prepare_for_packed_rows(model)

    # Tokenize with the chat template; labels only on trained assistant turns.
    max_seq_len = spec.max_seq_len or base.context_length
    train = _load(spec.training_file, trainable.tokenizer, max_seq_len, events, "training", spec.cache_dir)
    if not train:
        raise TrainingDataError(
            "The training file has no example with an assistant message to train on.", param="training_file"
        )
    valid: list[TokenizedExample] = []
    if spec.validation_file:
        valid = _load(spec.validation_file, trainable.tokenizer, max_seq_len, events, "validation", spec.cache_dir)
    valid_sample = [valid[i] for i in validation_sample(len(valid), spec.seed)]
    events.message(
        f"Training on {len(train)} examples ({sum(len(e.input_ids) for e in train):,} tokens), "
        f"{spec.n_epochs} epochs of {epoch_steps(len(train), spec.batch_size)} steps, batch size {spec.batch_size}"
        + (f"; validating on {len(valid)} examples" if valid else "")
    )
    loop = TrainingLoop(spec, events, trainable, len(train), started=started)
    eval_every = interval(spec.eval_every, loop.total_steps)

    def train_step(indices: list[int]) -> StepResult:
        batch = pack([train[i] for i in indices], device)
        loss, n_tokens, n_correct = batch_loss(model, batch)
        loss.backward()
        metrics = {"train_loss": float(loss.item()), "train_mean_token_accuracy": n_correct / max(n_tokens, 1)}
        return StepResult(loss=metrics["train_loss"], metrics=metrics, n_tokens=batch.n_tokens)

    def validate(step: int, epoch_end: bool) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if valid_sample and (step % eval_every == 0 or epoch_end):
            row["valid_loss"], row["valid_mean_token_accuracy"] = evaluate(model, valid_sample, spec.batch_size, device)
        if valid and loop.full_evaluation_due(step, epoch_end):
            full = (
                (row["valid_loss"], row["valid_mean_token_accuracy"])
                if len(valid_sample) == len(valid) and "valid_loss" in row
                else evaluate(model, valid, spec.batch_size, device)
            )
            row["full_valid_loss"], row["full_valid_mean_token_accuracy"] = full
            if len(valid_sample) == len(valid):  # the sample is the whole set: its loss is this one
                row["valid_loss"], row["valid_mean_token_accuracy"] = full
        return row

    if loop.run(train_step, validate):
        loop.finish(
            hyperparameters={
                "n_epochs": spec.n_epochs,
                "batch_size": spec.batch_size,
                "learning_rate_multiplier": spec.learning_rate_multiplier,
            }
        )


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
    report_skipped_lines(
        events,
        truncated,
        f"{purpose} examples were longer than the context ({max_seq_len} tokens) and were truncated",
        file=purpose,
        max_seq_len=max_seq_len,
    )
    # A label at position 0 has no preceding token to predict it from.
    empty = [e.line for e in examples if all(label == IGNORE_INDEX for label in e.labels[1:])]
    report_skipped_lines(
        events,
        empty,
        f"{purpose} examples have no assistant tokens to train on (all weights 0, or truncated away) and were skipped",
        file=purpose,
    )
    skipped = set(empty)
    return [e for e in examples if e.line not in skipped]
