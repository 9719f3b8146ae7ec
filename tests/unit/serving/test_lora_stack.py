"""The stacked LoRA forward on openft/tiny-chat gives PEFT's logits: rows of the base and of three adapters of
different ranks, alphas and targets in one batch, through both the dense and the gathered product."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.models.loader import load_model_and_tokenizer
from openft.serving.lora_stack import LoraStack, StackedLoraLinear
from openft.serving.lora_weights import UnsupportedAdapter, read_lora

ADAPTERS: dict[str, dict[str, Any]] = {
    "a": {"r": 2, "lora_alpha": 4, "target_modules": "all-linear"},
    "b": {"r": 8, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj", "down_proj"], "use_rslora": True},
    "c": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "rank_pattern": {"o_proj": 6}},
}
ROWS = [None, "a", "b", None, "c", "a"]


@pytest.fixture(scope="module")
def tiny() -> BaseModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return base


@pytest.fixture(scope="module")
def adapter_dirs(tiny: BaseModel, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("stacked")
    dirs = {}
    for seed, (name, options) in enumerate(ADAPTERS.items()):
        torch.manual_seed(seed)
        model, _ = load_model_and_tokenizer(tiny, models_dir)
        config = LoraConfig(init_lora_weights=False, task_type="CAUSAL_LM", **options)
        with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated is_gradient_checkpointing
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            get_peft_model(model, config).save_pretrained(root / name)
        dirs[name] = str(root / name)
    return dirs


@pytest.fixture(scope="module")
def peft_model(tiny: BaseModel, models_dir: Path, adapter_dirs: dict[str, str]) -> Any:
    from peft import PeftModel

    model, _ = load_model_and_tokenizer(tiny, models_dir)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        peft = PeftModel.from_pretrained(model, adapter_dirs["a"], adapter_name="a")
    for name in ("b", "c"):
        peft.load_adapter(adapter_dirs[name], adapter_name=name)
    return peft.eval()


@pytest.fixture()
def stack(tiny: BaseModel, models_dir: Path, adapter_dirs: dict[str, str]) -> LoraStack:
    model, _ = load_model_and_tokenizer(tiny, models_dir)
    model.eval()
    stack = LoraStack(model)
    for name, directory in adapter_dirs.items():
        stack.add(name, read_lora(directory, model))
    return stack


def _ids(rows: int) -> torch.Tensor:
    return torch.randint(4, 250, (rows, 7), generator=torch.Generator().manual_seed(0))


def _stacked_logits(stack: LoraStack, rows: list[str | None]) -> torch.Tensor:
    stack.select(rows)
    with torch.inference_mode():
        return stack.model(input_ids=_ids(len(rows))).logits


def _peft_logits(peft: Any, rows: list[str | None]) -> torch.Tensor:
    with torch.inference_mode():
        return peft(input_ids=_ids(len(rows)), adapter_names=[r or "__base__" for r in rows]).logits


@pytest.mark.parametrize("dense_max_adapters", [4, 0], ids=["dense", "gathered"])
def test_a_mixed_batch_gives_peft_logits(stack: LoraStack, peft_model: Any, dense_max_adapters: int) -> None:
    stack.dense_max_adapters = dense_max_adapters
    expected = _peft_logits(peft_model, ROWS)

    got = _stacked_logits(stack, ROWS)

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert (stack.selection.mask is not None) == (dense_max_adapters > 0)  # type: ignore[union-attr]
    plain = _stacked_logits(stack, [None] * len(ROWS))
    assert (got[1] - plain[1]).abs().max() > 1e-2  # the adapters really change the logits
    fewer = ["c", None, "a"]  # a batch whose rows come and go: other slots of the same stack
    torch.testing.assert_close(_stacked_logits(stack, fewer), _peft_logits(peft_model, fewer), rtol=1e-5, atol=1e-5)


def test_one_adapter_and_base_only_batches_give_peft_logits(stack: LoraStack, peft_model: Any) -> None:
    for rows in (["c", "c", "c"], [None, None]):
        torch.testing.assert_close(_stacked_logits(stack, rows), _peft_logits(peft_model, rows), rtol=1e-5, atol=1e-5)


def test_removing_adapters_rebuilds_the_stack_and_the_last_restores_the_plain_model(
    stack: LoraStack, peft_model: Any
) -> None:
    _stacked_logits(stack, ROWS)
    stack.remove("b")
    rows = [None, "a", "c", "a"]
    torch.testing.assert_close(_stacked_logits(stack, rows), _peft_logits(peft_model, rows), rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError):
        stack.select(["b", None])

    stack.remove("a")
    stack.remove("c")
    assert not any(isinstance(m, StackedLoraLinear) for m in stack.model.modules())
    torch.testing.assert_close(
        _stacked_logits(stack, [None, None]), _peft_logits(peft_model, [None, None]), rtol=1e-5, atol=1e-5
    )


def test_adapters_that_need_more_than_plain_lora_are_refused(tiny: BaseModel, models_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    model, _ = load_model_and_tokenizer(tiny, models_dir)
    config = LoraConfig(r=2, target_modules=["q_proj"], use_dora=True, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        get_peft_model(model, config).save_pretrained(tmp_path)
    plain, _ = load_model_and_tokenizer(tiny, models_dir)

    with pytest.raises(UnsupportedAdapter, match="use_dora"):
        read_lora(str(tmp_path), plain)
