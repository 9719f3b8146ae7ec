"""Write a merged transformers model as one GGUF file, for llama.cpp, Ollama and LM Studio.

Written with the ``gguf`` package's writer, no compiled tool. Llama-family models (``llama`` and
``mistral`` in transformers) become llama.cpp's ``llama`` architecture and Qwen2 its ``qwen2``:
llama.cpp's hyperparameter keys, its tensor names, and, for ``llama``, its Q/K row order. llama.cpp
rotates adjacent pairs of each attention head where transformers rotates the two halves, so each
head's Q and K rows (and biases) are interleaved to match (Qwen2 rotates halves in llama.cpp too).
2-D weights are stored as ``f16``, ``bf16`` or ``q8_0`` (blocks of 32 int8 with one f16 scale;
a matrix whose rows are not a multiple of 32 long stays f16); norms and biases stay f32. Tied
embeddings are written once, as ``token_embd``: llama.cpp uses it as the output layer when
``output`` is absent.

Anything else (another architecture, RoPE scaling other than linear, MLP biases, an unknown tensor)
is refused with ``InvalidRequest`` rather than written wrong.

Against the served fp32 model, on SmolLM2-135M-Instruct (logits up to about 39), the largest logit
difference is 0.04 for f16, 0.28 for bf16 and 1.3 for q8_0: f16 gives the served greedy answers,
q8_0 may change a few tokens.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

import gguf
from gguf import quants

from openft.errors import InvalidRequest
from openft.serving.gguf_vocab import GGUFVocab, unsupported

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedModel

Quantization = Literal["f16", "bf16", "q8_0"]
QUANTIZATIONS: tuple[str, ...] = ("f16", "bf16", "q8_0")


def is_quantization(value: str) -> TypeGuard[Quantization]:
    """Whether ``value`` names a quantization ``write_gguf`` writes."""
    return value in QUANTIZATIONS


# transformers model_type -> llama.cpp architecture.
_ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}

_LAYER = r"model\.layers\.(\d+)\."
_TENSOR_NAMES = [
    (re.compile(r"model\.embed_tokens\.weight"), "token_embd.weight"),
    (re.compile(r"model\.norm\.weight"), "output_norm.weight"),
    (re.compile(r"lm_head\.weight"), "output.weight"),
    (re.compile(_LAYER + r"input_layernorm\.weight"), r"blk.\1.attn_norm.weight"),
    (re.compile(_LAYER + r"post_attention_layernorm\.weight"), r"blk.\1.ffn_norm.weight"),
    (re.compile(_LAYER + r"self_attn\.q_proj\.(weight|bias)"), r"blk.\1.attn_q.\2"),
    (re.compile(_LAYER + r"self_attn\.k_proj\.(weight|bias)"), r"blk.\1.attn_k.\2"),
    (re.compile(_LAYER + r"self_attn\.v_proj\.(weight|bias)"), r"blk.\1.attn_v.\2"),
    (re.compile(_LAYER + r"self_attn\.o_proj\.(weight|bias)"), r"blk.\1.attn_output.\2"),
    (re.compile(_LAYER + r"mlp\.gate_proj\.weight"), r"blk.\1.ffn_gate.weight"),
    (re.compile(_LAYER + r"mlp\.up_proj\.weight"), r"blk.\1.ffn_up.weight"),
    (re.compile(_LAYER + r"mlp\.down_proj\.weight"), r"blk.\1.ffn_down.weight"),
]
Q8_0_BLOCK = 32


def _rope(config: Any) -> tuple[float, str, float | None]:
    """``(theta, scaling type, scaling factor)`` from a transformers 4 or 5 config."""
    params = dict(getattr(config, "rope_scaling", None) or {})
    params.update(getattr(config, "rope_parameters", None) or {})
    theta = float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    kind = params.get("rope_type") or params.get("type") or "default"
    factor = params.get("factor")
    return theta, str(kind), float(factor) if factor is not None else None


def gguf_architecture(config: Any) -> str:
    """llama.cpp's architecture for a transformers ``config``.

    Raises:
        InvalidRequest: an architecture or a setting this writer cannot express.
    """
    arch = _ARCHITECTURES.get(getattr(config, "model_type", ""))
    if arch is None:
        raise unsupported(
            f"the model is a {getattr(config, 'model_type', 'unknown')!r} model; "
            f"only {sorted(_ARCHITECTURES)} (llama.cpp's llama and qwen2) can be written."
        )
    _, kind, _ = _rope(config)
    if kind not in ("default", "linear"):
        raise unsupported(f"RoPE scaling {kind!r} is not supported (only none or linear).")
    if getattr(config, "mlp_bias", False):
        raise unsupported("MLP biases have no place in llama.cpp's llama architecture.")
    return arch


def _context_length(config: Any) -> int:
    context = int(config.max_position_embeddings)
    window = getattr(config, "sliding_window", None)
    if config.model_type == "mistral" and window:
        # llama.cpp's llama architecture attends to the whole context: stating the window as the
        # context keeps every prompt it accepts exactly as the model was trained.
        context = min(context, int(window))
    return context


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _gguf_name(hf_name: str) -> str:
    for pattern, template in _TENSOR_NAMES:
        if pattern.fullmatch(hf_name):
            return pattern.sub(template, hf_name)
    raise unsupported(f"the tensor {hf_name!r} has no llama.cpp name.")


def _interleave_rope_halves(data: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from transformers' rotate-halves layout to llama.cpp's adjacent pairs:
    rows ``[0..d/2) + [d/2..d)`` of a head become ``0, d/2, 1, d/2+1, ...``."""
    rest = data.shape[1:]
    return data.reshape(heads, 2, data.shape[0] // heads // 2, *rest).swapaxes(1, 2).reshape(data.shape)


def _tensor_type(data: np.ndarray, quantization: Quantization) -> gguf.GGMLQuantizationType:
    kinds = gguf.GGMLQuantizationType
    if data.ndim < 2:
        return kinds.F32
    if quantization == "bf16":
        return kinds.BF16
    if quantization == "q8_0" and data.shape[-1] % Q8_0_BLOCK == 0:
        return kinds.Q8_0
    return kinds.F16


def _file_type(quantization: Quantization) -> int:
    kinds = gguf.LlamaFileType
    return {"f16": kinds.MOSTLY_F16, "bf16": kinds.MOSTLY_BF16, "q8_0": kinds.MOSTLY_Q8_0}[quantization]


def _tensors(model: PreTrainedModel, arch: str) -> list[tuple[str, np.ndarray]]:
    """``(llama.cpp name, f32 array)`` for every weight, Q/K reordered for ``llama``."""
    import torch

    config = model.config
    state = model.state_dict()
    embed = state.get("model.embed_tokens.weight")
    head = state.get("lm_head.weight")
    tied = head is not None and embed is not None and torch.equal(head, embed)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    out: list[tuple[str, np.ndarray]] = []
    for hf_name, tensor in state.items():
        if tied and hf_name == "lm_head.weight":
            continue
        name = _gguf_name(hf_name)
        data = tensor.detach().to(device="cpu", dtype=torch.float32).numpy()
        if arch == "llama" and ".attn_q." in name:
            data = _interleave_rope_halves(data, heads)
        elif arch == "llama" and ".attn_k." in name:
            data = _interleave_rope_halves(data, kv_heads)
        out.append((name, data))
    return out


class _Writer(gguf.GGUFWriter):
    """``gguf.GGUFWriter`` that also writes an empty array, which the GGUF format allows and llama.cpp
    needs for a tokenizer without merges (its ``gpt2`` tokenizer requires the key to exist)."""

    def _pack_val(self, val: Any, vtype: gguf.GGUFValueType, add_vtype: bool, sub_type: Any = None) -> bytes:
        if vtype == gguf.GGUFValueType.ARRAY and sub_type is not None and len(val) == 0:
            head = self._pack("I", vtype) if add_vtype else b""
            return head + self._pack("I", sub_type) + self._pack("Q", 0)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


def _write_hyperparameters(writer: _Writer, config: Any, vocab_size: int, quantization: Quantization) -> None:
    theta, kind, factor = _rope(config)
    heads = config.num_attention_heads
    head_dim = _head_dim(config)
    writer.add_context_length(_context_length(config))
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_rope_freq_base(theta)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if kind == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(factor)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(vocab_size)
    writer.add_file_type(_file_type(quantization))
    if quantization == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_vocab(writer: _Writer, vocab: GGUFVocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_key_value(
        gguf.Keys.Tokenizer.MERGES, vocab.merges, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.STRING
    )
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unknown": writer.add_unk_token_id,
        "padding": writer.add_pad_token_id,
    }
    for key, token_id in vocab.special_ids.items():
        adders[key](token_id)
    writer.add_add_space_prefix(False)  # gguf_vocab refuses a tokenizer that adds one
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def write_gguf(
    model: PreTrainedModel,
    vocab: GGUFVocab,
    path: Path,
    *,
    quantization: str,
    name: str,
    base_model: str | None = None,
) -> None:
    """Write ``model`` (merged transformers weights) and ``vocab`` to the GGUF file ``path``.

    Raises:
        InvalidRequest: an architecture, setting or tensor llama.cpp's format cannot hold.
    """
    if not is_quantization(quantization):
        raise InvalidRequest(
            f"Unknown GGUF quantization {quantization!r}; expected one of {list(QUANTIZATIONS)}.", param="quantization"
        )
    import torch

    config = model.config
    arch = gguf_architecture(config)
    embeddings = model.get_input_embeddings().weight
    assert isinstance(embeddings, torch.Tensor)  # nn.Module types its attributes as Tensor | Module
    rows = embeddings.shape[0]
    if rows != len(vocab.tokens):
        raise unsupported(f"the model has {rows} token embeddings but the tokenizer describes {len(vocab.tokens)}.")
    tensors = _tensors(model, arch)  # before opening the file: an unknown tensor refuses the export
    writer = _Writer(path, arch)
    writer.add_type("model")
    writer.add_name(name)
    if base_model and base_model != name:
        writer.add_base_model_count(1)
        writer.add_base_model_name(0, base_model)
    _write_hyperparameters(writer, config, len(vocab.tokens), quantization)
    _write_vocab(writer, vocab)
    for tensor_name, data in tensors:
        qtype = _tensor_type(data, quantization)
        writer.add_tensor(tensor_name, quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
