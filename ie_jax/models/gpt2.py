"""GPT-2 (Radford et al. 2019) as a flax.nnx module: 124M (gpt2) to 1.5B (gpt2-xl).

Pre-LN blocks, learned absolute position embeddings, fused q/k/v projection, GELU (tanh approximation),
LM head tied to the token embedding. HF checkpoints store GPT-2's projections as `Conv1D`, whose weight is
already [in, out], the layout of `nnx.Linear.kernel`, so no weight here needs a transpose.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ie_jax.models.decoder import Decoder
from ie_jax.models.layers import attention
from ie_jax.models.stack import layer_block, scan_blocks, stacked_blocks

_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    layer_norm_eps: float = 1e-5
    activation: str = "gelu_new"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}.")
        if self.activation not in _TANH_GELU + ("gelu",):
            raise ValueError(f"GPT-2 activation {self.activation!r} is not supported; use one of "
                             f"{_TANH_GELU + ('gelu',)}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, cfg: dict) -> GPT2Config:
        """Config from a HF `config.json` dict (keys n_layer, n_embd, n_head, n_inner, n_positions, ...)."""
        if cfg.get("scale_attn_by_inverse_layer_idx"):
            raise ValueError("GPT-2 with scale_attn_by_inverse_layer_idx=True is not supported.")
        if not cfg.get("scale_attn_weights", True):
            raise ValueError("GPT-2 with scale_attn_weights=False is not supported.")
        d = cfg["n_embd"]
        return cls(
            num_layers=cfg["n_layer"],
            hidden_size=d,
            num_heads=cfg["n_head"],
            intermediate_size=cfg.get("n_inner") or 4 * d,
            vocab_size=cfg["vocab_size"],
            max_position_embeddings=cfg["n_positions"],
            layer_norm_eps=cfg.get("layer_norm_epsilon", 1e-5),
            activation=cfg.get("activation_function", "gelu_new"),
        )


class Attention(nnx.Module):
    def __init__(self, config: GPT2Config, *, dtype, rngs: nnx.Rngs):
        d = config.hidden_size
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.c_attn = nnx.Linear(d, 3 * d, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.c_proj = nnx.Linear(d, d, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x, mask):
        """x [B, T, d], mask bool [B or 1, 1, T, T] -> [B, T, d]."""
        b, t, _ = x.shape
        heads = lambda a: a.reshape(b, t, self.num_heads, self.head_dim)  # noqa: E731
        q, k, v = (heads(a) for a in jnp.split(self.c_attn(x), 3, axis=-1))
        return self.c_proj(attention(q, k, v, mask, scale=self.head_dim**-0.5))


class MLP(nnx.Module):
    def __init__(self, config: GPT2Config, *, dtype, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        self.approximate = config.activation != "gelu"
        self.c_fc = nnx.Linear(d, f, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.c_proj = nnx.Linear(f, d, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):
        """x [B, T, d] -> [B, T, d]."""
        return self.c_proj(jax.nn.gelu(self.c_fc(x), approximate=self.approximate))


class Block(nnx.Module):
    """Pre-LN transformer block: h + attn(ln_1(h)), then + mlp(ln_2(.))."""

    def __init__(self, config: GPT2Config, *, dtype, rngs: nnx.Rngs):
        d, eps = config.hidden_size, config.layer_norm_eps
        self.ln_1 = nnx.LayerNorm(d, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.attn = Attention(config, dtype=dtype, rngs=rngs)
        self.ln_2 = nnx.LayerNorm(d, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.mlp = MLP(config, dtype=dtype, rngs=rngs)

    def __call__(self, h, mask):
        h = h + self.attn(self.ln_1(h), mask)
        return h + self.mlp(self.ln_2(h))


class GPT2(Decoder):
    """GPT-2 language model. Token ids [B, T] -> logits [B, T, vocab]."""

    def __init__(self, config: GPT2Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        self.config, self.dtype = config, dtype
        self.wte = nnx.Embed(config.vocab_size, d, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.wpe = nnx.Embed(config.max_position_embeddings, d, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.blocks = stacked_blocks(lambda r: Block(config, dtype=dtype, rngs=r), config.num_layers, rngs)
        self.ln_f = nnx.LayerNorm(d, epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def embed(self, token_ids, position_ids=None):
        """token_ids [B, T], position_ids [B or 1, T] (default 0..T-1) -> h_0 [B, T, d].

        GPT-2's positions enter only here, so an isolated token's position id decides its state.
        """
        if position_ids is None:
            position_ids = jnp.arange(token_ids.shape[1])[None]
        return self.wte(token_ids) + self.wpe(position_ids)

    def run_blocks(self, h, position_ids, mask, positions=None):
        """h [B, T, d] through all blocks -> (h_out [B, T, d], block_inputs [L, B, P, d], block_outputs [L, B, P, d]).

        position_ids are unused (kept for the common signature); mask bool [B or 1, 1, T, T];
        positions: None (P = T), [P] or [B, P] ints.
        """
        return scan_blocks(self.blocks, h, lambda block, x, layer: block(x, mask), positions)

    def run_block(self, layer, h, position_ids, mask):
        """Block `layer` alone on h [B, T, d] -> [B, T, d] (e.g. Gaussian input states)."""
        return layer_block(self.blocks, layer)(h, mask)

    def head(self, h):
        """Final LayerNorm and the tied LM head: h [B, T, d] -> logits [B, T, vocab]."""
        return self.wte.attend(self.ln_f(h))


# HF checkpoint key (regex; group 1 = layer index) -> parameter path in `GPT2` + transform (see weights.py).
# GPT2LMHeadModel prefixes keys with "transformer."; ignored: the head is tied to wte, and
# "attn.bias"/"attn.masked_bias" are old causal-mask buffers, not weights.
_P = r"(?:transformer\.)?"
WEIGHT_MAP = (
    (_P + r"wte\.weight", "wte.embedding", "identity"),
    (_P + r"wpe\.weight", "wpe.embedding", "identity"),
    (_P + r"h\.(\d+)\.ln_1\.weight", "blocks.ln_1.scale", "identity"),
    (_P + r"h\.(\d+)\.ln_1\.bias", "blocks.ln_1.bias", "identity"),
    (_P + r"h\.(\d+)\.attn\.c_attn\.weight", "blocks.attn.c_attn.kernel", "identity"),
    (_P + r"h\.(\d+)\.attn\.c_attn\.bias", "blocks.attn.c_attn.bias", "identity"),
    (_P + r"h\.(\d+)\.attn\.c_proj\.weight", "blocks.attn.c_proj.kernel", "identity"),
    (_P + r"h\.(\d+)\.attn\.c_proj\.bias", "blocks.attn.c_proj.bias", "identity"),
    (_P + r"h\.(\d+)\.ln_2\.weight", "blocks.ln_2.scale", "identity"),
    (_P + r"h\.(\d+)\.ln_2\.bias", "blocks.ln_2.bias", "identity"),
    (_P + r"h\.(\d+)\.mlp\.c_fc\.weight", "blocks.mlp.c_fc.kernel", "identity"),
    (_P + r"h\.(\d+)\.mlp\.c_fc\.bias", "blocks.mlp.c_fc.bias", "identity"),
    (_P + r"h\.(\d+)\.mlp\.c_proj\.weight", "blocks.mlp.c_proj.kernel", "identity"),
    (_P + r"h\.(\d+)\.mlp\.c_proj\.bias", "blocks.mlp.c_proj.bias", "identity"),
    (_P + r"ln_f\.weight", "ln_f.scale", "identity"),
    (_P + r"ln_f\.bias", "ln_f.bias", "identity"),
)


def ignored_keys(config: GPT2Config) -> tuple[str, ...]:
    """Checkpoint keys present in some files that carry nothing the model needs."""
    del config
    return (_P + r"h\.\d+\.attn\.(?:masked_)?bias", r"lm_head\.weight")


TRANSFORMS: dict = {}
CONFIG_CLASS = GPT2Config
MODEL_CLASS = GPT2
CAUSAL = True
