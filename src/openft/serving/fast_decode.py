"""A lean forward pass for Llama-architecture models on CPU: what ``BatchEngine`` runs instead of transformers'.

A decode step of a 135M-parameter model spends most of its time outside arithmetic when it goes through
transformers' modules (dispatch, hooks, cache bookkeeping, mask building per layer per token) and the
rest moving fp32 weights. This forward keeps the arithmetic and drops the rest:

* Torch ops called directly, per layer: one fused QKV matmul, one fused gate/up matmul, ``rms_norm``,
  rotary embedding from a table built once (transformers' own ``rotary_emb``, so the same numbers),
  ``scaled_dot_product_attention`` with grouped heads (no repeated keys), no per-layer mask building.
* Weights as ``precision`` says: ``fp32`` (the model's own numbers: greedy answers are the tokens
  transformers' forward gives), ``fp16`` (FBGEMM's packed fp16 matrices with fp32 activations and
  sums: half the bytes per token, for models whose weights no cache holds), ``bf16``, or ``int8``
  (weight-only, one scale per output channel, ``torch._weight_int8pack_mm`` on bf16 activations; the
  residual stream, norms, attention and LoRA stay fp32). The output layer is split in row blocks: one
  int8 matmul over a 49k-row matrix runs several times slower than the same rows in blocks.
* LoRA rows keep working: the base output comes from these weights, then ``LoraStack.apply`` adds
  each row's low-rank update for the projections its adapters target (q/k/v, o, gate/up, down), the
  same masked or gathered products as ``StackedLoraLinear``.
* The key/value cache (``KVCache``) is plain ``[rows, kv_heads, length, head_dim]`` tensors per layer
  that ``batch_cache`` joins and trims like transformers' ``DynamicCache``.

Models this does not cover (other architectures, attention or MLP biases, sliding windows, dynamic
RoPE) keep transformers' forward: ``FastLlama.refusal`` says why.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from openft.serving.lora_stack import LoraStack

Precision = Literal["fp32", "fp16", "bf16", "int8"]
_HEAD_BLOCK = 4096
"""Rows of the output layer per int8 matmul."""
_STATIC_ROPE = ("default", "linear", "llama3")
_ROOM = 128
"""Positions of key/value cache allocated ahead of need."""


class KVLayer:
    """One layer's cached keys and values, ``[rows, kv_heads, length, head_dim]``.

    They live at the front of buffers with room to grow along the length (``_ROOM`` positions at a
    time), so that a decode step writes its one new position in place instead of copying the whole
    cache (``torch.cat`` of the cache was the largest cost of a batched step after the weights).
    ``keys``/``values`` are views of the filled part; assigning them (``batch_cache`` joining or
    trimming rows) replaces the buffers.
    """

    def __init__(self) -> None:
        self._keys = torch.empty(0)
        self._values = torch.empty(0)
        self._filled = [0, 0]
        """Positions filled in the key and the value buffer (assigned one after the other)."""

    @property
    def keys(self) -> torch.Tensor:
        return self._keys[:, :, : self._filled[0]]

    @keys.setter
    def keys(self, keys: torch.Tensor) -> None:
        self._keys, self._filled[0] = keys, keys.shape[2]

    @property
    def values(self) -> torch.Tensor:
        return self._values[:, :, : self._filled[1]]

    @values.setter
    def values(self, values: torch.Tensor) -> None:
        self._values, self._filled[1] = values, values.shape[2]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add ``new`` positions (``[rows, kv_heads, new, head_dim]``) after the cached ones."""
        length = self._filled[0]
        end = length + keys.shape[2]
        if not length:
            self._keys, self._values = keys.contiguous(), values.contiguous()
        else:
            if end > self._keys.shape[2]:
                self._keys, self._values = _grown(self._keys, length, end), _grown(self._values, length, end)
            self._keys[:, :, length:end] = keys
            self._values[:, :, length:end] = values
        self._filled = [end, end]


def _grown(buffer: torch.Tensor, filled: int, needed: int) -> torch.Tensor:
    """A copy of ``buffer``'s first ``filled`` positions with room for ``needed`` and ``_ROOM`` more."""
    rows, heads, _, dim = buffer.shape
    grown = buffer.new_empty((rows, heads, needed + _ROOM, dim))
    grown[:, :, :filled] = buffer[:, :, :filled]
    return grown


class KVCache:
    """The key/value cache of ``FastLlama`` (the parts of ``DynamicCache`` that ``batch_cache`` uses)."""

    def __init__(self, layers: int) -> None:
        self.layers = [KVLayer() for _ in range(layers)]

    def batch_select_indices(self, index: torch.Tensor) -> None:
        for layer in self.layers:
            layer.keys, layer.values = layer.keys[index], layer.values[index]


class _Linear:
    """One (possibly fused) projection's base weights in the chosen precision."""

    def __init__(self, weights: list[torch.Tensor], precision: Precision, *, block: int | None = None) -> None:
        weight = torch.cat(weights, dim=0) if len(weights) > 1 else weights[0]
        self.precision = precision
        self.blocks: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        if precision == "fp16":
            # FBGEMM's packed fp16 matrix: half the bytes of fp32 per token, activations and sums in fp32.
            self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().contiguous(), None)
            self.fp16_bytes = weight.numel() * 2
            return
        parts = weight.split(block) if block else (weight,)
        for part in parts:
            if precision == "int8":
                scale = part.abs().amax(dim=1).clamp(min=1e-12) / 127
                quantized = torch.round(part / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
                self.blocks.append((quantized, scale.to(torch.bfloat16)))
            elif precision == "bf16":
                self.blocks.append((part.to(torch.bfloat16).contiguous(), None))
            else:
                self.blocks.append((part.detach().contiguous(), None))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W^T`` in fp32, for ``x`` of any leading shape."""
        if self.precision == "fp32":
            return F.linear(x, self.blocks[0][0])
        if self.precision == "fp16":
            out: torch.Tensor = torch.ops.quantized.linear_dynamic_fp16(x, self.packed)
            return out
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        outs = [torch._weight_int8pack_mm(flat, w, s) if s is not None else F.linear(flat, w) for w, s in self.blocks]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        return out.float().reshape(*x.shape[:-1], -1)

    @property
    def bytes(self) -> int:
        if self.precision == "fp16":
            return self.fp16_bytes
        return sum(w.numel() * w.element_size() + (0 if s is None else s.numel() * 2) for w, s in self.blocks)


class _Layer:
    def __init__(self, layer: Any, path: str, precision: Precision) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.path = path
        self.norm_in = layer.input_layernorm.weight.detach()
        self.norm_post = layer.post_attention_layernorm.weight.detach()
        self.qkv = _Linear([_base(attn.q_proj).weight, _base(attn.k_proj).weight, _base(attn.v_proj).weight], precision)
        self.o = _Linear([_base(attn.o_proj).weight], precision)
        self.gate_up = _Linear([_base(mlp.gate_proj).weight, _base(mlp.up_proj).weight], precision)
        self.down = _Linear([_base(mlp.down_proj).weight], precision)


class FastLlama:
    """The forward pass of one loaded Llama-architecture model (see the module docstring).

    Args:
        model: A transformers ``LlamaForCausalLM`` (weights read once; LoRA wrappers are looked through).
        lora: The model's adapter stack, whose current selection every forward applies.
        precision: The base weights' precision.
    """

    def __init__(self, model: Any, lora: LoraStack, precision: Precision) -> None:
        config = model.config
        self.lora = lora
        self.precision = precision
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = float(config.rms_norm_eps)
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        head = _base(model.lm_head).weight.detach()
        # Converting the weights is a model load's longest step after reading them (FBGEMM packs
        # SmolLM2's fp16 copies in 1.9 s on one core): the layers are converted on every core.
        with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
            head_done = pool.submit(_Linear, [head], precision, block=_HEAD_BLOCK if precision != "fp32" else None)
            paths = [f"model.layers.{i}" for i in range(len(inner.layers))]
            self.layers = list(pool.map(lambda layer, path: _Layer(layer, path, precision), inner.layers, paths))
            self.head = head_done.result()
        positions = torch.arange(config.max_position_embeddings, device=self.embed.device)[None]
        with torch.inference_mode():
            cos, sin = inner.rotary_emb(self.embed[:1].float(), positions)
        half = self.head_dim // 2
        self.cos = cos[0].float()
        self.sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1).float()
        """Signed so that the rotation is ``x * cos + x.roll(half) * sin`` (``_rotate``)."""

    @staticmethod
    def refusal(model: Any) -> str | None:
        """Why ``model`` needs transformers' forward (None: this one covers it)."""
        config = model.config
        if getattr(config, "model_type", None) != "llama":
            return f"architecture {getattr(config, 'model_type', None)!r}"
        if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
            return "biases"
        if getattr(config, "hidden_act", "silu") != "silu":
            return f"activation {config.hidden_act!r}"
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        if rope.get("rope_type", rope.get("type", "default")) not in _STATIC_ROPE:
            return f"RoPE type {rope.get('rope_type')!r}"
        if getattr(config, "sliding_window", None):
            return "sliding-window attention"
        return None

    @staticmethod
    def linear_weight_bytes(model: Any) -> int:
        """Bytes of ``model``'s linear weights as it holds them (the output layer included)."""
        linears = [_base(m) for m in model.modules() if isinstance(_base(m), torch.nn.Linear)]
        return sum(m.weight.numel() * m.weight.element_size() for m in {id(m): m for m in linears}.values())

    @property
    def weight_bytes(self) -> int:
        """Bytes of the converted weights this forward holds beyond the model's own."""
        if self.precision == "fp32":
            return 0
        linears = [self.head] + [x for layer in self.layers for x in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        return sum(linear.bytes for linear in linears)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Last-position logits (float32, ``[rows, vocab]``) of ``ids`` (``[rows, new]``), appending their
        keys and values to ``cache``; ``mask`` (``[rows, cached + new]``) has 0 on padding columns."""
        rows, new = ids.shape
        x = self.embed[ids].float()
        cos, sin = self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)  # [rows, new, 1, dim]
        attn_mask = _attention_mask(mask, new)
        q_width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
        lora = self.lora if self.lora.selection is not None else None
        for layer, kv in zip(self.layers, cache.layers, strict=True):
            h = F.rms_norm(x, (x.shape[-1],), layer.norm_in, self.eps)
            qkv = layer.qkv(h)
            if lora is not None:
                attn = layer.path + ".self_attn."
                q, k, v = qkv.split((q_width, kv_width, kv_width), dim=-1)
                qkv = torch.cat(
                    [
                        lora.apply(attn + "q_proj", h, q),
                        lora.apply(attn + "k_proj", h, k),
                        lora.apply(attn + "v_proj", h, v),
                    ],
                    dim=-1,
                )
            heads = qkv.view(rows, new, self.heads + 2 * self.kv_heads, self.head_dim)
            qk = _rotate(heads[:, :, : self.heads + self.kv_heads], cos, sin)  # queries and keys in one go
            q = qk[:, :, : self.heads].transpose(1, 2)
            k = qk[:, :, self.heads :].transpose(1, 2)
            v = heads[:, :, self.heads + self.kv_heads :].transpose(1, 2)
            kv.append(k, v)
            out = F.scaled_dot_product_attention(q, kv.keys, kv.values, attn_mask=attn_mask, enable_gqa=True)
            out = out.transpose(1, 2).reshape(rows, new, q_width)
            o = layer.o(out)
            if lora is not None:
                o = lora.apply(layer.path + ".self_attn.o_proj", out, o)
            x = x + o
            h = F.rms_norm(x, (x.shape[-1],), layer.norm_post, self.eps)
            gate, up = layer.gate_up(h).chunk(2, dim=-1)
            if lora is not None:
                mlp = layer.path + ".mlp."
                gate, up = lora.apply(mlp + "gate_proj", h, gate), lora.apply(mlp + "up_proj", h, up)
            act = F.silu(gate) * up
            down = layer.down(act)
            if lora is not None:
                down = lora.apply(layer.path + ".mlp.down_proj", act, down)
            x = x + down
        last = F.rms_norm(x[:, -1], (x.shape[-1],), self.norm, self.eps)
        logits = self.head(last)
        if lora is not None:
            logits = lora.apply("lm_head", last, logits)
        return logits


def fp16_kernel_available() -> bool:
    """Whether this PyTorch build has FBGEMM's fp16 matrices (x86 builds do; ARM's do not)."""
    return "fbgemm" in torch.backends.quantized.supported_engines


def _base(module: Any) -> Any:
    """The plain ``nn.Linear`` behind a LoRA wrapper."""
    return getattr(module, "base_layer", module)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: transformers' ``x * cos + rotate_half(x) * sin`` with the sign of
    ``rotate_half`` folded into ``sin`` (``-a * s == a * -s`` exactly), so one roll replaces two slices,
    a negation and a concatenation."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


def _attention_mask(mask: torch.Tensor, new: int) -> torch.Tensor | None:
    """The boolean ``[rows, 1, new, columns]`` mask of ``new`` queries (None: every column visible).

    Queries see the non-padding columns up to their own; a padding query also sees itself, so that no
    row of the softmax is empty (its output is never read, but NaN there would reach the cache).
    """
    columns = mask.shape[1]
    visible = mask.bool()[:, None, None, :]
    if new == 1:
        return None if bool(visible.all()) else visible
    causal = torch.ones(new, columns, dtype=torch.bool, device=mask.device).tril(columns - new)
    own = torch.zeros(new, columns, dtype=torch.bool, device=mask.device)
    own[:, columns - new :] = torch.eye(new, dtype=torch.bool, device=mask.device)
    return (causal[None, None] & visible) | own[None, None]
