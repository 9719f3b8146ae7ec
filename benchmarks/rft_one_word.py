"""Reinforcement fine-tuning raises a grader's mean validation reward: "answer in one word".

Run from the repository root::

    .venv/bin/python benchmarks/rft_one_word.py [--model HuggingFaceTB/SmolLM2-135M-Instruct]
        [--epochs 3] [--batch-size 4] [--compute-multiplier 1.0] [--models-dir DIR] [--threads N]

The task: short factual questions (no instruction about length); a python grader, run in the
sandbox like any job's, rewards ``1 / number of words`` of the answer (1.0 for exactly one word,
0 for an empty answer). Training and validation questions are disjoint. The script writes the RFT
JSONL files, runs ``python -m openft.training spec.json`` (method ``reinforcement``, LoRA r=16,
seed 0, ``reasoning_effort="low"``: at most 32 new tokens) and reads the full validation mean reward
that the recipe reports before training (greedy decoding) and after the last step.

Prints a table and appends one JSON line to ``benchmarks/results.jsonl``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

GRADER = {
    "type": "python",
    "name": "one_word",
    "source": (
        "def grade(sample, item):\n"
        "    words = sample['output_text'].split()\n"
        "    return 1.0 / len(words) if words else 0.0\n"
    ),
}

TRAIN_QUESTIONS = [
    "What is the capital of France?",
    "What color is the sky on a clear day?",
    "Which planet do we live on?",
    "What animal says moo?",
    "What is frozen water called?",
    "What is the opposite of hot?",
    "Which fruit is yellow and curved?",
    "What do bees make?",
    "What is the largest ocean on Earth?",
    "Which metal is liquid at room temperature?",
    "What gas do plants absorb from the air?",
    "What is the capital of Japan?",
    "How many legs does a spider have?",
    "What color are most leaves?",
    "What do cows drink?",
    "Which season comes after winter?",
    "What is the closest star to Earth?",
    "What language is spoken in Brazil?",
    "What is the capital of Italy?",
    "Which organ pumps blood?",
    "What do you call a baby cat?",
    "What is the chemical symbol for gold?",
    "Which day comes after Monday?",
    "What is the tallest animal?",
    "What instrument has 88 keys?",
    "Which bird is a symbol of peace?",
    "What is the main ingredient of bread?",
    "What is the capital of Germany?",
    "Which month has 28 days?",
    "What do caterpillars turn into?",
    "What shape has three sides?",
    "Which planet is called the red planet?",
    "What is the fastest land animal?",
    "What do you use to write on a blackboard?",
    "What is the capital of Spain?",
    "What color do you get by mixing blue and yellow?",
    "What is the hardest natural substance?",
    "Which animal is known as the king of the jungle?",
    "What do pandas mostly eat?",
    "What is the boiling point of water in Celsius?",
]
VALID_QUESTIONS = [
    "What is the capital of England?",
    "What color is grass?",
    "What do fish breathe through?",
    "Which animal barks?",
    "What is the opposite of up?",
    "Which planet has rings?",
    "What is the capital of Russia?",
    "What do you call a young dog?",
    "What fruit keeps the doctor away?",
    "Which sense do ears give us?",
    "What is the largest mammal?",
    "What is H2O commonly called?",
    "Which continent is Egypt in?",
    "What is the color of snow?",
    "What do spiders spin?",
    "Which month comes after June?",
]


def write_jsonl(path: Path, questions: list[str]) -> None:
    with path.open("w") as f:
        for question in questions:
            f.write(json.dumps({"messages": [{"role": "user", "content": question}]}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--compute-multiplier", type=float, default=1.0)
    parser.add_argument("--learning-rate-multiplier", type=float, default=1.0)
    parser.add_argument("--models-dir", default=str(Path.home() / ".openft" / "models"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from openft.graders import parse_grader
    from openft.models.catalog import find_base_model
    from openft.training.spec import TrainingSpec

    base = find_base_model(args.model)
    if base is None:
        print(f"model {args.model} is not available offline", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="openft-rft-bench-"))
    write_jsonl(work / "train.jsonl", TRAIN_QUESTIONS)
    write_jsonl(work / "valid.jsonl", VALID_QUESTIONS)
    spec = TrainingSpec(
        job_id="benchmark-rft-one-word",
        method="reinforcement",
        base_model=base.id,
        models_dir=args.models_dir,
        training_file=str(work / "train.jsonl"),
        validation_file=str(work / "valid.jsonl"),
        output_dir=str(work / "out"),
        n_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate_multiplier=args.learning_rate_multiplier,
        learning_rate=base.lora_learning_rate * args.learning_rate_multiplier,
        seed=0,
        threads=args.threads,
        grader=parse_grader(GRADER),
        compute_multiplier=args.compute_multiplier,
        reasoning_effort="low",
        eval_interval=1000,
    )
    (work / "out").mkdir()
    spec.write(work / "spec.json")
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "openft.training", str(work / "spec.json")], cwd=ROOT)
    seconds = time.perf_counter() - started
    lines = [json.loads(line) for line in (work / "out" / "events.jsonl").read_text().splitlines()]
    if code != 0:
        print(f"training failed ({code}): {lines[-1]}", file=sys.stderr)
        return 1
    before = next(e["data"]["full_valid_mean_reward"] for e in lines if e.get("data", {}).get("step") == 0)
    metrics = [e for e in lines if e["kind"] == "metrics"]
    after = [m for m in metrics if "full_valid_mean_reward" in m][-1]["full_valid_mean_reward"]
    print(f"{'model':<40} {'steps':>6} {'valid reward before':>20} {'after':>8} {'seconds':>8}")
    print(f"{base.id:<40} {len(metrics):>6} {before:>20.3f} {after:>8.3f} {seconds:>8.0f}")
    record = {
        "benchmark": "rft_one_word",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": base.id,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "compute_multiplier": args.compute_multiplier,
        "steps": len(metrics),
        "full_valid_mean_reward_before": before,
        "full_valid_mean_reward_after": after,
        "train_mean_reward_per_step": [round(m["train_mean_reward"], 4) for m in metrics],
        "seconds": round(seconds, 1),
        "machine": platform.machine(),
        "output_dir": str(work / "out"),
    }
    with (HERE / "results.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
