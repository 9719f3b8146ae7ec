"""How a data-parallel run splits one job: equal shards covering every line, its share of the batch,
and output only from rank 0."""

from __future__ import annotations

from pathlib import Path

from openft.training.distributed import rank_spec, shard_lines
from openft.training.spec import TrainingSpec


def _lines(path: Path, n: int) -> None:
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(n)) + "\n")


def test_shards_are_equal_and_cover_every_line(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    _lines(data, 12)
    shards = [shard_lines(data, rank, 2) for rank in range(2)]
    assert [len(s) for s in shards] == [6, 6] and not set(shards[0]) & set(shards[1])
    _lines(data, 5)
    shards = [shard_lines(data, rank, 2) for rank in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert set(shards[0]) | set(shards[1]) == set(data.read_bytes().splitlines(keepends=True)) - {b"\n"}


def test_rank_specs_split_the_batch_and_keep_outputs_on_rank_0(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    _lines(data, 12)
    spec = TrainingSpec(
        job_id="ftjob-x",
        method="supervised",
        base_model="openft/tiny-chat",
        models_dir=str(tmp_path / "models"),
        training_file=str(data),
        validation_file=None,
        output_dir=str(tmp_path / "out"),
        n_epochs=1,
        batch_size=5,
        learning_rate_multiplier=1.0,
        learning_rate=1e-3,
        seed=1,
    )
    rank0, rank1 = rank_spec(spec, 0, 2), rank_spec(spec, 1, 2)
    assert rank0.batch_size == rank1.batch_size == 3
    assert rank0.output_dir == spec.output_dir and rank0.keep_checkpoints == spec.keep_checkpoints
    assert rank1.output_dir == str(tmp_path / "out/ddp/rank-1") and rank1.keep_checkpoints == 0
    assert Path(rank0.training_file).read_bytes() != Path(rank1.training_file).read_bytes()
