"""Grading of reinforcement-learning rollouts inside the training process.

The job's grader scores each sampled completion; python graders are sandboxed processes, so a few
run at once. Model graders judge with an in-process serving backend (base models only: a training
process has no registry of fine-tuned models); cosine similarity uses the bundled embedding model
when it is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from openft.data.chat_messages import TrainingDataError
from openft.errors import InvalidRequest
from openft.graders import GraderContext, make_sample, run_grader
from openft.graders.confinement import check_python_graders
from openft.graders.embeddings import available_embedder
from openft.graders.sandbox import SandboxLimits
from openft.graders.spec import sub_graders
from openft.training.failures import TrainingFailure
from openft.training.rollouts import Completion, Prompt
from openft.training.spec import TrainingSpec

GRADER_THREADS = 4


class Grading:
    """Grades completions with the job's grader, several at once (python graders are processes)."""

    def __init__(self, spec: TrainingSpec, models_dir: Path):
        if spec.grader is None:
            raise TrainingDataError("A reinforcement job needs a grader (method.reinforcement.grader).", param="method")
        self.grader = spec.grader
        allow_unconfined = spec.allow_unconfined_python_graders
        try:
            # The API refused such a job already; this holds if the machine changed since.
            check_python_graders(spec.grader, param="method.reinforcement.grader", allow_unconfined=allow_unconfined)
        except InvalidRequest as exc:
            raise TrainingFailure(exc.message, param=exc.param) from None
        self.context = GraderContext(
            judge=_local_judge(models_dir, spec.threads) if _needs_judge(spec.grader) else None,
            embedder=available_embedder(),
            hide=tuple(spec.private_dirs),
            limits=SandboxLimits(
                wall_seconds=spec.python_grader_timeout_seconds, cpu_seconds=spec.python_grader_timeout_seconds
            ),
            allow_unconfined=allow_unconfined,
        )
        self.pool = ThreadPoolExecutor(GRADER_THREADS, thread_name_prefix="grader")

    def rewards(self, prompt: Prompt, completions: Sequence[Completion]) -> tuple[list[float], int]:
        """Each completion's reward, and how many gradings failed (their reward is 0)."""
        results = list(
            self.pool.map(
                lambda c: run_grader(self.grader, make_sample(c.text), prompt.item, self.context), completions
            )
        )
        return [r.reward for r in results], sum(r.failed for r in results)

    def close(self) -> None:
        self.pool.shutdown()


def _needs_judge(grader: dict[str, Any]) -> bool:
    if grader["type"] in ("score_model", "label_model"):
        return True
    if grader["type"] == "multi":
        return any(_needs_judge(g) for g in sub_graders(grader).values())
    return False


def _local_judge(models_dir: Path, threads: int | None) -> Any:
    """A judge over an in-process serving backend: base models (and registered directories) only."""
    from openft.errors import ModelNotFound
    from openft.graders.judge import JudgeReply
    from openft.models.catalog import find_base_model
    from openft.serving.backend import ServedModel
    from openft.serving.hf import HFBackend

    backend = HFBackend(models_dir, threads=threads)

    def judge(model: str, messages: list[dict[str, str]], params: Any) -> JudgeReply:
        base = find_base_model(model)
        if base is None:
            raise ModelNotFound(f"The grader model `{model}` is not a base model available to training.")
        generation = backend.chat(ServedModel(id=model, base=base), messages, params)
        return JudgeReply(generation.choices[0].text, model, generation.prompt_tokens, generation.completion_tokens)

    return judge
