"""BERT encoders (Devlin et al. 2019) as a flax.nnx module, e.g. all-MiniLM-L6-v2: the non-causal case.

Word + absolute position + token-type embeddings followed by LayerNorm; post-LN blocks (the LayerNorm comes
after each residual sum, so block_output[l] is already normalised); exact (erf) GELU; bidirectional
attention with optional padding. There is no LM head: `head(h)` is the last hidden state itself, and HF's
last `hidden_states` entry equals block_output[L-1] (unlike decoders, where it is after a final norm).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from ie_jax.models.masks import make_mask
from ie_jax.models.layers import attention
from ie_jax.models.stack import layer_block, scan_blocks, stacked_blocks

# HF activation name -> whether GELU uses the tanh approximation.
_GELU_APPROXIMATE = {"gelu": False, "gelu_new": True, "gelu_pytorch_tanh": True}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}.")
        if self.hidden_act not in _GELU_APPROXIMATE:
            raise ValueError(f"BERT activation {self.hidden_act!r} is not supported; use one of {list(_GELU_APPROXIMATE)}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, hf: dict) -> BertConfig:
        """Config from a HF `config.json` dict of model_type "bert"."""
        position_type = hf.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(f"BERT position_embedding_type {position_type!r} is not supported; only 'absolute'.")
        return cls(
            num_layers=hf["num_hidden_layers"],
            hidden_size=hf["hidden_size"],
            num_heads=hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf["max_position_embeddings"],
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_act=hf.get("hidden_act", "gelu"),
        )


class Attention(nnx.Module):
    def __init__(self, config: BertConfig, *, dtype, rngs: nnx.Rngs):
        d = config.hidden_size
        linear = lambda: nnx.Linear(d, d, dtype=dtype, param_dtype=dtype, rngs=rngs)  # noqa: E731
        self.query, self.key, self.value, self.output = linear(), linear(), linear(), linear()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim

    def __call__(self, x, mask):
        """x [B, T, d], mask bool [B or 1, 1, T, T] -> [B, T, d] (before the residual sum and norm)."""
        b, t, _ = x.shape
        heads = lambda a: a.reshape(b, t, self.num_heads, self.head_dim)  # noqa: E731
        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        return self.output(attention(q, k, v, mask, scale=self.head_dim**-0.5))


class Block(nnx.Module):
    """Post-LN encoder block: h = norm(h + attn(h)); h = norm(h + ffn(h))."""

    def __init__(self, config: BertConfig, *, dtype, rngs: nnx.Rngs):
        d, f, eps = config.hidden_size, config.intermediate_size, config.layer_norm_eps
        self.attention = Attention(config, dtype=dtype, rngs=rngs)
        self.attention_norm = nnx.LayerNorm(d, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.intermediate = nnx.Linear(d, f, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.output = nnx.Linear(f, d, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.output_norm = nnx.LayerNorm(d, epsilon=eps, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.approximate = _GELU_APPROXIMATE[config.hidden_act]

    def __call__(self, h, mask):
        h = self.attention_norm(h + self.attention(h, mask))
        return self.output_norm(h + self.output(jax.nn.gelu(self.intermediate(h), approximate=self.approximate)))


class Bert(nnx.Module):
    """BERT encoder. Token ids [B, T] -> last hidden state [B, T, d]."""

    def __init__(self, config: BertConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        d = config.hidden_size
        self.config, self.dtype = config, dtype
        embed = lambda n: nnx.Embed(n, d, dtype=dtype, param_dtype=dtype, rngs=rngs)  # noqa: E731
        self.word_embeddings = embed(config.vocab_size)
        self.position_embeddings = embed(config.max_position_embeddings)
        self.token_type_embeddings = embed(config.type_vocab_size)
        self.embeddings_norm = nnx.LayerNorm(d, epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=dtype,
                                             rngs=rngs)
        self.blocks = stacked_blocks(lambda r: Block(config, dtype=dtype, rngs=r), config.num_layers, rngs)

    def embed(self, token_ids, position_ids=None, token_type_ids=None):
        """token_ids [B, T], position_ids [B or 1, T] (default 0..T-1), token_type_ids [B, T] (default 0)
        -> h_0 [B, T, d] = LayerNorm(word + position + token type). An isolated token's position id
        decides its state, since positions enter only here."""
        if position_ids is None:
            position_ids = jnp.arange(token_ids.shape[1])[None]
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(token_ids)
        h = self.word_embeddings(token_ids) + self.position_embeddings(position_ids)
        return self.embeddings_norm(h + self.token_type_embeddings(token_type_ids))

    def run_blocks(self, h, position_ids, mask, positions=None):
        """h [B, T, d] through all blocks -> (h_out [B, T, d], block_inputs [L, B, P, d], block_outputs [L, B, P, d]).

        position_ids are unused (kept for the common signature); mask bool [B or 1, 1, T, T], e.g.
        masks.bidirectional_mask(T, attention_mask) for padded batches; positions: None (P = T), [P] or [B, P].
        """
        return scan_blocks(self.blocks, h, lambda block, x, layer: block(x, mask), positions)

    def run_block(self, layer, h, position_ids, mask):
        """Block `layer` alone on h [B, T, d] -> [B, T, d] (e.g. Gaussian input states)."""
        return layer_block(self.blocks, layer)(h, mask)

    def head(self, h):
        """An encoder has no LM head: the last hidden state h [B, T, d] is the output."""
        return h

    def __call__(self, token_ids, position_ids=None, mask="bidirectional", token_type_ids=None):
        """token_ids [B, T] -> last hidden state [B, T, d]; mask: a name or bool [B or 1, 1, T, T] array."""
        h = self.embed(token_ids, position_ids, token_type_ids)
        h, _, _ = self.run_blocks(h, position_ids, make_mask(mask, token_ids.shape[1]))
        return self.head(h)


# HF checkpoint key (regex; group 1 = layer index) -> parameter path in `Bert` + transform. BertModel files
# (as in all-MiniLM-L6-v2) have no prefix; task models (BertForMaskedLM, ...) prefix "bert.".
_P = r"(?:bert\.)?"
_LAYER = _P + r"encoder\.layer\.(\d+)\."
WEIGHT_MAP = (
    (_P + r"embeddings\.word_embeddings\.weight", "word_embeddings.embedding", "identity"),
    (_P + r"embeddings\.position_embeddings\.weight", "position_embeddings.embedding", "identity"),
    (_P + r"embeddings\.token_type_embeddings\.weight", "token_type_embeddings.embedding", "identity"),
    (_P + r"embeddings\.LayerNorm\.weight", "embeddings_norm.scale", "identity"),
    (_P + r"embeddings\.LayerNorm\.bias", "embeddings_norm.bias", "identity"),
    (_LAYER + r"attention\.self\.query\.weight", "blocks.attention.query.kernel", "transpose"),
    (_LAYER + r"attention\.self\.query\.bias", "blocks.attention.query.bias", "identity"),
    (_LAYER + r"attention\.self\.key\.weight", "blocks.attention.key.kernel", "transpose"),
    (_LAYER + r"attention\.self\.key\.bias", "blocks.attention.key.bias", "identity"),
    (_LAYER + r"attention\.self\.value\.weight", "blocks.attention.value.kernel", "transpose"),
    (_LAYER + r"attention\.self\.value\.bias", "blocks.attention.value.bias", "identity"),
    (_LAYER + r"attention\.output\.dense\.weight", "blocks.attention.output.kernel", "transpose"),
    (_LAYER + r"attention\.output\.dense\.bias", "blocks.attention.output.bias", "identity"),
    (_LAYER + r"attention\.output\.LayerNorm\.weight", "blocks.attention_norm.scale", "identity"),
    (_LAYER + r"attention\.output\.LayerNorm\.bias", "blocks.attention_norm.bias", "identity"),
    (_LAYER + r"intermediate\.dense\.weight", "blocks.intermediate.kernel", "transpose"),
    (_LAYER + r"intermediate\.dense\.bias", "blocks.intermediate.bias", "identity"),
    (_LAYER + r"output\.dense\.weight", "blocks.output.kernel", "transpose"),
    (_LAYER + r"output\.dense\.bias", "blocks.output.bias", "identity"),
    (_LAYER + r"output\.LayerNorm\.weight", "blocks.output_norm.scale", "identity"),
    (_LAYER + r"output\.LayerNorm\.bias", "blocks.output_norm.bias", "identity"),
)


def ignored_keys(config: BertConfig) -> tuple[str, ...]:
    """Checkpoint keys that carry nothing the encoder needs: the position-id buffer, the pooler, task heads."""
    del config
    return (_P + r"embeddings\.position_ids", _P + r"pooler\..*", r"cls\..*")


TRANSFORMS: dict = {}
CONFIG_CLASS = BertConfig
MODEL_CLASS = Bert
CAUSAL = False
