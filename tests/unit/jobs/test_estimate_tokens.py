"""jobs/estimate_tokens.py counts, without torch, exactly what the training recipes tokenize and keep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openft.data.tokenize import tokenizer_directory
from openft.jobs.estimate_tokens import TemplateTokenizer, count_trained_tokens
from openft.models.catalog import TINY_CHAT, find_base_model

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = Path(__file__).resolve().parents[3] / "src" / "openft" / "examples"


@pytest.fixture(scope="module")
def tokenizers(models_dir: Path) -> tuple[TemplateTokenizer, object]:
    """The estimate's tokenizer and the one training loads (transformers), for tiny-chat."""
    from openft.models.loader import load_tokenizer

    base = find_base_model(TINY_CHAT)
    assert base is not None
    return TemplateTokenizer(tokenizer_directory(base, models_dir)), load_tokenizer(base, models_dir)


def _supervised_training_count(path: Path, tokenizer: object, max_seq_len: int) -> tuple[int, int, list[int]]:
    """(examples kept, their tokens, truncated lines) as recipes/supervised.py's _load keeps them."""
    from openft.data.chat_data import IGNORE_INDEX, load_chat_examples

    examples, truncated = load_chat_examples(path, tokenizer, max_seq_len)
    kept = [e for e in examples if any(label != IGNORE_INDEX for label in e.labels[1:])]
    return len(kept), sum(len(e.input_ids) for e in kept), truncated


@pytest.mark.parametrize("name", ["tiny_train.jsonl", "tiny_valid.jsonl", "weights.jsonl"])
@pytest.mark.parametrize("max_seq_len", [10**6, 64, 20])
def test_supervised_counts_equal_training(
    tokenizers: tuple[TemplateTokenizer, object], name: str, max_seq_len: int
) -> None:
    light, training = tokenizers
    counted = count_trained_tokens(ASSETS / name, light, "supervised", max_seq_len)
    n_kept, n_tokens, truncated = _supervised_training_count(ASSETS / name, training, max_seq_len)
    assert (counted.n_trained_examples, counted.n_tokens) == (n_kept, n_tokens)
    assert counted.n_truncated == len(truncated) and counted.truncated_lines == truncated[:20]
    assert counted.n_examples == sum(1 for line in (ASSETS / name).read_text().splitlines() if line.strip())


def test_truncation_can_leave_nothing_to_train(tokenizers: tuple[TemplateTokenizer, object]) -> None:
    light, _ = tokenizers
    counted = count_trained_tokens(ASSETS / "weights.jsonl", light, "supervised", 64)
    assert counted.n_trained_examples == 0 and counted.n_truncated == 12


def test_dpo_pairs_equal_training(tokenizers: tuple[TemplateTokenizer, object], tmp_path: Path) -> None:
    from openft.data.preference_data import has_labels, load_preference_pairs

    light, training = tokenizers
    path = tmp_path / "dpo.jsonl"
    lines = [
        {
            "input": {"messages": [{"role": "user", "content": f"Say {i}" + " please" * (i * 3)}]},
            "preferred_output": [{"role": "assistant", "content": f"{i}"}],
            "non_preferred_output": [{"role": "assistant", "content": f"no {i}, never"}],
        }
        for i in range(12)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for max_seq_len in (10**6, 60):
        counted = count_trained_tokens(path, light, "dpo", max_seq_len)
        pairs, truncated = load_preference_pairs(path, training, max_seq_len)
        kept = [p for p in pairs if has_labels(p.chosen) and has_labels(p.rejected)]
        assert counted.n_trained_examples == len(kept)
        assert counted.n_tokens == sum(len(p.chosen.input_ids) + len(p.rejected.input_ids) for p in kept)
        assert counted.n_truncated == len(truncated)


def test_a_line_the_template_cannot_render_is_named(
    tokenizers: tuple[TemplateTokenizer, object], tmp_path: Path
) -> None:
    from openft.data.chat_messages import TrainingDataError

    light, _ = tokenizers
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    path.write_text(
        f"{good}\n{good}\n" + json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}) + "\n"
    )
    with pytest.raises(TrainingDataError, match="Line 3"):
        count_trained_tokens(path, light, "supervised", 1024)


def test_counting_does_not_import_torch(models_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from openft.data.tokenize import tokenizer_directory; "
        "from openft.jobs.estimate_tokens import TemplateTokenizer, count_trained_tokens; "
        "from openft.models.catalog import find_base_model; "
        f"tok = TemplateTokenizer(tokenizer_directory(find_base_model('{TINY_CHAT}'), Path({str(models_dir)!r}))); "
        f"count_trained_tokens(Path({str(EXAMPLES / 'pirate.jsonl')!r}), tok, 'supervised', 1024); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("max_seq_len", [10**6, 120])
def test_multi_turn_and_example_files_equal_training(
    tokenizers: tuple[TemplateTokenizer, object], tmp_path: Path, max_seq_len: int
) -> None:
    from chat_files import write_chat_file

    light, training = tokenizers
    many_turns = tmp_path / "turns.jsonl"
    write_chat_file(many_turns, 0.02, turns=6)
    for path in (many_turns, EXAMPLES / "pirate.jsonl"):
        counted = count_trained_tokens(path, light, "supervised", max_seq_len)
        n_kept, n_tokens, truncated = _supervised_training_count(path, training, max_seq_len)
        assert (counted.n_trained_examples, counted.n_tokens, counted.n_truncated) == (n_kept, n_tokens, len(truncated))
