"""Graders: score a model's sample for a dataset item, as OpenAI's fine-tuning graders do.

``spec.parse_grader`` checks a grader object; ``runner.run_grader`` grades one sample with it
(string checks, text similarity, python in a sandbox, a local model as judge, and multi graders
with a formula). Nothing here imports torch: the API process runs graders too.
"""

from __future__ import annotations

from openft.graders.runner import GraderContext, GradeResult, run_grader
from openft.graders.sandbox import SandboxLimits
from openft.graders.spec import parse_grader
from openft.graders.template import make_sample

__all__ = ["GradeResult", "GraderContext", "SandboxLimits", "make_sample", "parse_grader", "run_grader"]
