"""Graders and the ``/v1/fine_tuning/alpha/graders`` requests and responses (``openai.types.graders``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Grader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    """The name of the grader."""


class StringCheckGrader(_Grader):
    type: Literal["string_check"]
    input: str
    """The input text; may contain ``{{item.*}}`` / ``{{sample.*}}`` templates."""
    reference: str
    """The reference text; may contain templates."""
    operation: Literal["eq", "ne", "neq", "like", "ilike"]
    """``eq`` equal, ``ne`` (or ``neq``) not equal, ``like`` contains, ``ilike`` contains ignoring case."""


TextSimilarityMetric = Literal[
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class TextSimilarityGrader(_Grader):
    type: Literal["text_similarity"]
    input: str
    """The text being graded; may contain templates."""
    reference: str
    """The text being graded against; may contain templates."""
    evaluation_metric: TextSimilarityMetric


class PythonGrader(_Grader):
    type: Literal["python"]
    source: str = Field(max_length=256 * 1024)
    """Source code defining ``grade(sample, item) -> float``."""
    image_tag: str | None = None
    """Accepted for compatibility; the sandbox always runs the server's own Python."""


class EvalItem(BaseModel):
    """One input message of a model grader; ``content`` is text or a list of text parts."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system", "developer"]
    content: str | dict[str, Any] | list[dict[str, Any]]
    type: Literal["message"] | None = None


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    top_p: float | None = Field(default=None, ge=0, le=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_completions_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: str | None = None


class ScoreModelGrader(_Grader):
    type: Literal["score_model"]
    model: str
    """A base or fine-tuned model this server serves."""
    input: list[EvalItem]
    range: list[float] | None = Field(default=None, min_length=2, max_length=2)
    """The score is clamped into it; default ``[0, 1]``."""
    sampling_params: SamplingParams | None = None


class LabelModelGrader(_Grader):
    type: Literal["label_model"]
    model: str
    input: list[EvalItem]
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)


SingleGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Grader):
    type: Literal["multi"]
    graders: dict[str, SingleGrader] | list[SingleGrader] | SingleGrader
    """A map of name to grader (as in OpenAI's guides), a list, or one grader; formula variables are the
    map's keys, or the graders' ``name``s."""
    calculate_output: str = Field(max_length=2000)
    """A formula over the graders' rewards: ``+ - * / ^``, ``min max abs floor ceil exp sqrt log``."""


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader | MultiGrader,
    Field(discriminator="type"),
]


class GraderRunParams(BaseModel):
    """``POST /v1/fine_tuning/alpha/graders/run``."""

    grader: dict[str, Any]
    """One of the graders above; checked by ``graders.spec.parse_grader`` so errors name the field."""
    model_sample: str
    """Fills the ``sample`` namespace: ``output_text``, and ``output_json`` when it parses as JSON."""
    item: dict[str, Any] | None = None
    """Fills the ``item`` namespace."""


class GraderValidateParams(BaseModel):
    """``POST /v1/fine_tuning/alpha/graders/validate``."""

    grader: dict[str, Any]


class GraderRunErrors(BaseModel):
    formula_parse_error: bool = False
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    invalid_variable_error: bool = False
    other_error: bool = False
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    model_grader_server_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_server_error_details: str | None = None


class GraderRunMetadata(BaseModel):
    name: str
    type: str
    errors: GraderRunErrors
    execution_time: float
    scores: dict[str, Any]
    token_usage: dict[str, int] | None
    """OpenAI types it an integer, but returns ``{prompt_tokens, completion_tokens, total_tokens, cached_tokens}``."""
    sampled_model_name: str | None


class GraderRunResponse(BaseModel):
    reward: float
    metadata: GraderRunMetadata
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]


class GraderValidateResponse(BaseModel):
    grader: dict[str, Any]
