# %% [markdown]
# # What IE measures, and what it cannot
#
# Information Emergence (Chen et al., ACL 2025) of block l is
# IE(l) = I(h_l^macro; h_{l+1}^macro) - mean_t I(h_l^micro_t; h_{l+1}^micro_t): the mutual information
# between the last token's block input and output (with its whole context), minus the mean MI of each
# token processed alone. Here the tool measures it on the embedded default model (SmolLM2-135M-Instruct,
# fp32) in the paper's ICL setting (single-token countries, 4 shots = 8 tokens " E1, E2, E3, E4,") and
# asks what the numbers are made of:
#
# 1. how many distinct states each variable takes (a deterministic network maps each distinct input
#    sequence to one state);
# 2. the exact IE by counting those states (plug-in MI of a deterministic map of discrete data);
# 3. what the neural estimators (InfoNCE, Donsker-Varadhan) and the Gaussian closed form report instead,
#    with their caps and flags;
# 4. the noise-regularised IE(sigma), finite and well defined for continuous states, per layer;
# 5. how the counting value grows with the number of samples N.
#
# `IE_NB_SCALE=small|large` (default small: a few hundred sequences, seconds); `IE_NB_OUT`: where figures
# and the JSON of key numbers go at small scale (default: a temporary directory). At large scale figures
# go to notebooks/figures/ and numbers to notebooks/results/. `IE_NB_CACHE` (optional): a directory to keep
# the captured states in, so a rerun skips the model passes.

# %%
import json
import math
import os
import pathlib
import tempfile
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ie_jax
from ie_jax.ie import data as data_lib
from ie_jax.ie import variables as variables_lib
from ie_jax.mi import estimate_batch
from ie_jax.mi.ceilings import annotate, annotate_batch, estimator_cap, icl_orderings_entropy, shuffled_null
from ie_jax.mi.discrete import distinct_states, exact_discrete_mi, plugin_entropy
from ie_jax.mi.gaussian import gaussian_mi, gaussian_mi_bias_nats
from ie_jax.ie.result import estimate_flags, ie_status
from ie_jax.mi.estimators import DEFAULT_SIGMAS
from ie_jax.mi.noise import noise_mi, noise_mi_batch
from ie_jax.mi.result import bound_kind
from ie_jax.mi.result import MIEstimate

SCALE = os.environ.get("IE_NB_SCALE", "small")
if SCALE not in ("small", "large"):
    raise ValueError(f"IE_NB_SCALE must be 'small' or 'large', got {SCALE!r}")
ROOT = pathlib.Path(__file__).resolve().parent if "__file__" in globals() else pathlib.Path("notebooks").resolve()
if SCALE == "large":
    FIG_DIR, RESULT_DIR = ROOT / "figures", ROOT / "results"
else:
    FIG_DIR = RESULT_DIR = pathlib.Path(os.environ.get("IE_NB_OUT") or tempfile.mkdtemp(prefix="what_ie_measures_"))
FIG_DIR.mkdir(parents=True, exist_ok=True)
RESULT_DIR.mkdir(parents=True, exist_ok=True)
CACHE = os.environ.get("IE_NB_CACHE")

CONFIG = {
    "small": dict(n_samples=384, layers=(0, 1, 15, 29), growth=(96, 192, 384), neural_layers=(0, 1, 29), steps=60,
                  batch_size=64, sigmas=(0.1, 1.0, 10.0, 30.0), n_mc=64, null_layers=(1,)),
    "large": dict(n_samples=20_000, layers=None, growth=(1_000, 4_000, 20_000), neural_layers=(1, 15, 29), steps=2_000,
                  batch_size=512, sigmas=(0.1, *DEFAULT_SIGMAS), n_mc=512, null_layers=(1, 15, 29)),
}[SCALE]
MARGIN_NATS = 0.1
numbers: dict = {"scale": SCALE, "config": CONFIG, "units": "nats"}
t_start = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)


# %% [markdown]
# ## Model, data and states
#
# Only the last token needs the full-context pass (the macro variable); the micro variables of isolated
# tokens depend only on the token (isolated mode, position id 0), so `ie_jax.ie.variables.extract` captures
# them once per distinct token (24 countries and the comma) and looks them up.

# %%
lm = ie_jax.load_model("default")
data = data_lib.icl_lists(lm.tokenizer, "country", n_samples=CONFIG["n_samples"], shots=4, seed=0)
N, T = data.token_ids.shape
L = lm.config.num_layers
n_entities = len(data.entities)
n_distinct_sequences = int(len(np.unique(data.token_ids, axis=0)))
H_generating = icl_orderings_entropy(n_entities, 4)
assert abs(H_generating - data.generating_entropy_nats) < 1e-9
H_sample = data.sample_entropy_nats
log(f"{data.description}; N = {N}, {n_distinct_sequences} distinct; sample entropy {H_sample:.3f} nats, "
    f"generating entropy ln({n_entities}!/{n_entities - 4}!) = {H_generating:.3f} nats; e.g. {data.examples[0]!r}")


def capture_states(dataset):
    """Variables with the last token's context states [L, N, 1, d] and isolated token states, cached if asked."""
    path = pathlib.Path(CACHE) / f"what_ie_measures_N{dataset.n_samples}.npz" if CACHE else None
    if path is not None and path.exists():
        z = np.load(path)
        if np.array_equal(z["token_ids"], dataset.token_ids):
            return variables_lib.Variables(
                tuple(range(L)), (T - 1,), T, "isolated", z["context_input"], z["context_output"],
                z["micro_input"], z["micro_output"], z["micro_index"])
    v = variables_lib.extract(lm, dataset, micro="isolated", token_curve=False, batch_size=128)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, token_ids=dataset.token_ids, context_input=v.context_input, context_output=v.context_output,
                 micro_input=v.micro_input, micro_output=v.micro_output, micro_index=v.micro_index)
    return v


t0 = time.perf_counter()
states = capture_states(data)
numbers["capture_s"] = time.perf_counter() - t0
log(f"captured {states.nbytes / 2**30:.2f} GiB of states in {numbers['capture_s']:.0f} s")
LAYERS = list(range(L)) if CONFIG["layers"] is None else list(CONFIG["layers"])
assert LAYERS[:2] == [0, 1], "the comparisons below quote layers 0 and 1"
macro = {l: states.macro_pair(l) for l in LAYERS}  # (block input [N, d], block output [N, d]) per layer
numbers["layers"] = LAYERS
numbers["data"] = {"n_samples": N, "seq_len": T, "n_entities": n_entities,
                   "n_distinct_sequences": n_distinct_sequences, "sample_entropy_nats": H_sample,
                   "generating_entropy_nats": H_generating, "ln_n_nats": math.log(N)}

# %% [markdown]
# ## 1. Distinct states and the exact IE by counting
#
# For a deterministic map of discrete inputs, `exact_discrete_mi` is the plug-in MI of the distinct states,
# exact over the sample; its diagnostics carry the distinct-state counts (`distinct_states`: states closer
# than 1e-4 of the variable's centred scale are one state). At layer 0 the last token's block input is the
# "," embedding: one state, MI 0. From layer 1 on, each distinct sequence should give its own state, so the
# macro MI is the sample entropy of the sequences at every layer.
#
# Micro: an isolated token's state depends only on the token, so if the 25 distinct tokens (24 countries
# and the comma) give 25 distinct states at a layer's input and output (checked below with
# `distinct_states`), the micro MI is the plug-in entropy of the token at that position: ln 24 at country
# positions (up to sampling) and 0 at commas. `exact_discrete_mi` on the N micro pairs confirms it at a few
# layers (it is slow on N rows of heavily repeated states, so not at all 30).

# %%
def micro_counting(variables, layers, direct_layers, n=None):
    """[len(layers), T] micro MI (nats) by counting over the first n samples, checked by exact_discrete_mi."""
    token_ids = data.token_ids[:n]
    by_token = np.array([plugin_entropy(token_ids[:, t]) for t in range(T)])
    out = []
    for layer in layers:
        i = variables.layers.index(layer)
        n_tokens = len(variables.micro_input[i])
        injective = all(distinct_states(a[i])[1] == n_tokens for a in (variables.micro_input, variables.micro_output))
        if not injective:
            raise AssertionError(f"layer {layer}: two tokens share an isolated state; count the states directly")
        if layer in direct_layers:
            direct = [exact_discrete_mi(*(a[:n] for a in variables.micro_pair(i, t)), discrete=True).value
                      for t in range(T)]
            np.testing.assert_allclose(direct, by_token, atol=1e-9)
        out.append(by_token)
    return np.array(out)


t0 = time.perf_counter()
macro_count = [exact_discrete_mi(*macro[l], discrete=True, margin_nats=MARGIN_NATS) for l in LAYERS]
micro_count = micro_counting(states, LAYERS, direct_layers=(0, 1, L - 1))  # [layers, T]
ie_count = [m.value - float(micro.mean()) for m, micro in zip(macro_count, micro_count)]
distinct_in = [m.diagnostics["n_distinct_x"] for m in macro_count]
distinct_out = [m.diagnostics["n_distinct_y"] for m in macro_count]
numbers["distinct_states"] = {"block_input": distinct_in, "block_output": distinct_out, "rtol": 1e-4}
numbers["counting"] = {
    "macro_mi_nats": [m.value for m in macro_count],
    "macro_stderr_nats": [m.stderr for m in macro_count],
    "macro_saturated": [bool(m.diagnostics["saturated"]) for m in macro_count],
    "macro_constant": [bool(m.diagnostics["constant"]) for m in macro_count],
    # micro counted exactly over covered tokens, so the IE is measured where the macro MI is (layer 0: constant)
    "ie_measured": [bound_kind(m.diagnostics) == "measured" for m in macro_count],
    "micro_mi_nats_by_position": micro_count.tolist(),
    "micro_mean_nats": micro_count.mean(axis=1).tolist(),
    "ie_nats": ie_count,
    "ln_24_nats": math.log(24),
    "seconds": time.perf_counter() - t0,
}
log(f"distinct last-token states, block input per layer: {distinct_in}")
log(f"distinct last-token states, block output per layer: {distinct_out}")
log(f"counting, layer 0: macro {macro_count[0].value:.3f} (constant={macro_count[0].diagnostics['constant']}), "
    f"IE {ie_count[0]:.3f}; layer 1: macro {macro_count[1].value:.3f}, micro by position "
    f"{np.round(micro_count[1], 3).tolist()}, IE {ie_count[1]:.3f}; IE over layers >= 1 in "
    f"[{min(ie_count[1:]):.3f}, {max(ie_count[1:]):.3f}]")


# %% [markdown]
# ## 3. Neural estimators and the Gaussian closed form on the macro variable
#
# InfoNCE (the "fast" protocol with `bound="infonce"`, held-out readout) cannot exceed ln B; DV on held-out
# pairs is capped by about ln of its marginal pairs. Each estimate is annotated with every ceiling (sample
# entropy, ln N, generating entropy, the estimator's cap) and flagged "saturated: lower bound only" within
# 0.1 nat of the smallest. One micro problem (a country position, truth ln 24 over the sample) is run
# alongside as a control that sits below the caps.

# %%
neural_layers = CONFIG["neural_layers"]
problems = [("macro", l) for l in neural_layers] + [("micro t=0", neural_layers[-1])]
xs = np.stack([macro[l][0] for _, l in problems[:-1]] + [states.micro_pair(neural_layers[-1], 0)[0]])
ys = np.stack([macro[l][1] for _, l in problems[:-1]] + [states.micro_pair(neural_layers[-1], 0)[1]])
B = CONFIG["batch_size"]
neural = {}
for bound in ("infonce", "dv"):
    t0 = time.perf_counter()
    # select=False: the critic's own held-out bound (the fast protocol would otherwise pick among candidates)
    raw = estimate_batch(xs, ys, protocol="fast", bound=bound, steps=CONFIG["steps"], batch_size=B, select=False)
    cap = estimator_cap(bound, batch_size=B) if bound == "infonce" else estimator_cap(bound, n_marginal=B * (B - 1))
    est = annotate_batch(raw, xs, ys, estimator_cap_nats=cap, generating_entropy_nats=H_generating,
                         margin_nats=MARGIN_NATS)
    neural[bound] = {
        "problems": [f"{k} layer {l}" for k, l in problems],
        "value_nats": est.values.tolist(),
        "ci95_nats": est.ci95s.tolist(),
        "estimator_cap_nats": cap,
        "ceiling_nats": [d["ceiling_nats"] for d in est.diagnostics],
        "saturated": [bool(d["saturated"]) for d in est.diagnostics],
        "constant": [bool(d["constant"]) for d in est.diagnostics],
        "still_increasing": [bool(d.get("still_increasing")) for d in est.diagnostics],
        "truth_by_counting_nats": [macro_count[LAYERS.index(l)].value for _, l in problems[:-1]]
        + [micro_count[LAYERS.index(neural_layers[-1]), 0]],
        "seconds": time.perf_counter() - t0,
    }
    log(f"{bound} (B = {B}, cap {cap:.2f}): " + ", ".join(
        f"{p} {v:.2f}{' SATURATED' if s else ''}{' CONSTANT' if c else ''}" for p, v, s, c in zip(
            neural[bound]["problems"], est.values, neural[bound]["saturated"], neural[bound]["constant"])))
numbers["neural"] = neural


# %%
def gaussian_estimate(x, y) -> MIEstimate:
    return MIEstimate(gaussian_mi(x, y), math.nan, (math.nan, math.nan), "nats", "gaussian")


# Every layer's value; ceilings and flags (annotate counts distinct states again: slow at N = 20,000) at a few.
gauss = [gaussian_estimate(*macro[l]) for l in LAYERS]
gauss_annotated = {l: annotate(gauss[LAYERS.index(l)], *macro[l], generating_entropy_nats=H_generating)
                   for l in CONFIG["null_layers"]}
d = lm.config.hidden_size
nulls = {l: shuffled_null(gaussian_estimate, *macro[l], seed=0).value for l in CONFIG["null_layers"]}
numbers["gaussian"] = {
    "mi_nats": [g.value for g in gauss],
    "above_ceiling": {str(l): bool(g.diagnostics["above_ceiling"]) for l, g in gauss_annotated.items()},
    "ceiling_nats": {str(l): g.diagnostics["ceiling_nats"] for l, g in gauss_annotated.items()},
    "shuffled_null_nats": {str(l): v for l, v in nulls.items()},
    # the Wishart bias of the plug-in value on Gaussian data (defined for N > 2d), about d^2 / 2N
    "expected_null_bias_nats": gaussian_mi_bias_nats(d, d, N) if N > 2 * d else None,
    "ridge": 1e-6,
}
log(f"Gaussian closed form per layer >= 1 in [{min(g.value for g in gauss[1:]):.1f}, "
    f"{max(g.value for g in gauss[1:]):.1f}] nats; shuffled null {nulls} (Wishart bias "
    f"{numbers['gaussian']['expected_null_bias_nats']} nats)")

# %% [markdown]
# ## 4. Noise-regularised IE(sigma)
#
# `noise_mi` computes I(h_l + sigma s Z; h_{l+1} + sigma s' Z') with s, s' each variable's centred standard
# deviation pooled over dimensions (the "centred_std" normaliser, recorded in every result): finite for any
# states, equal to the counting value as sigma -> 0 and to 0 as sigma grows. IE(sigma) uses the same sigma for
# the macro and the micro variables, each relative to its own scale.

# %%
sigmas = CONFIG["sigmas"]
noise_macro = np.zeros((len(LAYERS), len(sigmas)))
noise_macro_ci = np.zeros((len(LAYERS), len(sigmas), 2))
noise_micro = np.zeros((len(LAYERS), T, len(sigmas)))
status = [[None] * len(sigmas) for _ in LAYERS]  # ie_jax.ie.result.ie_status of each (layer, sigma)
macro_flags = [[None] * len(sigmas) for _ in LAYERS]
scales, micro_scales = [], []
t0 = time.perf_counter()
for i, layer in enumerate(LAYERS):
    curve = noise_mi(*macro[layer], sigma=list(sigmas), n_mc=CONFIG["n_mc"], seed=0)
    noise_macro[i] = [e.value for e in curve]
    noise_macro_ci[i] = [e.ci95 for e in curve]
    scales.append((curve[0].diagnostics["scale_x"], curve[0].diagnostics["scale_y"]))
    pairs = [states.micro_pair(layer, t) for t in range(T)]
    micro_curves = noise_mi_batch(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs]), sigma=list(sigmas),
                                        n_mc=CONFIG["n_mc"], seed=0)
    noise_micro[i] = np.stack([m.values for m in micro_curves], axis=1)
    micro_scales.append([(e["scale_x"], e["scale_y"]) for e in micro_curves[0].diagnostics])
    for k in range(len(sigmas)):
        status[i][k] = ie_status(curve[k].diagnostics, list(micro_curves[k].diagnostics))
        macro_flags[i][k] = estimate_flags(curve[k].diagnostics)
    if layer % 5 == 0 or layer == L - 1:
        log(f"noise MI layer {layer}: macro {np.round(noise_macro[i], 3).tolist()} at sigma {list(sigmas)}; IE "
            f"measured at {[int(st['ie_measured']) for st in status[i]]}")
ie_raw = noise_macro - noise_micro.mean(axis=1)  # [L, S] macro - mean micro, an IE only where both are measured
ie_measured = np.array([[st["ie_measured"] for st in row] for row in status])
ie_noise = np.where(ie_measured, ie_raw, np.nan)
numbers["noise"] = {
    "sigmas": list(sigmas),
    "normaliser": curve[0].diagnostics["normaliser"],
    "n_mc": CONFIG["n_mc"],
    "macro_scale_input_output": scales,
    # [layers, T, 2]: the micro normalisers; isolated tokens sit at position 0, where SmolLM2's middle layers
    # grow massive activations that differ between tokens, so they inflate even the centred std
    "micro_scale_input_output": micro_scales,
    "macro_mi_nats": noise_macro.tolist(),
    "macro_ci95_nats": noise_macro_ci.tolist(),
    # [layers, sigmas]: the macro estimate's flags (saturated, sample_specific: not a measurement)
    "macro_flags": macro_flags,
    "macro_measured": [[bound_kind({"flags": f}) == "measured" for f in row] for row in macro_flags],
    "micro_mean_nats": noise_micro.mean(axis=1).tolist(),
    # IE(sigma) where both terms are measurements, NaN elsewhere; ie_bound says what macro - mean micro is there
    "ie_nats": ie_noise.tolist(),
    "ie_measured": ie_measured.tolist(),
    "ie_bound": [[st["ie_bound"] for st in row] for row in status],
    "macro_minus_micro_nats": ie_raw.tolist(),
    "seconds": time.perf_counter() - t0,
}

# %% [markdown]
# ## 5. The counting value grows with N
#
# Every distinct sequence is its own state, so the macro MI by counting is the sample entropy of the sequences,
# which approaches the generating entropy (ln 255,024 = 12.45 nats for 24 countries and 4 shots) only when N
# is far above 255,024. The first n sequences of the same sample are counted for each n, at a few layers.

# %%
growth = {}
GROWTH_LAYERS = (1, L // 2, L - 1)
for n in CONFIG["growth"]:
    mac = [exact_discrete_mi(*(a[:n] for a in states.macro_pair(l)), discrete=True) for l in GROWTH_LAYERS]
    ie = [m.value - float(micro.mean()) for m, micro in zip(mac, micro_counting(states, GROWTH_LAYERS, (), n))]
    growth[n] = {"layers": GROWTH_LAYERS, "ie_layer1_nats": ie[0], "ie_min_layers_ge1_nats": min(ie),
                 "ie_max_layers_ge1_nats": max(ie), "macro_layer1_nats": mac[0].value,
                 "n_distinct_sequences": int(len(np.unique(data.token_ids[:n], axis=0))), "ln_n_nats": math.log(n)}
    log(f"N = {n}: counting IE at layer 1 = {ie[0]:.3f} nats (layers {GROWTH_LAYERS} in "
        f"[{min(ie):.3f}, {max(ie):.3f}])")
numbers["counting_growth"] = {str(n): g for n, g in growth.items()}

# %% [markdown]
# ## Figures
#
# Drawn from the dictionary of key numbers alone (the JSON this notebook writes), so they can be redrawn
# from a finished run's JSON: distinct states per layer; macro MI per layer by estimator with its ceilings,
# and IE per layer; IE(sigma) per layer and the counting value against N.


# %%
def draw_figures(nb: dict, fig_dir: pathlib.Path) -> None:
    layers, n, d = nb["layers"], nb["data"]["n_samples"], nb["data"]
    last = layers[-1]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(layers, nb["distinct_states"]["block_input"], "o-", label="block input (last token)")
    ax.plot(layers, nb["distinct_states"]["block_output"], "s--", label="block output (last token)", alpha=0.7)
    ax.axhline(d["n_distinct_sequences"], color="k", lw=0.8, ls=":",
               label=f"distinct sequences ({d['n_distinct_sequences']:,})")
    ax.axhline(n, color="grey", lw=0.8, ls="--", label=f"N = {n:,}")
    ax.set_yscale("log")
    ax.set_xlabel("layer (block index)")
    ax.set_ylabel("distinct states (rtol 1e-4 of centred scale)")
    ax.set_title(f"SmolLM2-135M, ICL countries, N = {n:,}: one state per distinct sequence", fontsize=10)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(fig_dir / "what_ie_measures_distinct_states.png", dpi=120)
    plt.close(fig)

    sigmas, noise = nb["noise"]["sigmas"], nb["noise"]
    counting = nb["counting"]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    ax = axes[0]
    ax.plot(layers, counting["macro_mi_nats"], "k.-", lw=2, label="exact, by counting (the sample's)")
    shown = [k for k, s in enumerate(sigmas) if s in (0.1, 1.0, 3.0, 10.0, 15.0, 30.0)]
    macro_noise, macro_ok = np.array(noise["macro_mi_nats"]), np.array(noise["macro_measured"], bool)
    for j, k in enumerate(shown):
        color = plt.get_cmap("winter")(j / max(1, len(shown) - 1))
        ax.plot(layers, macro_noise[:, k], lw=1, color=color,
                label=f"noise, sigma = {sigmas[k]:g} x centred std (dots: a measurement)")
        ax.plot(np.array(layers)[macro_ok[:, k]], macro_noise[macro_ok[:, k], k], "o", ms=3, color=color)
    for bound, marker, name, color in (("infonce", "^", "InfoNCE", "tab:orange"), ("dv", "v", "DV held-out", "tab:brown")):
        r = nb["neural"][bound]
        macro_layers = [int(p.split()[-1]) for p in r["problems"] if p.startswith("macro")]
        vals = r["value_nats"][: len(macro_layers)]
        line, = ax.plot(macro_layers, vals, marker, ms=9, mfc="none", ls="none", color=color,
                        label=f"{name} (B = {nb['config']['batch_size']}); filled = flagged saturated")
        sat = [(l, v) for l, v, f in zip(macro_layers, vals, r["saturated"]) if f]
        if sat:
            ax.plot(*zip(*sat), marker, ms=9, color=line.get_color(), ls="none")
    ax.plot(layers, nb["gaussian"]["mi_nats"], "x:", color="tab:red", label="Gaussian closed form")
    ceilings = [(d["sample_entropy_nats"], "sample entropy"), (d["ln_n_nats"], "ln N"),
                (d["generating_entropy_nats"], "generating entropy"),
                (nb["neural"]["infonce"]["estimator_cap_nats"], "InfoNCE cap ln B")]
    for k, (value, name) in enumerate(sorted(ceilings)):
        ax.axhline(value, color="grey", ls=(0, (1 + k, 2)), lw=0.9)
        ax.text(last * (0.55 + 0.15 * (k % 3)), value * (1.08 if k % 2 else 0.8), f"{name} {value:.2f}",
                fontsize=7, color="dimgrey")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(-0.3, 5 * max(nb["gaussian"]["mi_nats"]))
    ax.set_xlabel("layer")
    ax.set_ylabel("macro MI (nats, symlog)")
    ax.set_title(f"macro MI by estimator, N = {n:,}", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)

    ax = axes[1]
    count_ok = np.array(counting["ie_measured"], bool)
    ax.plot(np.array(layers)[~count_ok], np.array(counting["ie_nats"])[~count_ok], "k^", mfc="none", ms=6,
            label="counting: a lower bound (the macro MI is the sample's)")
    ax.plot(np.array(layers)[count_ok], np.array(counting["ie_nats"])[count_ok], "ks", ms=5,
            label="counting: measured")
    for k in shown:
        ax.plot(layers, np.array(noise["ie_nats"])[:, k], "o-", ms=3, label=f"noise, sigma = {sigmas[k]:g}")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("layer")
    ax.set_ylabel("IE (nats, symlog)")
    ax.set_title(f"IE per layer where it is a measurement (N = {n:,}; noise: sigma x centred std)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    fig.tight_layout()
    fig.savefig(fig_dir / "what_ie_measures_ie_by_estimator.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    cmap = plt.get_cmap("viridis")
    ie_noise_arr = np.array(noise["ie_nats"])
    for i, layer in enumerate(layers):
        axes[0].plot(sigmas, ie_noise_arr[i], "-", color=cmap(layer / max(1, last)), lw=1,
                     label=f"layer {layer}" if layer in (0, 1, last) else None)
    axes[0].axhline(counting["ie_nats"][1], color="k", ls="--", lw=0.8,
                    label=f"counting IE, layer 1: a lower bound ({counting['ie_nats'][1]:.2f})")
    axes[0].axhline(0, color="grey", lw=0.6)
    axes[0].set_xscale("log")
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].set_xlabel("sigma (relative to each variable's centred std)")
    axes[0].set_ylabel("IE(sigma) (nats, symlog)")
    axes[0].set_title(f"IE(sigma) where measured, one curve per layer (dark = early), N = {n:,}", fontsize=10)
    axes[0].legend(fontsize=8)
    growth = nb["counting_growth"]
    ns = sorted(int(k) for k in growth)
    axes[1].plot(ns, [growth[str(k)]["ie_layer1_nats"] for k in ns], "ko-", label="counting IE, layer 1")
    micro_mean = counting["micro_mean_nats"][1]
    axes[1].plot(ns, [math.log(k) - micro_mean for k in ns], ":", color="grey", label="ln N - mean micro MI")
    axes[1].axhline(d["generating_entropy_nats"] - micro_mean, color="grey", ls="-.", lw=0.8,
                    label="generating entropy - mean micro MI")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("N (sequences)")
    axes[1].set_ylabel("IE by counting (nats)")
    axes[1].set_title("the counting value grows with N", fontsize=10)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_dir / "what_ie_measures_ie_sigma.png", dpi=120)
    plt.close(fig)


# %% [markdown]
# ## What we found
#
# Printed from this run's own numbers (N and the normaliser next to each).

# %%
inf, dv = neural["infonce"], neural["dv"]
n_macro = len(neural_layers)
sat_layers = [l for l, s in zip(neural_layers, inf["saturated"][:n_macro]) if s]
ge1 = slice(1, None)


def span(values, fmt=".2f") -> str:
    """'a' if every value prints the same, else 'a to b'."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo} to {hi}"


full_k = next((k for k in range(len(sigmas)) if ie_measured[:, k].all()), None)
below_k = range(len(sigmas) if full_k is None else full_k)
below = {"pairs": (len(LAYERS) - 1) * len(below_k),
         **{f: sum(f in macro_flags[i][k] for i in range(1, len(LAYERS)) for k in below_k)
            for f in ("saturated", "sample_specific")}}
numbers["noise"]["measured_from_sigma"] = None if full_k is None else sigmas[full_k]
micro_jump = max(range(1, len(LAYERS)), key=lambda i: micro_scales[i][0][1] / micro_scales[i - 1][0][1])
findings = (
    f"On SmolLM2-135M-Instruct (fp32) with N = {N:,} ICL country lists ({n_distinct_sequences:,} distinct, "
    f"sample entropy {H_sample:.2f} nats, generating entropy {H_generating:.2f} nats), the last token's block "
    f"input takes {distinct_in[0]} state at layer 0 (the ',' embedding) and {span(distinct_in[ge1], ',')} states "
    f"at layers {LAYERS[1]}-{LAYERS[-1]}: one per distinct sequence. The exact macro MI by counting is therefore "
    f"{span([m.value for m in macro_count[ge1]])} nats at every layer >= 1 (N = {N:,}) and "
    f"{macro_count[0].value:.2f} at layer 0 (constant); micro MIs are {micro_count[1, 0::2].mean():.2f} nats at "
    f"country positions (ln 24 = {math.log(24):.2f}) and {micro_count[1, 1::2].mean():.2f} at commas, so the "
    f"counting IE is {span(ie_count[ge1])} nats at every layer >= 1 and {ie_count[0]:.2f} at layer 0 (N = {N:,}); "
    f"it is a measurement at {sum(numbers['counting']['ie_measured'])} of {len(LAYERS)} layers (where the macro "
    "input is constant) and elsewhere a lower bound, because the macro term is the sample's entropy. It grows "
    "with N: " + ", ".join(f"{growth[n]['ie_layer1_nats']:.2f} nats at N = {n:,}" for n in growth)
    + f". InfoNCE (fast protocol, B = {B}, cap ln {B} = {inf['estimator_cap_nats']:.2f} nats, N = {N:,}) reports "
    + ", ".join(f"{v:.2f}" for v in inf["value_nats"][:n_macro])
    + f" nats at layers {list(neural_layers)} and is flagged saturated at layers {sat_layers}; on a country "
    f"position (truth {inf['truth_by_counting_nats'][-1]:.2f} nats) it gets {inf['value_nats'][-1]:.2f}. "
    f"DV held-out (cap ln {B}x{B - 1} = {dv['estimator_cap_nats']:.2f} nats, N = {N:,}) reports "
    + ", ".join(f"{v:.2f}" for v in dv["value_nats"][:n_macro])
    + f" nats, flagged saturated at layers {[l for l, f in zip(neural_layers, dv['saturated']) if f]}. The "
    f"Gaussian closed form gives {span([g.value for g in gauss[ge1]], '.0f')} nats at layers >= 1 (above "
    f"ln N = {math.log(N):.2f}; flagged above_ceiling at layers "
    f"{[int(l) for l, f in numbers['gaussian']['above_ceiling'].items() if f]}) and "
    + ", ".join(f"{v:.1f}" for v in nulls.values())
    + f" nats on shuffled pairs (Wishart bias {numbers['gaussian']['expected_null_bias_nats'] or math.nan:.1f} "
    f"nats). The noise-regularised IE(sigma) (centred-std normaliser, n_mc = {CONFIG['n_mc']}, N = {N:,}) is a "
    + (f"measurement at every layer only from sigma = {sigmas[full_k]:g} on, where it lies in "
       f"[{np.nanmin(ie_noise[:, full_k:]):.2f}, {np.nanmax(ie_noise[:, full_k:]):.2f}] nats; "
       if full_k is not None else "measurement at every layer at no sigma of the grid; ")
    + "at layers >= 1 it is measured at " + ", ".join(
        f"{int(ie_measured[ge1, k].sum())} (sigma = {s:g})" for k, s in enumerate(sigmas)
        if full_k is None or k < full_k) + f" of {len(LAYERS) - 1} layers below that; there the macro term is flagged "
    f"saturated in {below['saturated']} and sample-specific in {below['sample_specific']} of the {below['pairs']} "
    f"(layer >= 1, sigma) pairs. At layer 0 (constant macro input) IE(sigma) is measured at "
    f"{int(ie_measured[0].sum())} of {len(sigmas)} sigmas and is minus the micro mean there "
    f"({span(ie_noise[0][ie_measured[0]])} nats). One sigma is not one absolute noise level across the variables, "
    f"because the normalisers differ: "
    f"the centred std of an isolated country token's block output (the micro "
    f"normaliser) goes from {micro_scales[micro_jump - 1][0][1]:.2f} at layer {LAYERS[micro_jump - 1]} to "
    f"{micro_scales[micro_jump][0][1]:.2f} at layer {LAYERS[micro_jump]} (massive activations at position 0), "
    f"against {scales[1][1]:.2f} at layer 1 and {scales[-1][1]:.2f} at layer {LAYERS[-1]} for the macro variable."
)
numbers["findings"] = findings
numbers["elapsed_s"] = time.perf_counter() - t_start
(RESULT_DIR / "what_ie_measures.json").write_text(json.dumps(numbers, indent=1, default=float))
draw_figures(json.loads((RESULT_DIR / "what_ie_measures.json").read_text()), FIG_DIR)
print(findings)
log(f"wrote {RESULT_DIR / 'what_ie_measures.json'} and figures in {FIG_DIR}")
