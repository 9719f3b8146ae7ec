"""``openft files validate``: the exact report on a good and a bad file, token counts checked against
the training tokenization (the model's own tokenizer and chat template, one example at a time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openft.cli import app
from openft.jobs.hyperparameters import auto_n_epochs

ASSETS = Path(__file__).parents[2] / "assets"
TINY = "openft/tiny-chat"


@pytest.fixture
def home(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)
    monkeypatch.setenv("OPENFT_HOME", str(home))
    return home


def _training_token_counts(path: Path, models_dir: Path) -> list[int]:
    """Tokens per example as the training process counts them."""
    from openft.data.chat_data import tokenize_example
    from openft.models.catalog import find_base_model
    from openft.models.loader import load_tokenizer

    base = find_base_model(TINY)
    assert base is not None
    tokenizer = load_tokenizer(base, models_dir)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [len(tokenize_example(json.loads(line), tokenizer).input_ids) for line in lines]


def _validate(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["files", "validate", *args])
    return result.exit_code, result.output.splitlines()


def test_good_file_report(home: Path, models_dir: Path) -> None:
    path = ASSETS / "tiny_train.jsonl"
    counts = _training_token_counts(path, models_dir)
    n, total = len(counts), sum(counts)
    epochs = auto_n_epochs(n)
    code, lines = _validate(str(path), "--model", TINY)
    assert code == 0
    assert lines == [
        f"{path}: supervised examples for {TINY}",
        f"examples: {n}",
        f"tokens per example: min {min(counts)}, mean {round(total / n, 1)}, max {max(counts)}",
        f"total tokens: {total:,}",
        "examples over the context of 1,024 tokens: 0",
        "format errors: 0",
        f"warning: {n} example(s) have no system or developer message (lines 1, 2, 3, 4, 5, ...).",
        f"estimated trained tokens: {total * epochs:,} ({total:,} tokens x {epochs} epochs (auto))",
        "OK: ready to upload",
    ]


def test_bad_file_report_names_each_line(home: Path, models_dir: Path, tmp_path: Path) -> None:
    good = (ASSETS / "tiny_train.jsonl").read_text().splitlines()
    long_answer = "arr " * 300  # over tiny-chat's 1,024-token context
    lines = [
        good[0],
        '{"messages": [{"role": "user", "content": "hi"}',  # line 2: not JSON
        good[1],
        json.dumps({"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]}),
        json.dumps(
            {"messages": [{"role": "user", "content": "tell me"}, {"role": "assistant", "content": long_answer}]}
        ),
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    countable = tmp_path / "countable.jsonl"  # the lines a tokenizer can render
    countable.write_text("\n".join([lines[0], lines[2], lines[4]]) + "\n")
    counts = _training_token_counts(countable, models_dir)
    assert counts[2] > 1024

    code, out = _validate(str(path), "--n-epochs", "3")
    assert code == 1
    assert out[:5] == [
        f"{path}: supervised examples for {TINY}",
        "examples: 6",
        out[2],
        out[3],
        "examples over the context of 1,024 tokens: 1 (lines 5; they are truncated when trained on)",
    ]
    assert out[5:10] == [
        "format errors: 4",
        "  Line 2 is not valid JSON: Expecting ',' delimiter (column 48).",
        "  Line 4: message 1 has unknown role 'robot'; expected one of system, developer, user, assistant, tool, "
        "function.",
        "  Line 6: example has no assistant message; each example needs at least one to train on.",
        "  Training file has 6 example(s), but must have at least 10 examples",
    ]
    # Lines the chat template can render are counted (the unparsable line 2 is not).
    assert out[2].startswith("tokens per example: min ") and out[2].endswith(f", max {counts[2]:,}")
    assert int(out[3].removeprefix("total tokens: ").replace(",", "")) >= sum(counts)
    assert out[-1] == "NOT OK: fix the errors above before uploading"
    assert out[-2].startswith("estimated trained tokens: ") and out[-2].endswith(" x 3 epochs)")


def test_json_report_for_scripts(home: Path) -> None:
    result = CliRunner().invoke(app, ["files", "validate", str(ASSETS / "broken_line7.jsonl"), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["examples"] == 12
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(7, "unrecognized_role")]
    assert report["estimated_trained_tokens"] == report["tokens"]["total"] * report["n_epochs"]
