"""DPO raises the chosen-over-rejected margin on held-out preference pairs: "answer like a pirate".

Run from the repository root::

    .venv/bin/python benchmarks/dpo_margin.py [--model HuggingFaceTB/SmolLM2-135M-Instruct]
        [--train-pairs 16] [--valid-pairs 8] [--epochs 2] [--batch-size 8] [--beta 0.1]
        [--lr-multiplier 4] [--logp] [--models-dir DIR] [--threads N]

The task: short factual questions, each with two answers carrying the same fact, one in a pirate's
voice (preferred) and one plain (non-preferred); an instruct model prefers the plain one before
training. Training and validation pairs are on disjoint questions (up to 48 and 16). The script
writes the DPO JSONL files, runs ``python -m openft.training spec.json`` (method ``dpo``, LoRA r=16,
seed 0, validation at each epoch's end) and reports, on the held-out pairs:

* the DPO reward margin and accuracy (``full_valid_rewards_margin``/``_accuracy`` of the last
  step; both are 0 before training by definition, as the policy starts equal to the reference);
* the model's own log-probability preference, mean ``log p(preferred) - log p(non_preferred)``:
  before = the reference's (the recipe reports it), after = before + reward margin / beta. With
  ``--logp`` the script also measures it directly, loading the base and the trained adapter, with
  the share of pairs where it is positive.

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
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (question, plain answer, pirate answer): the same fact, in two voices.
FACTS = [
    (
        "What is the capital of France?",
        "The capital of France is Paris.",
        "Arr, the capital o' France be Paris, matey!",
    ),
    ("What color is the sky on a clear day?", "The sky is blue.", "Arr, the sky be blue as the sea, matey!"),
    ("Which planet do we live on?", "We live on Earth.", "Arr, we be livin' on Earth, matey!"),
    ("What animal says moo?", "A cow says moo.", "Arr, 'tis the cow that says moo, matey!"),
    ("What is frozen water called?", "Frozen water is called ice.", "Arr, frozen water be called ice, matey!"),
    ("What is the opposite of hot?", "The opposite of hot is cold.", "Arr, the opposite o' hot be cold, matey!"),
    ("Which fruit is yellow and curved?", "A banana is yellow and curved.", "Arr, 'tis the banana, matey!"),
    ("What do bees make?", "Bees make honey.", "Arr, bees be makin' honey, matey!"),
    ("What is the largest ocean?", "The Pacific is the largest ocean.", "Arr, the Pacific be the biggest sea, matey!"),
    ("How many legs does a spider have?", "A spider has eight legs.", "Arr, a spider be havin' eight legs, matey!"),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo.", "Arr, the capital o' Japan be Tokyo, matey!"),
    ("What color are most leaves?", "Most leaves are green.", "Arr, most leaves be green, matey!"),
    ("Which season comes after winter?", "Spring comes after winter.", "Arr, spring be comin' after winter, matey!"),
    ("What is the closest star to Earth?", "The Sun is the closest star.", "Arr, the Sun be the closest star, matey!"),
    ("How many days are in a week?", "A week has seven days.", "Arr, a week be havin' seven days, matey!"),
    ("What do we call a baby dog?", "A baby dog is a puppy.", "Arr, a baby dog be a puppy, matey!"),
    ("What is two plus two?", "Two plus two is four.", "Arr, two plus two be four, matey!"),
    ("Which animal is known as the king of the jungle?", "The lion.", "Arr, 'tis the lion, matey!"),
    ("What do plants need from the sun?", "Plants need sunlight.", "Arr, plants be needin' sunlight, matey!"),
    (
        "What is the boiling point of water in Celsius?",
        "Water boils at 100 degrees.",
        "Arr, water boils at 100, matey!",
    ),
    ("How many continents are there?", "There are seven continents.", "Arr, there be seven continents, matey!"),
    ("What is the capital of Italy?", "The capital of Italy is Rome.", "Arr, the capital o' Italy be Rome, matey!"),
    ("What shape has three sides?", "A triangle has three sides.", "Arr, a triangle be havin' three sides, matey!"),
    ("What do cows produce that we drink?", "Cows produce milk.", "Arr, cows be givin' us milk, matey!"),
    (
        "Which bird is a symbol of peace?",
        "The dove is a symbol of peace.",
        "Arr, the dove be the bird o' peace, matey!",
    ),
    ("What is the tallest animal?", "The giraffe is the tallest animal.", "Arr, the giraffe be the tallest, matey!"),
    ("What is the capital of Spain?", "The capital of Spain is Madrid.", "Arr, the capital o' Spain be Madrid, matey!"),
    ("What gas do we breathe in?", "We breathe in oxygen.", "Arr, we be breathin' oxygen, matey!"),
    ("How many hours are in a day?", "A day has 24 hours.", "Arr, a day be havin' 24 hours, matey!"),
    (
        "What is the main language of Brazil?",
        "Brazilians speak Portuguese.",
        "Arr, Brazil be speakin' Portuguese, matey!",
    ),
    ("Which instrument has 88 keys?", "The piano has 88 keys.", "Arr, the piano be havin' 88 keys, matey!"),
    ("What do you call a young cat?", "A young cat is a kitten.", "Arr, a young cat be a kitten, matey!"),
    (
        "What is the capital of Germany?",
        "The capital of Germany is Berlin.",
        "Arr, Germany's capital be Berlin, matey!",
    ),
    ("What is the largest planet?", "Jupiter is the largest planet.", "Arr, Jupiter be the biggest planet, matey!"),
    ("Which month has the fewest days?", "February has the fewest days.", "Arr, February be the shortest, matey!"),
    ("What color is a ripe tomato?", "A ripe tomato is red.", "Arr, a ripe tomato be red, matey!"),
    (
        "How many wheels does a bicycle have?",
        "A bicycle has two wheels.",
        "Arr, a bicycle be havin' two wheels, matey!",
    ),
    ("What do bees live in?", "Bees live in a hive.", "Arr, bees be livin' in a hive, matey!"),
    ("What is the freezing point of water?", "Water freezes at 0 degrees.", "Arr, water freezes at 0, matey!"),
    ("Which animal has a trunk?", "The elephant has a trunk.", "Arr, the elephant be havin' a trunk, matey!"),
    (
        "What is the capital of England?",
        "The capital of England is London.",
        "Arr, England's capital be London, matey!",
    ),
    ("What do fish breathe with?", "Fish breathe with gills.", "Arr, fish be breathin' with gills, matey!"),
    ("How many sides does a square have?", "A square has four sides.", "Arr, a square be havin' four sides, matey!"),
    ("What falls from clouds when it rains?", "Water falls as rain.", "Arr, water be fallin' from the clouds, matey!"),
    ("What is the color of snow?", "Snow is white.", "Arr, snow be white, matey!"),
    ("Which organ pumps blood?", "The heart pumps blood.", "Arr, the heart be pumpin' blood, matey!"),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa.", "Arr, Canada's capital be Ottawa, matey!"),
    (
        "What do caterpillars become?",
        "Caterpillars become butterflies.",
        "Arr, caterpillars be turnin' to butterflies!",
    ),
    # held out below (validation)
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo.", "Arr, the capital o' Egypt be Cairo, matey!"),
    ("What color is grass?", "Grass is green.", "Arr, grass be green, matey!"),
    ("How many legs does a dog have?", "A dog has four legs.", "Arr, a dog be havin' four legs, matey!"),
    ("What do chickens lay?", "Chickens lay eggs.", "Arr, chickens be layin' eggs, matey!"),
    ("What is the capital of Russia?", "The capital of Russia is Moscow.", "Arr, Russia's capital be Moscow, matey!"),
    ("Which planet is known as the red planet?", "Mars is the red planet.", "Arr, Mars be the red planet, matey!"),
    ("What is ten minus three?", "Ten minus three is seven.", "Arr, ten minus three be seven, matey!"),
    ("What do pandas eat?", "Pandas eat bamboo.", "Arr, pandas be eatin' bamboo, matey!"),
    ("How many months are in a year?", "A year has twelve months.", "Arr, a year be havin' twelve months, matey!"),
    ("What is the capital of China?", "The capital of China is Beijing.", "Arr, China's capital be Beijing, matey!"),
    ("Which animal is the fastest on land?", "The cheetah is the fastest.", "Arr, the cheetah be the fastest, matey!"),
    ("What do you use to write on a blackboard?", "You use chalk.", "Arr, ye be usin' chalk, matey!"),
    ("What is the color of the sun?", "The sun looks yellow.", "Arr, the sun be yellow, matey!"),
    ("Which sense do ears give us?", "Ears give us hearing.", "Arr, ears be for hearin', matey!"),
    ("What is the capital of Greece?", "The capital of Greece is Athens.", "Arr, Greece's capital be Athens, matey!"),
    ("How many minutes are in an hour?", "An hour has sixty minutes.", "Arr, an hour be havin' sixty minutes, matey!"),
]
N_TRAIN = 48
SYSTEM = "You are a helpful assistant."


def write_pairs(path: Path, facts: list[tuple[str, str, str]]) -> None:
    lines = [
        {
            "input": {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": pirate}],
            "non_preferred_output": [{"role": "assistant", "content": plain}],
        }
        for q, plain, pirate in facts
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def logp_preference(model_id: str, models_dir: Path, valid_file: Path, adapter: Path | None) -> dict[str, float]:
    """Mean log p(preferred) - log p(non_preferred) over the pairs, and the share where it is positive."""
    import torch

    from openft.data.preference_data import load_preference_pairs
    from openft.models.loader import load_model_and_tokenizer
    from openft.training.common import resolve_base_model
    from openft.training.dpo_loss import sequence_logps

    base = resolve_base_model(model_id)
    model, tokenizer = load_model_and_tokenizer(base, models_dir, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    pairs, _ = load_preference_pairs(valid_file, tokenizer, 2048)
    diffs: list[float] = []
    with torch.no_grad():
        for first in range(0, len(pairs), 8):
            logps, _, _ = sequence_logps(model, pairs[first : first + 8], torch.device("cpu"))
            diffs += (logps[0] - logps[1]).tolist()
    return {"logp_margin": sum(diffs) / len(diffs), "logp_accuracy": sum(d > 0 for d in diffs) / len(diffs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--train-pairs", type=int, default=16)
    parser.add_argument("--valid-pairs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--lr-multiplier", type=float, default=4.0)
    parser.add_argument("--logp", action="store_true", help="also measure log p before/after directly")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / ".openft" / "models")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if not (0 < args.train_pairs <= N_TRAIN and 0 < args.valid_pairs <= len(FACTS) - N_TRAIN):
        sys.exit(f"--train-pairs must be 1-{N_TRAIN} and --valid-pairs 1-{len(FACTS) - N_TRAIN}")

    sys.path.insert(0, str(ROOT / "src"))
    from openft.models.loader import model_directory
    from openft.training.common import resolve_base_model
    from openft.training.spec import TrainingSpec

    base = resolve_base_model(args.model)
    model_directory(base, args.models_dir)  # convert or build once, outside the measurement
    work = Path(tempfile.mkdtemp(prefix="dpo-margin-"))
    train_file, valid_file = work / "train.jsonl", work / "valid.jsonl"
    write_pairs(train_file, FACTS[: args.train_pairs])
    write_pairs(valid_file, FACTS[N_TRAIN : N_TRAIN + args.valid_pairs])
    steps_per_epoch = -(-args.train_pairs // args.batch_size)
    spec = TrainingSpec(
        job_id="ftjob-dpo-margin",
        method="dpo",
        base_model=args.model,
        models_dir=str(args.models_dir),
        training_file=str(train_file),
        validation_file=str(valid_file),
        output_dir=str(work / "out"),
        n_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate_multiplier=args.lr_multiplier,
        learning_rate=base.lora_learning_rate * args.lr_multiplier,
        seed=0,
        threads=args.threads,
        beta=args.beta,
        keep_checkpoints=0,
        eval_every=steps_per_epoch,
    )
    spec.write(work / "spec.json")
    before = logp_preference(args.model, args.models_dir, valid_file, None) if args.logp else {}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "openft.training", str(work / "spec.json")], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"training failed:\n{proc.stderr[-3000:]}")
    events = [json.loads(line) for line in (work / "out" / "events.jsonl").read_text().splitlines()]
    metrics = [e for e in events if e["kind"] == "metrics"]
    reference = next(e["data"] for e in events if e["kind"] == "message" and "reference_valid_logp_margin" in e["data"])
    last = metrics[-1]
    after = logp_preference(args.model, args.models_dir, valid_file, work / "out" / "adapter") if args.logp else {}
    logp_before = reference["reference_valid_logp_margin"]
    result: dict[str, Any] = {
        "benchmark": "dpo_margin",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": platform.processor() or platform.machine(),
        "model": args.model,
        "train_pairs": args.train_pairs,
        "valid_pairs": args.valid_pairs,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "beta": args.beta,
        "learning_rate": spec.learning_rate,
        "steps": last["step"],
        "wall_seconds": round(wall, 1),
        "valid_reward_margin_before": 0.0,
        "valid_reward_accuracy_before": 0.0,
        "valid_reward_margin_after": last["full_valid_rewards_margin"],
        "valid_reward_accuracy_after": last["full_valid_rewards_accuracy"],
        "valid_dpo_loss_after": last["full_valid_loss"],
        "logp_margin_before": logp_before,
        "logp_margin_after": logp_before + last["full_valid_rewards_margin"] / args.beta,
        **{f"measured_{k}_before": v for k, v in before.items()},
        **{f"measured_{k}_after": v for k, v in after.items()},
    }
    print(f"{'held-out pairs':<44}{'before':>10}{'after':>10}")
    rows = [
        ("DPO reward margin (beta * log-ratio)", "valid_reward_margin"),
        ("DPO reward accuracy (margin > 0)", "valid_reward_accuracy"),
        ("mean log p(preferred) - log p(other)", "logp_margin"),
    ]
    if args.logp:
        rows += [
            ("measured log p margin", "measured_logp_margin"),
            ("measured share preferring", "measured_logp_accuracy"),
        ]
    for label, key in rows:
        print(f"{label:<44}{result[key + '_before']:>10.3f}{result[key + '_after']:>10.3f}")
    print(f"{result['steps']} steps in {result['wall_seconds']} s wall; work dir {work}")
    with (HERE / "results.jsonl").open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
