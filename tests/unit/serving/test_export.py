"""``export_model`` and ``openft models export``: a peft export PEFT (and vLLM) can load, a merged
export plain transformers can load, both giving the same logits as base + adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import pytest
import torch
import typer
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from openft.cli import export as export_cli
from openft.errors import InvalidRequest
from openft.models.catalog import TINY_CHAT, BaseModel, find_base_model
from openft.models.loader import load_model_and_tokenizer
from openft.serving.backend import ServedModel
from openft.serving.export import MARKER, export_model
from openft.store import open_store
from openft.store.rows import JobRow

FT_ID = "ft:openft/tiny-chat:personal::abcdefgh"
CHAT = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"}]


@pytest.fixture(scope="module")
def tiny() -> BaseModel:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    return base


@pytest.fixture(scope="module")
def adapter_dir(tiny: BaseModel, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(tiny, models_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    directory = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # as the trainer does
    return directory


@pytest.fixture(scope="module")
def served(tiny: BaseModel, adapter_dir: Path) -> ServedModel:
    return ServedModel(id=FT_ID, base=tiny, adapter_dir=str(adapter_dir))


@pytest.fixture(scope="module")
def input_ids(tiny: BaseModel, models_dir: Path) -> torch.Tensor:
    _, tokenizer = load_model_and_tokenizer(tiny, models_dir)
    return tokenizer.apply_chat_template(CHAT, return_tensors="pt", return_dict=True)["input_ids"]


def _logits(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.fixture(scope="module")
def reference_logits(tiny: BaseModel, models_dir: Path, adapter_dir: Path, input_ids: torch.Tensor) -> torch.Tensor:
    model, _ = load_model_and_tokenizer(tiny, models_dir)
    return _logits(PeftModel.from_pretrained(model, adapter_dir), input_ids)


def test_peft_export_loads_with_peft_and_names_the_catalog_base(
    served: ServedModel,
    tiny: BaseModel,
    models_dir: Path,
    tmp_path: Path,
    input_ids: torch.Tensor,
    reference_logits: torch.Tensor,
) -> None:
    out = export_model(served, models_dir, tmp_path / "peft", fmt="peft")

    assert out == tmp_path / "peft"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", MARKER} <= {
        p.name for p in out.iterdir()
    }
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == TINY_CHAT
    assert json.loads((out / MARKER).read_text()) == {"model": FT_ID, "base_model": TINY_CHAT, "format": "peft"}
    model, _ = load_model_and_tokenizer(tiny, models_dir)
    logits = _logits(PeftModel.from_pretrained(model, out), input_ids)
    torch.testing.assert_close(logits, reference_logits, atol=1e-5, rtol=0)
    assert AutoTokenizer.from_pretrained(out).chat_template


def test_merged_export_loads_with_plain_transformers(
    served: ServedModel,
    models_dir: Path,
    tmp_path: Path,
    input_ids: torch.Tensor,
    reference_logits: torch.Tensor,
) -> None:
    out = export_model(served, models_dir, tmp_path / "merged", fmt="merged")

    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= names
    assert not any(name.startswith("adapter_") for name in names)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert not isinstance(model, PeftModel)
    assert not any("lora" in name for name, _ in model.named_parameters())
    torch.testing.assert_close(_logits(model, input_ids), reference_logits, atol=1e-4, rtol=0)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    assert tokenizer.apply_chat_template(CHAT, return_tensors="pt", return_dict=True)["input_ids"].equal(input_ids)
    assert json.loads((out / MARKER).read_text())["format"] == "merged"


def test_base_model_is_refused(tiny: BaseModel, models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="Only fine-tuned models and checkpoints can be exported"):
        export_model(ServedModel(id=TINY_CHAT, base=tiny), models_dir, tmp_path / "out", fmt="peft")
    assert not (tmp_path / "out").exists()


def test_non_empty_output_is_refused_and_overwrite_replaces_only_a_previous_export(
    served: ServedModel,
    models_dir: Path,
    tmp_path: Path,
) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(InvalidRequest, match="not empty"):
        export_model(served, models_dir, foreign, fmt="peft")
    with pytest.raises(InvalidRequest, match="not a previous openft export"):
        export_model(served, models_dir, foreign, fmt="peft", overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    out = export_model(served, models_dir, empty, fmt="peft")  # an empty directory is fine
    with pytest.raises(InvalidRequest, match="not empty"):
        export_model(served, models_dir, out, fmt="peft")
    (out / "stale.txt").write_text("old")
    export_model(served, models_dir, out, fmt="peft", overwrite=True)
    assert not (out / "stale.txt").exists()
    assert (out / "adapter_config.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directories left


def _cli_with_a_job(served: ServedModel, models_dir: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """``openft models`` on ``home``, where a real store holds a succeeded job with ``served``'s adapter."""
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    monkeypatch.setenv("OPENFT_HOME", str(home))
    monkeypatch.delenv("OPENFT_DATABASE_URL", raising=False)
    # A real succeeded job in a real store, with its adapter where the worker would have put it.
    job_id = "ftjob-export0000000000000001"
    assert served.adapter_dir is not None
    shutil.copytree(served.adapter_dir, home / "jobs" / job_id / "adapter")
    open_store(f"sqlite:///{home / 'openft.db'}").insert_job(
        JobRow(
            id=job_id,
            organization_id="org-personal",
            model=TINY_CHAT,
            training_file="file-x",
            validation_file=None,
            status="succeeded",
            method={"type": "supervised"},
            hyperparameters={},
            seed=0,
            model_name=FT_ID,
            fine_tuned_model=FT_ID,
            created_at=0,
        )
    )
    app = typer.Typer()
    models_app = typer.Typer()
    export_cli.register(models_app)
    app.add_typer(models_app, name="models")
    return app


def test_cli_exports_and_prints_the_vllm_command(
    served: ServedModel,
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _cli_with_a_job(served, models_dir, tmp_path / "home", monkeypatch)

    result = CliRunner().invoke(app, ["models", "export", FT_ID, "--output", str(tmp_path / "out")])

    assert result.exit_code == 0, result.output
    assert f"vllm serve {TINY_CHAT} --enable-lora --lora-modules {FT_ID}={tmp_path / 'out'}\n" in result.output
    assert (tmp_path / "out" / "adapter_config.json").exists()


def test_cli_exports_gguf_and_prints_the_llama_cpp_and_ollama_commands(
    served: ServedModel,
    models_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _cli_with_a_job(served, models_dir, tmp_path / "home", monkeypatch)
    out = tmp_path / "my export"  # a space, so the printed lines must quote the path

    result = CliRunner().invoke(app, ["models", "export", FT_ID, "-o", str(out), "-f", "gguf", "-q", "q8_0"])

    assert result.exit_code == 0, result.output
    gguf_file = out / "openft-tiny-chat-personal-abcdefgh-q8_0.gguf"
    assert sorted(p.name for p in out.iterdir()) == sorted([gguf_file.name, MARKER])
    assert f"llama-cli -m '{gguf_file}' -cnv\n" in result.output
    modelfile = f"printf '%s\\n' 'FROM {gguf_file}' > Modelfile"
    assert f"{modelfile} && ollama create openft-tiny-chat-personal-abcdefgh -f Modelfile\n" in result.output
    assert gguf.GGUFReader(gguf_file).get_field("general.architecture").contents() == "llama"
    assert json.loads((out / MARKER).read_text())["quantization"] == "q8_0"

    refused = CliRunner().invoke(app, ["models", "export", FT_ID, "-o", str(tmp_path / "x"), "-q", "bf16"])
    assert refused.exit_code == 1
    assert "A quantization applies to the gguf format only." in refused.output


def test_cli_reports_a_refused_export(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    monkeypatch.setenv("OPENFT_HOME", str(home))
    monkeypatch.delenv("OPENFT_DATABASE_URL", raising=False)
    app = typer.Typer()
    models_app = typer.Typer()
    export_cli.register(models_app)
    app.add_typer(models_app, name="models")

    result = CliRunner().invoke(app, ["models", "export", TINY_CHAT, "-o", str(tmp_path / "out"), "-f", "merged"])

    assert result.exit_code == 1
    assert "Only fine-tuned models and checkpoints can be exported" in result.output
