# %% [markdown]
# # 2. Natural text against ICL lists: the token-by-token rise of IE
#
# The paper reports that E(t) rises token by token on natural sentences too, but less steadily than on ICL
# lists. `ie_jax.paper.analysis.text_vs_icl` measures both at the same length T on SmolLM2-135M-Instruct (fp32):
# KJV windows of T tokens ending at a full stop (the paper's filter) against country lists, with the default of
# `ie_jax.measure` (noise-regularised IE over its sigma grid), both read at one common sigma: the smallest at which
# the most layers have a measured IE in both. E(t) is NaN where a term is not a measurement; the prefix-entropy
# ceiling is drawn next to each curve.
#
# `IE_NB_SCALE=small|large`; small writes to `IE_NB_OUT`, large to notebooks/figures and notebooks/results.

# %%
import json
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ie_jax
from ie_jax.paper import analysis
from ie_jax.fileio import jsonable

NAME = "text_vs_icl"
SCALE, FIG_DIR, RESULT_DIR = analysis.notebook_dirs(NAME)
CONFIG = {
    "small": dict(n_samples=96, seq_len=8, layers=(0, 1, 15, 29), n_mc=32),
    # every third block (and the last): the sigma grid makes each layer 16 noise levels; see notebooks/README
    "large": dict(n_samples=1024, seq_len=10, layers=(0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29), n_mc=128),
}[SCALE]
BAR = analysis.NEGLIGIBLE_NATS
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
res = analysis.text_vs_icl(lm, text="text:kjv", icl="icl:country", n_samples=CONFIG["n_samples"],
                           seq_len=CONFIG["seq_len"], layers=CONFIG["layers"], n_mc=CONFIG["n_mc"])
for k, r in res.items():
    print(f"{k}: {r['description']}; e.g. {r['examples'][0]!r}")
    print(f"  compared at {r['comparison']['reason']}; own sweep: {r['reported']['reason']}")
    print("  layer-mean E(t):", np.round(r["curve_layer_mean"], 2).tolist(), "over layers", r["curve_n_layers"].tolist())
    print("  per-layer IE:", np.round(r["ie"], 2).tolist())
    print("  prefix entropy:", np.round(r["prefix_entropy"], 2).tolist())

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
T = CONFIG["seq_len"]
SIGMA = res["text"]["comparison"]["sigma"]
for k, r in res.items():
    line, = axes[0].plot(range(T), r["curve_layer_mean"], "o-", label=f"{k}: E(t), mean over measured layers")
    axes[0].plot(range(T), r["prefix_entropy"], "--", color=line.get_color(), label=f"{k}: prefix entropy")
    axes[1].errorbar(r["layers"], r["ie"], yerr=np.abs(r["ie_ci"].T - r["ie"]), fmt="o-", ms=3, label=k)
axes[0].set_yscale("symlog", linthresh=0.1)
axes[0].set(xlabel="token position t", ylabel="nats (symlog)", title=f"E(t), sigma={SIGMA:g}, N={CONFIG['n_samples']}")
axes[1].axhline(0, color="grey", lw=0.5)
axes[1].set(xlabel="block", ylabel="IE (nats)",
            title=f"IE per layer (last token), sigma={SIGMA:g}, 95% CI; gaps: not measured")
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_curves.png", dpi=110)

# %%
numbers = {"scale": SCALE, "config": CONFIG, "sigma": SIGMA, "units": "nats", "negligible_nats": BAR,
           "comparison": res["text"]["comparison"]}
for k, r in res.items():
    numbers[k] = {key: r[key] for key in ("layers", "sigma", "reported", "token_curve", "token_curve_ci",
                                          "curve_layer_mean", "curve_n_layers", "ie", "ie_ci", "ie_text",
                                          "ie_measured", "ie_reason", "n_layers_measured", "n_layers", "ie_mean",
                                          "prefix_entropy", "mi_macro", "mi_micro_mean", "mi_macro_ceiling",
                                          "macro_saturated", "macro_sample_specific", "grid", "examples")}


def movement(curve):
    """{"move": largest |E(t) - E(0)|, "climb": E(T-1) - E(0), "steps_up": fraction of the measured steps that go
    up, "n_steps"} of a layer-mean curve (NaN where not measured)."""
    c = np.asarray(curve, float)
    d = np.diff(c)
    d = d[np.isfinite(d)]
    ok = np.isfinite(c[0]) and np.isfinite(c).any()
    return {"move": float(np.nanmax(np.abs(c - c[0]))) if ok else float("nan"),
            "climb": float(c[-1] - c[0]), "steps_up": float(np.mean(d > 0)) if len(d) else float("nan"),
            "n_steps": len(d)}


mv = {k: movement(res[k]["curve_layer_mean"]) for k in ("text", "icl")}
numbers["movement"] = mv
comp = res["text"]["comparison"]


def rises(m) -> str:
    """A token-by-token rise: judged where E(t) moves by more than BAR from E(0), held where it climbs by more."""
    if not np.isfinite(m["move"]) or m["move"] <= BAR:
        return "cannot be tested at measurable resolutions"
    return "holds" if m["climb"] > BAR else "does not hold"


v_text, v_icl = rises(mv["text"]), rises(mv["icl"])
if v_text == v_icl == "holds":
    v_steady = "holds" if mv["text"]["steps_up"] < mv["icl"]["steps_up"] else "does not hold"
else:
    v_steady = "cannot be tested at measurable resolutions"  # no rise on both sides: nothing to compare
LABEL = {"text": "KJV text", "icl": "country lists"}
describe = lambda k: (  # noqa: E731
    f"on {LABEL[k]} the layer-mean E(t) goes from {res[k]['curve_layer_mean'][0]:.2f} to "
    f"{res[k]['curve_layer_mean'][-1]:.2f} nats (at most {mv[k]['move']:.2f} away from E(0)), up at "
    f"{mv[k]['steps_up']:.0%} of its {mv[k]['n_steps']} measured steps")
numbers["verdicts"] = [
    analysis.finding("E(t) rises token by token on natural text", v_text, describe("text"), sigma=SIGMA,
                     n_layers_measured=comp["n_layers_measured_in_all"], n_layers=len(res["text"]["layers"])),
    analysis.finding("E(t) rises less steadily on text than on ICL lists", v_steady,
                     describe("text") + "; " + describe("icl") + f" (a rise on ICL lists {v_icl})", sigma=SIGMA,
                     n_layers_measured=comp["n_layers_measured_in_all"], n_layers=len(res["text"]["layers"])),
]
own = {k: r["reported"]["setting"] for k, r in res.items()}
found = (
    f"What we found. KJV windows and country lists (T = {T}, N = {CONFIG['n_samples']:,} each) are compared at "
    f"sigma = {SIGMA:g}, where IE is measured in both at {comp['n_layers_measured_in_all']} of "
    f"{len(res['text']['layers'])} layers (own reported settings: text {own['text']}, ICL {own['icl']}). There, "
    + describe("text") + "; " + describe("icl")
    + f". Mean IE over the measured layers: text {res['text']['ie_mean']:.2f} ({res['text']['n_layers_measured']} "
    f"layers), ICL {res['icl']['ie_mean']:.2f} nats ({res['icl']['n_layers_measured']} layers); the macro MI is at "
    f"most {np.nanmax(res['text']['mi_macro']):.2f} (text) and {np.nanmax(res['icl']['mi_macro']):.2f} (ICL) nats, "
    f"against prefix entropies that end at {res['text']['prefix_entropy'][-1]:.2f} and "
    f"{res['icl']['prefix_entropy'][-1]:.2f} nats (ln N at most). The paper's token-by-token rise on text: {v_text}"
    + (f" (E(t) moves by more than {BAR} nat, but not up)" if v_text == "does not hold" else
       f" (E(t) stays within {BAR} nat of E(0))" if v_text.startswith("cannot") else "")
    + f"; on ICL lists: {v_icl}; less steady on text than on ICL lists: {v_steady}"
    + (" (that needs a rise on both)." if v_steady.startswith("cannot") else "."))
print(found)
numbers["found"] = found
numbers["seconds"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
