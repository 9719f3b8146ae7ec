"""HFBackend on openft/tiny-chat: sampling parameters, usage counts, adapters on one shared base."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from openft.errors import InvalidRequest, ModelNotFound
from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend, adapter_name

HI = [{"role": "user", "content": "Say hi."}]
GREEDY = SamplingParams(max_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny() -> BaseModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return base


@pytest.fixture(scope="module")
def backend(models_dir: Path) -> HFBackend:
    return HFBackend(models_dir, device="cpu")  # CPU and fp32 everywhere, so greedy outputs are stable


@pytest.fixture(scope="module")
def base_model(tiny: BaseModel) -> ServedModel:
    return ServedModel(id=TINY_CHAT, base=tiny, adapter_dir=None)


@pytest.fixture(scope="module")
def adapter_dir(tiny: BaseModel, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random (non-zero) LoRA adapter for tiny-chat, as a fine-tuning job would save one."""
    from peft import LoraConfig, get_peft_model

    from openft.models.loader import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(tiny, models_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    out = tmp_path_factory.mktemp("adapter") / "ft-tiny"
    with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(out)
    return str(out)


def _sampled(**overrides: Any) -> SamplingParams:
    values: dict[str, Any] = {"max_tokens": 24, "temperature": 1.0, "seed": 1234}
    values.update(overrides)
    return SamplingParams(**values)


def test_importing_backends_does_not_import_torch() -> None:
    code = "import sys, openft.serving.hf, openft.serving.backend; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chat_returns_text_and_counts_real_tokens(backend: HFBackend, base_model: ServedModel) -> None:
    gen = backend.chat(base_model, HI, GREEDY)

    assert len(gen.choices) == 1
    assert isinstance(gen.choices[0].text, str)
    tokenizer = backend.tokenizer(base_model)
    rendered = tokenizer.apply_chat_template(HI, add_generation_prompt=True, tokenize=False)
    assert gen.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert 1 <= gen.completion_tokens <= 12
    assert gen.total_tokens == gen.prompt_tokens + gen.completion_tokens


def test_max_tokens_gives_finish_reason_length(backend: HFBackend, base_model: ServedModel) -> None:
    gen = backend.chat(base_model, HI, SamplingParams(max_tokens=5, temperature=0))

    assert gen.choices[0].finish_reason == "length"
    assert gen.completion_tokens <= 5


def test_same_seed_same_text_and_other_seed_other_text(backend: HFBackend, base_model: ServedModel) -> None:
    first = backend.chat(base_model, HI, _sampled(seed=7))
    again = backend.chat(base_model, HI, _sampled(seed=7))
    other = backend.chat(base_model, HI, _sampled(seed=8))

    assert first.choices[0].text == again.choices[0].text
    assert first.choices[0].text != other.choices[0].text


def test_n_gives_n_choices(backend: HFBackend, base_model: ServedModel) -> None:
    sampled = backend.chat(base_model, HI, _sampled(n=2, max_tokens=6))
    greedy = backend.chat(base_model, HI, SamplingParams(max_tokens=6, temperature=0, n=2))

    assert len(sampled.choices) == 2
    assert sampled.choices[0].text != sampled.choices[1].text
    assert sampled.completion_tokens <= 12
    assert len(greedy.choices) == 2
    assert greedy.choices[0] == greedy.choices[1]
    assert greedy.completion_tokens == 12


def test_stop_string_cuts_the_text(backend: HFBackend, base_model: ServedModel) -> None:
    full = backend.chat(base_model, HI, _sampled(seed=3, max_tokens=40)).choices[0].text
    stop = next(full[i : i + 2] for i in range(4, len(full) - 1) if "\ufffd" not in full[i : i + 2])

    gen = backend.chat(base_model, HI, _sampled(seed=3, max_tokens=40, stop=["never-there", stop]))

    assert gen.choices[0].text == full[: full.index(stop)]
    assert gen.choices[0].finish_reason == "stop"
    assert gen.completion_tokens < 40


def test_frequency_penalty_changes_a_repetitive_greedy_answer(backend: HFBackend, base_model: ServedModel) -> None:
    plain = backend.chat(base_model, HI, SamplingParams(max_tokens=20, temperature=0)).choices[0].text
    penalised = (
        backend.chat(base_model, HI, SamplingParams(max_tokens=20, temperature=0, frequency_penalty=2.0))
        .choices[0]
        .text
    )

    assert len(set(plain)) <= 2  # the untrained model repeats itself...
    assert len(set(penalised)) > len(set(plain))  # ...unless repeating costs


def test_content_parts_and_developer_role_render_like_a_system_string(
    backend: HFBackend, base_model: ServedModel
) -> None:
    parts = [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]
    with_parts = backend.chat(base_model, [{"role": "developer", "content": parts}, *HI], GREEDY)
    as_string = backend.chat(base_model, [{"role": "system", "content": "Be brief."}, *HI], GREEDY)

    assert with_parts == as_string


def test_complete_continues_a_prompt(backend: HFBackend, base_model: ServedModel) -> None:
    gen = backend.complete(base_model, "Once upon a time", SamplingParams(max_tokens=4, temperature=0))

    assert gen.prompt_tokens == len("Once upon a time")  # byte-level tokenizer, no BOS
    assert gen.completion_tokens == 4
    assert gen.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        (SamplingParams(max_tokens=0), "max_tokens"),
        (SamplingParams(max_tokens=4, n=0), "n"),
        (SamplingParams(max_tokens=4, temperature=2.5), "temperature"),
        (SamplingParams(max_tokens=4, top_p=0), "top_p"),
        (SamplingParams(max_tokens=4, stop=["a", "b", "c", "d", "e"]), "stop"),
        (SamplingParams(max_tokens=4, presence_penalty=3), "presence_penalty"),
        (SamplingParams(max_tokens=5000), "messages"),
    ],
)
def test_bad_params_raise_invalid_request(
    backend: HFBackend, base_model: ServedModel, params: SamplingParams, param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        backend.chat(base_model, HI, params)
    assert info.value.param == param


def test_prompt_longer_than_the_context_is_rejected(backend: HFBackend, base_model: ServedModel) -> None:
    with pytest.raises(InvalidRequest) as info:
        backend.complete(base_model, "x" * 2000, SamplingParams())
    assert (info.value.param, info.value.code) == ("prompt", "context_length_exceeded")


def test_image_parts_are_rejected(backend: HFBackend, base_model: ServedModel) -> None:
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    with pytest.raises(InvalidRequest) as info:
        backend.chat(base_model, image, GREEDY)
    assert info.value.param == "messages[0].content[0]"


def test_adapter_shares_the_base_and_changes_answers(
    backend: HFBackend, base_model: ServedModel, tiny: BaseModel, adapter_dir: str
) -> None:
    fine_tuned = ServedModel(id="ft:openft/tiny-chat:openft:demo:abc123", base=tiny, adapter_dir=adapter_dir)
    checkpoint = ServedModel(id=f"{fine_tuned.id}:ckpt-step-2", base=tiny, adapter_dir=adapter_dir)
    params = SamplingParams(max_tokens=20, temperature=0)
    before = backend.chat(base_model, HI, params)

    tuned = backend.chat(fine_tuned, HI, params)
    after = backend.chat(base_model, HI, params)
    tuned_again = backend.chat(fine_tuned, HI, params)
    from_checkpoint = backend.chat(checkpoint, HI, params)

    assert tuned.choices[0].text != before.choices[0].text
    assert after == before
    assert tuned_again == tuned
    assert from_checkpoint == tuned  # same weights, a second adapter name on the same base
    assert backend.base_loads[TINY_CHAT] == 1
    assert backend.adapter_loads[fine_tuned.id] == 1
    assert backend.loaded() == {TINY_CHAT: sorted([fine_tuned.id, checkpoint.id])}
    assert ":" not in adapter_name(fine_tuned.id) and "." not in adapter_name(fine_tuned.id)


def test_unload_adapter_then_base(models_dir: Path, tiny: BaseModel, adapter_dir: str) -> None:
    backend = HFBackend(models_dir, device="cpu")
    base_model = ServedModel(id=TINY_CHAT, base=tiny, adapter_dir=None)
    first = ServedModel(id="ft:openft/tiny-chat:openft::one", base=tiny, adapter_dir=adapter_dir)
    second = ServedModel(id="ft:openft/tiny-chat:openft::two", base=tiny, adapter_dir=adapter_dir)
    plain = backend.chat(base_model, HI, GREEDY)
    tuned = backend.chat(first, HI, GREEDY)
    backend.chat(second, HI, GREEDY)

    backend.unload(first.id)
    assert backend.loaded() == {TINY_CHAT: [second.id]}
    assert backend.chat(second, HI, GREEDY) == tuned
    backend.unload(second.id)  # the last adapter: back to the plain model
    assert backend.loaded() == {TINY_CHAT: []}
    assert backend.chat(base_model, HI, GREEDY) == plain
    backend.unload("ft:never-loaded")
    backend.unload(TINY_CHAT)
    assert backend.loaded() == {}

    assert backend.chat(first, HI, GREEDY) == tuned  # loads again on demand
    assert backend.base_loads[TINY_CHAT] == 2
    assert backend.adapter_loads[first.id] == 2


def test_missing_adapter_is_model_not_found_and_keeps_the_base(
    backend: HFBackend, base_model: ServedModel, tiny: BaseModel, tmp_path: Path
) -> None:
    loads = backend.base_loads[TINY_CHAT]
    gone = ServedModel(id="ft:openft/tiny-chat:openft::gone", base=tiny, adapter_dir=str(tmp_path))

    with pytest.raises(ModelNotFound):
        backend.chat(gone, HI, GREEDY)
    backend.chat(base_model, HI, GREEDY)
    assert backend.base_loads[TINY_CHAT] == loads
