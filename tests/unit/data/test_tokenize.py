"""openft.data.tokenize: token counts at tokenizer speed must equal what training tokenizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openft.data.tokenize import count_example_tokens

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = Path(__file__).resolve().parents[3] / "src" / "openft" / "examples"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def training_lengths(path: Path, models_dir: Path) -> list[int]:
    """What the supervised recipe tokenizes (untruncated), through transformers."""
    from openft.data.chat_data import load_chat_examples
    from openft.models.catalog import TINY_CHAT, find_base_model
    from openft.models.loader import load_tokenizer

    base = find_base_model(TINY_CHAT)
    assert base is not None
    examples, _ = load_chat_examples(path, load_tokenizer(base, models_dir), 10**9)
    return [len(e.input_ids) for e in examples]


@pytest.mark.parametrize("path", [ASSETS / "tiny_train.jsonl", ASSETS / "weights.jsonl", EXAMPLES / "pirate.jsonl"])
def test_counts_match_the_training_tokenization(path: Path, models_dir: Path) -> None:
    stats = count_example_tokens(path, "openft/tiny-chat", "supervised", models_dir=models_dir, batch_size=5)
    lengths = training_lengths(path, models_dir)
    assert stats.examples == len(lengths)
    assert (stats.min_tokens, stats.max_tokens, stats.total_tokens) == (min(lengths), max(lengths), sum(lengths))
    assert stats.mean_tokens == pytest.approx(sum(lengths) / len(lengths))
    assert stats.n_over_context == 0 and stats.n_skipped == 0


def test_tools_and_long_and_broken_lines(tmp_path: Path, models_dir: Path) -> None:
    short = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    long = {"messages": [{"role": "user", "content": "x" * 1500}, {"role": "assistant", "content": "ok"}]}
    with_tools = {**short, "tools": TOOLS}
    lines = [json.dumps(short), "{not json", "", json.dumps(long), json.dumps(with_tools), json.dumps([1])]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    stats = count_example_tokens(path, "openft/tiny-chat", "supervised", models_dir=models_dir)
    assert stats.examples == 3
    assert stats.context_length == 1024
    assert (stats.n_over_context, stats.lines_over_context) == (1, [4])
    assert (stats.n_skipped, stats.skipped_lines) == (2, [2, 6])
    # The byte-level tiny tokenizer makes each character one token, so the long line is > 1500 tokens.
    assert stats.max_tokens > 1500
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join([json.dumps(short), json.dumps(with_tools)]) + "\n")
    counted = count_example_tokens(clean, "openft/tiny-chat", "supervised", models_dir=models_dir)
    assert counted.total_tokens == sum(training_lengths(clean, models_dir))
    assert counted.max_tokens > counted.min_tokens  # the tools are rendered into the prompt


def test_dpo_counts_the_longer_completion(tmp_path: Path, models_dir: Path) -> None:
    line = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello there, friend"}],
        "non_preferred_output": [{"role": "assistant", "content": "Yo"}],
    }
    path = tmp_path / "dpo.jsonl"
    path.write_text(json.dumps(line) + "\n")
    sft = tmp_path / "sft.jsonl"
    sft.write_text(json.dumps({"messages": [*line["input"]["messages"], *line["preferred_output"]]}) + "\n")
    dpo = count_example_tokens(path, "openft/tiny-chat", "dpo", models_dir=models_dir)
    preferred = count_example_tokens(sft, "openft/tiny-chat", "supervised", models_dir=models_dir)
    assert dpo.examples == 1 and dpo.total_tokens == preferred.total_tokens


def test_unknown_model_or_method_is_a_value_error(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown base model"):
        count_example_tokens(ASSETS / "tiny_train.jsonl", "no/such-model", "supervised", models_dir=models_dir)
    with pytest.raises(ValueError, match="unknown method"):
        count_example_tokens(ASSETS / "tiny_train.jsonl", "openft/tiny-chat", "pretraining", models_dir=models_dir)


def test_counting_never_imports_torch_even_before_the_model_is_built(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from openft.data.tokenize import count_example_tokens; "
        f"s = count_example_tokens(Path({str(ASSETS / 'tiny_train.jsonl')!r}), 'openft/tiny-chat', 'supervised', "
        f"models_dir=Path({str(tmp_path / 'models')!r})); "
        "print(s.examples, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["12", "False"]
    assert (tmp_path / "models" / ".tokenizers" / "openft--tiny-chat" / "tokenizer.json").exists()
