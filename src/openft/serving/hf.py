"""``HFBackend``: chat and completions with transformers + PEFT, one copy of each base model in memory.

The CPU/dev backend (the vLLM one is for throughput). Importing this module is cheap; torch,
transformers and peft are imported when a model is first served.

* Each base model is loaded once (fp32 on CPU, bf16 on CUDA) under a per-base lock, which then
  serialises every generation on that base (no batching across requests yet).
* A fine-tuned model is a LoRA adapter loaded onto that same model with ``PeftModel.load_adapter``
  under a name derived from its id, and picked per request with ``set_adapter``; base-model requests
  run inside ``disable_adapter()``. ``unload(id)`` deletes one adapter, or a base with all of its adapters.
* Sampling follows OpenAI: ``temperature`` 0 is greedy (``n`` copies of one answer), no top-k, and
  ``presence_penalty`` / ``frequency_penalty`` are applied exactly as OpenAI documents them (to the
  logits of tokens already generated in this choice), not approximated by ``repetition_penalty``.
* ``stream_chat`` (in ``hf_stream``) sends chat text as it is generated, holding the same lock.
* ``seed`` seeds torch's global RNG for the one generate call (then restores it). Sampled generations
  share one process-wide RNG lock so that a concurrent request on another base cannot draw from the
  RNG mid-way; greedy generations never take it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openft.errors import InvalidRequest, ModelNotFound, OpenFTError
from openft.models.catalog import BaseModel
from openft.serving.backend import (
    Choice,
    FinishReason,
    Generation,
    SamplingParams,
    ServedModel,
    StreamDelta,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
MAX_N = 128
MAX_STOP = 4

# One RNG for the whole process: seeded sampling on one base must not be disturbed by sampling on another.
_RNG_LOCK = threading.Lock()


@dataclass
class _Loaded:
    """A base model in memory, with the adapters loaded onto it."""

    base: BaseModel
    model: Any
    """A ``PreTrainedModel``, or a ``PeftModel`` wrapping it once an adapter was loaded."""
    tokenizer: Any
    device: torch.device
    eos_ids: list[int]
    pad_id: int
    adapters: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Served model id -> (PEFT adapter name, adapter directory)."""


def adapter_name(model_id: str) -> str:
    """A PEFT adapter name for ``model_id``: module-attribute safe (no dots or colons) and collision free."""
    slug = re.sub(r"\W", "_", model_id)[:48]
    return f"{slug}_{hashlib.sha1(model_id.encode()).hexdigest()[:10]}"


class HFBackend:
    """The transformers + PEFT ``Backend``.

    Args:
        models_dir: Where built and converted base weights are cached (``$OPENFT_HOME/models``).
        threads: Torch intra-op threads (process-wide), set when the first model loads; None keeps
            torch's default. On a busy host use few: with 2 threads on a loaded 2-core machine a warm
            SmolLM2 chat took 4-8 s against 0.8 s with 1 thread.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
    """

    def __init__(self, models_dir: Path, *, threads: int | None = None, device: str | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.threads = threads
        self.device = device
        self.base_loads: Counter[str] = Counter()
        """Times each base model's weights were read from disk (1 per base unless it was unloaded)."""
        self.adapter_loads: Counter[str] = Counter()
        """Times each served model id's adapter was loaded."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._loaded: dict[str, _Loaded] = {}

    # -- Backend -------------------------------------------------------------------------------

    def chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
    ) -> Generation:
        """Answer ``messages`` (OpenAI chat format) through the model's chat template.

        Raises:
            InvalidRequest: Bad sampling parameters, unsupported content, a template that rejects the
                messages, or a prompt that does not fit the context window.
            ModelNotFound: The model's adapter directory has no adapter in it.
            OpenFTError: The base model or the adapter could not be loaded.
        """
        _check_params(params)
        with self._lock(model.base.id):
            state = self._ensure_base(model.base)
            ids = self._chat_ids(state, model, messages, tools)
            return self._generate(state, model, ids, params, prompt_param="messages")

    def stream_chat(
        self,
        model: ServedModel,
        messages: list[dict[str, Any]],
        params: SamplingParams,
        *,
        tools: list[dict[str, Any]] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamDelta]:
        """``chat`` token by token (see ``openft.serving.hf_stream``); raises what ``chat`` raises, up front."""
        from openft.serving.hf_stream import stream_chat

        return stream_chat(self, model, messages, params, tools=tools, cancel=cancel)

    def complete(self, model: ServedModel, prompt: str, params: SamplingParams) -> Generation:
        """Continue ``prompt`` as raw text (the tokenizer adds BOS where it normally does).

        Raises:
            InvalidRequest: Bad sampling parameters or a prompt that does not fit the context window.
            ModelNotFound: The model's adapter directory has no adapter in it.
            OpenFTError: The base model or the adapter could not be loaded.
        """
        _check_params(params)
        with self._lock(model.base.id):
            state = self._ensure_base(model.base)
            ids = state.tokenizer(prompt)["input_ids"]
            if not ids:
                bos = state.tokenizer.bos_token_id
                if bos is None:
                    raise InvalidRequest("The prompt is empty.", param="prompt")
                ids = [bos]
            return self._generate(state, model, ids, params, prompt_param="prompt")

    def unload(self, model_id: str) -> None:
        """Delete the adapter served as ``model_id``, or the base ``model_id`` with all its adapters.

        Unknown or already unloaded ids are ignored.
        """
        with self._guard:
            if model_id in self._loaded:
                base_id = model_id
            else:
                base_id = next((b for b, s in self._loaded.items() if model_id in s.adapters), "")
        if not base_id:
            return
        with self._lock(base_id):
            state = self._loaded.get(base_id)
            if state is None:
                return
            if base_id == model_id:
                self._drop_base(base_id)
            elif model_id in state.adapters:
                self._delete_adapter(state, model_id)

    # -- introspection ---------------------------------------------------------------------------

    def loaded(self) -> dict[str, list[str]]:
        """Base model id -> ids of the fine-tuned models whose adapters are loaded onto it."""
        with self._guard:
            return {base_id: sorted(s.adapters) for base_id, s in self._loaded.items()}

    # -- loading ---------------------------------------------------------------------------------

    def _lock(self, base_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(base_id, threading.RLock())

    def _ensure_base(self, base: BaseModel) -> _Loaded:
        """The loaded base (caller holds its lock), loading it on first use."""
        state = self._loaded.get(base.id)
        if state is not None:
            return state
        import torch

        from openft.models.loader import load_model_and_tokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        log.info("loading base model %s on %s", base.id, device, extra={"action": "base_loading"})
        try:
            loaded: tuple[Any, Any] = load_model_and_tokenizer(base, self.models_dir, dtype=dtype)
        except Exception as exc:
            raise OpenFTError(f"Could not load the base model `{base.id}`: {exc}") from exc
        model, tokenizer = loaded
        model.to(device)
        model.eval()
        eos: list[int] = []
        configured = model.generation_config.eos_token_id
        for token in [
            *(configured if isinstance(configured, list) else [configured]),
            tokenizer.eos_token_id,
        ]:
            if isinstance(token, int) and token not in eos:
                eos.append(token)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
        state = _Loaded(base=base, model=model, tokenizer=tokenizer, device=device, eos_ids=eos, pad_id=pad)
        with self._guard:
            self._loaded[base.id] = state
            self.base_loads[base.id] += 1
        return state

    def _ensure_adapter(self, state: _Loaded, served: ServedModel) -> str | None:
        """Load ``served``'s adapter onto its base if needed (caller holds the lock); its PEFT name."""
        if served.adapter_dir is None:
            return None
        known = state.adapters.get(served.id)
        if known is not None and known[1] == served.adapter_dir:
            return known[0]
        if known is not None:  # the id now points at another directory
            self._delete_adapter(state, served.id)
        if not (Path(served.adapter_dir) / "adapter_config.json").is_file():
            raise ModelNotFound(
                f"The model `{served.id}` does not exist or you do not have access to it "
                "(its adapter files are missing).",
                param="model",
            )
        from peft import PeftModel

        name = adapter_name(served.id)
        log.info("loading adapter %s onto %s", served.id, state.base.id, extra={"action": "adapter_loading"})
        try:
            if isinstance(state.model, PeftModel):
                state.model.load_adapter(served.adapter_dir, adapter_name=name, is_trainable=False)
            else:
                with warnings.catch_warnings():
                    # peft 0.21 reads transformers' deprecated is_gradient_checkpointing when wrapping.
                    warnings.filterwarnings(
                        "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
                    )
                    state.model = PeftModel.from_pretrained(
                        state.model, served.adapter_dir, adapter_name=name, is_trainable=False
                    )
        except Exception as exc:
            # A half-injected adapter leaves the shared weights in an unknown state: start afresh next time.
            self._drop_base(state.base.id)
            raise OpenFTError(f"Could not load the adapter of `{served.id}`: {exc}") from exc
        state.model.eval()
        with self._guard:
            state.adapters[served.id] = (name, served.adapter_dir)
            self.adapter_loads[served.id] += 1
        return name

    def _delete_adapter(self, state: _Loaded, model_id: str) -> None:
        name, _ = state.adapters[model_id]
        with self._guard:
            del state.adapters[model_id]
        if state.adapters:
            if name in state.model.active_adapters:
                state.model.set_adapter(next(iter(state.adapters.values()))[0])
            state.model.delete_adapter(name)
        else:  # the last one: remove the LoRA layers and go back to the plain model
            state.model = state.model.unload()
        log.info("unloaded adapter %s", model_id, extra={"action": "adapter_unloaded"})

    def _drop_base(self, base_id: str) -> None:
        with self._guard:
            state = self._loaded.pop(base_id, None)
        if state is None:
            return
        device = state.device
        del state
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
        log.info("unloaded base model %s", base_id, extra={"action": "base_unloaded"})

    # -- generation ------------------------------------------------------------------------------

    @staticmethod
    def _chat_ids(
        state: _Loaded, model: ServedModel, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        """The prompt token ids of ``messages`` rendered through the chat template (caller holds the lock)."""
        template = state.tokenizer.chat_template
        if not template:
            raise InvalidRequest(
                f"The model `{model.id}` has no chat template; use /v1/completions.", param="model"
            )
        rendered = _normalise_messages(messages, has_developer="developer" in str(template))
        try:
            text = state.tokenizer.apply_chat_template(
                rendered, tools=tools, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja2 errors raised by templates ("roles must alternate", ...)
            raise InvalidRequest(
                f"The chat template rejected the messages: {exc}", param="messages"
            ) from exc
        ids = state.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids)

    def _generate(
        self,
        state: _Loaded,
        served: ServedModel,
        ids: list[int],
        params: SamplingParams,
        *,
        prompt_param: str,
    ) -> Generation:
        """Run generate for ``ids`` (caller holds the base lock) and cut the answers into choices."""
        import torch

        prompt_tokens = len(ids)
        adapter, kwargs = self._prepare(state, served, ids, params, prompt_param=prompt_param)
        sample = params.temperature > 0
        stop = [s for s in params.stop if s]
        if sample:
            kwargs["num_return_sequences"] = params.n
        want_logprobs = params.logprobs is not None
        if want_logprobs:
            kwargs.update(output_scores=True, return_dict_in_generate=True)
        input_ids = torch.tensor([ids], device=state.device)
        with _rng(state, params):
            out = _run_generate(state, adapter, input_ids, kwargs)
        scores = None
        if want_logprobs:
            scores, out = out.scores, out.sequences

        choices: list[Choice] = []
        completion_tokens = 0
        for r, row in enumerate(out[:, prompt_tokens:].tolist()):
            choice, used = self._decode(state, list(row), stop)
            if scores is not None:
                entries = _token_logprobs(state, _kept_tokens(state, row), scores, r, params.logprobs or 0)
                if stop:
                    entries = _within(entries, choice.text)
                choice = dataclasses.replace(choice, logprobs=entries)
            choices.append(choice)
            completion_tokens += used
        if not sample:  # greedy: n identical answers
            choices *= params.n
            completion_tokens *= params.n
        return Generation(choices=choices, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def _prepare(
        self, state: _Loaded, served: ServedModel, ids: list[int], params: SamplingParams, *, prompt_param: str
    ) -> tuple[str | None, dict[str, Any]]:
        """Check the context window, load the adapter (caller holds the lock); its name and generate kwargs."""
        context = served.base.context_length
        prompt_tokens = len(ids)
        room = context - prompt_tokens
        max_new = params.max_tokens if params.max_tokens is not None else min(DEFAULT_MAX_TOKENS, room)
        if room < 1 or max_new > room:
            raise InvalidRequest(
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt_tokens + max(max_new, 1)} tokens ({prompt_tokens} in the {prompt_param}, "
                f"{max(max_new, 1)} in the completion). Please reduce the length of the {prompt_param} "
                "or completion.",
                param=prompt_param,
                code="context_length_exceeded",
            )
        adapter = self._ensure_adapter(state, served)
        sample = params.temperature > 0
        processors, criteria = _helpers(state.tokenizer, prompt_tokens, [s for s in params.stop if s], params)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "eos_token_id": state.eos_ids,
            "pad_token_id": state.pad_id,
            "logits_processor": processors,
            "stopping_criteria": criteria,
            "repetition_penalty": 1.0,
            "do_sample": sample,
        }
        if sample:
            # OpenAI has no top-k: switch off transformers' default of 50 (and any from generation_config).
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        return adapter, kwargs

    @staticmethod
    def _decode(state: _Loaded, row: list[int], stop: list[str]) -> tuple[Choice, int]:
        """One generated row -> its choice and the number of tokens it really generated."""
        hit_eos = False
        for i, token in enumerate(row):
            if token in state.eos_ids:
                row, hit_eos = row[:i], True
                break
        used = len(row) + int(hit_eos)
        if not hit_eos:  # a row stopped early by a stop string is padded up to the longest row
            while row and row[-1] == state.pad_id:
                row.pop()
            used = len(row)
        text = state.tokenizer.decode(row, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
        reason: FinishReason = "stop" if cuts or hit_eos else "length"
        return Choice(text=text, finish_reason=reason), used


def _kept_tokens(state: _Loaded, row: list[int]) -> list[int]:
    """The tokens of a generated row that make up its text: before the first EOS, without end padding."""
    for i, token in enumerate(row):
        if token in state.eos_ids:
            return row[:i]
    row = list(row)
    while row and row[-1] == state.pad_id:
        row.pop()
    return row


def _token_logprobs(state: _Loaded, tokens: list[int], scores: Any, row: int, top: int) -> list[dict[str, Any]]:
    """OpenAI ``logprobs.content`` entries for ``tokens`` from generate's per-step processed ``scores``.

    The log-probabilities are those of the distribution actually sampled from (after penalties,
    temperature and top-p); tokens that distribution excludes get OpenAI's floor of -9999.0.
    """
    import torch

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        text = state.tokenizer.decode([token_id])
        value = logprob if logprob > -9999.0 else -9999.0  # also maps -inf
        return {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}

    out: list[dict[str, Any]] = []
    for step, token in enumerate(tokens):
        logp = torch.log_softmax(scores[step][row].float(), dim=-1)
        item = entry(token, float(logp[token]))
        alternatives: list[dict[str, Any]] = []
        if top:
            values, indices = torch.topk(logp, k=min(top, logp.shape[-1]))
            alternatives = [entry(int(i), float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
        out.append({**item, "top_logprobs": alternatives})
    return out


def _within(entries: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The entries of the tokens that start inside ``text`` (the answer may be cut at a stop string)."""
    kept, length = [], 0
    for item in entries:
        if length >= len(text):
            break
        kept.append(item)
        length += len(item["token"])
    return kept


def _run_generate(state: _Loaded, adapter: str | None, input_ids: Any, kwargs: dict[str, Any]) -> Any:
    """``generate`` on the base weights or with ``adapter`` active (caller holds the base lock)."""
    import torch

    model = state.model
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    with torch.inference_mode():
        if adapter is None and state.adapters:  # a PeftModel: run the plain base weights
            with model.disable_adapter():
                return model.generate(**inputs, **kwargs)
        if adapter is not None:
            model.set_adapter(adapter)
        return model.generate(**inputs, **kwargs)


@contextlib.contextmanager
def _rng(state: _Loaded, params: SamplingParams) -> Iterator[None]:
    """For sampling: hold the process-wide RNG lock, seed torch's RNG (if asked), restore it afterwards."""
    if params.temperature <= 0:
        yield
        return
    import torch

    devices: list[int] = []
    if state.device.type == "cuda":
        devices = [torch.cuda.current_device() if state.device.index is None else state.device.index]
    with _RNG_LOCK, torch.random.fork_rng(devices=devices):
        if params.seed is not None:
            torch.manual_seed(params.seed)
        yield


def _check_params(params: SamplingParams) -> None:
    if params.max_tokens is not None and params.max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
    if not 1 <= params.n <= MAX_N:
        raise InvalidRequest(f"n must be between 1 and {MAX_N}.", param="n")
    if not 0 <= params.temperature <= 2:
        raise InvalidRequest("temperature must be between 0 and 2.", param="temperature")
    if not 0 < params.top_p <= 1:
        raise InvalidRequest("top_p must be greater than 0 and at most 1.", param="top_p")
    if len(params.stop) > MAX_STOP or not all(isinstance(s, str) for s in params.stop):
        raise InvalidRequest(f"stop must be a string or a list of up to {MAX_STOP} strings.", param="stop")
    if params.logprobs is not None and not 0 <= params.logprobs <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20.", param="top_logprobs")
    for name in ("presence_penalty", "frequency_penalty"):
        if not -2 <= getattr(params, name) <= 2:
            raise InvalidRequest(f"{name} must be between -2 and 2.", param=name)


def _normalise_messages(messages: list[dict[str, Any]], *, has_developer: bool) -> list[dict[str, Any]]:
    """Text-part lists -> strings, None content -> "", and ``developer`` -> ``system`` where unknown.

    Everything else (``tool_calls`` with their JSON-string ``arguments``, ``tool_call_id``, ``name``)
    reaches the chat template as the client sent it.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        msg = dict(message)
        content = msg.get("content")
        if content is None:
            msg["content"] = ""
        elif isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if not (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise InvalidRequest(
                        f"Content parts of type {kind!r} are not supported; use text.",
                        param=f"messages[{i}].content[{j}]",
                    )
                texts.append(part["text"])
            msg["content"] = "".join(texts)
        if msg.get("role") == "developer" and not has_developer:
            msg["role"] = "system"
        out.append(msg)
    return out


def _helpers(tokenizer: Any, prompt_len: int, stop: list[str], params: SamplingParams) -> tuple[Any, Any]:
    """The ``LogitsProcessorList`` (penalties) and ``StoppingCriteriaList`` (stop strings) for one call."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    stop_cls, penalty_cls = _helper_classes()
    processors = LogitsProcessorList()
    if params.presence_penalty or params.frequency_penalty:
        processors.append(penalty_cls(prompt_len, params.presence_penalty, params.frequency_penalty))
    criteria = StoppingCriteriaList()
    if stop:
        criteria.append(stop_cls(tokenizer, prompt_len, stop))
    return processors, criteria


@functools.cache
def _helper_classes() -> tuple[type, type]:
    """Defined on first use so that importing this module does not import torch or transformers."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class StopOnStrings(StoppingCriteria):
        """Done once the decoded tail of a row's generated tokens contains a stop string."""

        def __init__(self, tokenizer: Any, prompt_len: int, stop: list[str]) -> None:
            self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, stop
            # A token decodes to at least one byte, a character to at most four.
            self.window = 4 * max(len(s) for s in stop) + 4

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            start = max(self.prompt_len, input_ids.shape[1] - self.window)
            tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            done = [any(s in tail for s in self.stop) for tail in tails]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    class OpenAIPenalties(LogitsProcessor):
        """logit -= frequency_penalty * count + presence_penalty * (count > 0), over generated tokens."""

        def __init__(self, prompt_len: int, presence: float, frequency: float) -> None:
            self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            generated = input_ids[:, self.prompt_len :]
            if generated.shape[1] == 0:
                return scores
            counts = torch.zeros_like(scores)
            counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)

    return StopOnStrings, OpenAIPenalties
