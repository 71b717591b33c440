# %% [markdown]
# # 6. Estimator sensitivity: how much do the conclusions depend on the estimator?
#
# `ie_jax.paper.analysis.estimator_sensitivity` measures the same per-layer IE of SmolLM2-135M-Instruct (fp32) on
# ICL country lists (4 shots, T = 8) under: the noise-regularised MI (sigma = 1 centred std) with isolated
# and in-context micro; exact counting of distinct states (well defined for this discrete data); the Gaussian
# closed form; the fast neural protocol with InfoNCE and with Donsker-Varadhan, and InfoNCE with in-context
# micro; and the paper's protocol (DV, concat critic, full batch). On this CPU the paper protocol runs only a
# few hundred steps at most instead of its 10,000 (said again in the findings), and the fast protocol runs
# shortened too, so its neural numbers are indicative only.
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
from ie_jax.ie import data as data_lib

NAME = "estimator_sensitivity"
SCALE, FIG_DIR, RESULT_DIR = analysis.notebook_dirs(NAME)
CONFIG = {
    "small": dict(n_samples=600, layers=(0, 1, 29), fast_steps=40, batch_size=64, paper_steps=10, n_mc=32),
    "large": dict(n_samples=1024, layers=(0, 1, 8, 15, 22, 29), fast_steps=300, batch_size=128,
                  paper_steps=100, n_mc=128),
}[SCALE]
# The neural critic's own held-out bound, as the committed results were measured (before the fast protocol's
# selection default, issue 16): this notebook compares bounds and their caps, not the default's choice.
fast = dict(protocol="fast", steps=CONFIG["fast_steps"], batch_size=CONFIG["batch_size"], select=False,
            test_fraction=0.2, eval_batch_size=CONFIG["batch_size"])
SETTINGS = {
    "noise sigma=1": dict(estimator="noise", sigma=1.0, n_mc=CONFIG["n_mc"]),
    "noise sigma=1, in-context micro": dict(estimator="noise", sigma=1.0, n_mc=CONFIG["n_mc"], micro="in_context"),
    "exact counting": dict(estimator="exact_discrete"),
    "gaussian": dict(estimator="gaussian"),
    "fast InfoNCE": dict(fast, bound="infonce"),
    "fast DV": dict(fast, bound="dv"),
    # the in-context InfoNCE compiles another critic program: large scale only (the noise pair covers it at small)
    **({"fast InfoNCE, in-context micro": dict(fast, bound="infonce", micro="in_context")} if SCALE == "large" else {}),
    # the paper protocol (full batch, concat critic) takes about a minute per compile on 2 cores: large scale only
    **({f"paper (DV, {CONFIG['paper_steps']} of 10,000 steps)": dict(protocol="paper", steps=CONFIG["paper_steps"])}
       if SCALE == "large" else {}),
}
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
data = data_lib.icl_lists(lm.tokenizer, "country", n_samples=CONFIG["n_samples"], shots=4, seed=0)
res = analysis.estimator_sensitivity(lm, data, settings=SETTINGS, layers=CONFIG["layers"])
for (name, r), sec in zip(res["settings"].items(), res["seconds"]):
    print(f"{name:40s} IE {np.round(r['ie'], 2).tolist()} macro {np.round(r['mi_macro'], 2).tolist()} "
          f"saturated {r['macro_saturated'].astype(int).tolist()} ({sec:.0f} s)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for name, r in res["settings"].items():
    axes[0].plot(r["layers"], r["ie"], "o-", ms=3, label=name)
    sat = r["macro_saturated"]
    axes[0].plot(r["layers"][sat], r["ie"][sat], "kx", ms=7)
axes[0].set_yscale("symlog", linthresh=1.0)
axes[0].set(xlabel="block", ylabel="IE (nats, symlog)", title="IE per layer by estimator (x: macro saturated)")
axes[0].legend(fontsize=6)
im = axes[1].imshow(res["rank_agreement"], vmin=-1, vmax=1, cmap="RdBu")
axes[1].set_xticks(range(len(res["names"])), [n[:22] for n in res["names"]], rotation=60, ha="right", fontsize=6)
axes[1].set_yticks(range(len(res["names"])), [n[:22] for n in res["names"]], fontsize=6)
axes[1].set_title("Spearman agreement of the layer profiles")
fig.colorbar(im, ax=axes[1])
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_ie.png", dpi=110)

# %%
names = res["names"]
ie = np.array([res["settings"][n]["ie"] for n in names])
numbers = {"scale": SCALE, "config": CONFIG, "units": "nats", "names": names, "ie": ie,
           "rank_agreement": res["rank_agreement"], "sign_agreement": res["sign_agreement"],
           "seconds": res["seconds"], "layers": res["settings"][names[0]]["layers"],
           "settings": {n: {k: r[k] for k in ("ie", "ie_ci", "mi_macro", "mi_micro_mean", "mi_macro_ceiling",
                                               "macro_saturated", "setting")}
                        for n, r in res["settings"].items()}}
ref = names.index("exact counting")
bounded = [i for i, n in enumerate(names) if n != "gaussian"]
spread = ie[bounded].max(0) - ie[bounded].min(0)
counting_macro = float(np.max(res["settings"]["exact counting"]["mi_macro"]))
neural_macro = np.array([res["settings"][n]["mi_macro"][1:] for n in names
                         if SETTINGS[n].get("estimator") is None])
layer0_negative = int(np.sum(ie[:, 0] < -0.1)) if CONFIG["layers"][0] == 0 else None
rank_ref = res["rank_agreement"][ref]
n_sat = {n: int(res["settings"][n]["macro_saturated"].sum()) for n in names}
found = (
    f"What we found. Across {len(names)} settings on the same {CONFIG['n_samples']} ICL lists, the IE of one layer "
    f"varies by {spread.min():.1f} to {spread.max():.1f} nats between the estimators other than the Gaussian closed "
    f"form, which is off the scale: {np.nanmin(ie[names.index('gaussian')]):.0f} to {np.nanmax(ie[names.index('gaussian')]):.0f} nats). "
    "Against exact counting, the layer-profile rank agreement is "
    + ", ".join(f"{n} {rank_ref[i]:.2f}" for i, n in enumerate(names) if i != ref)
    + ". Macro estimates flagged saturated (at a cap or ceiling, lower bound only): "
    + ", ".join(f"{n} {k}/{len(CONFIG['layers'])}" for n, k in n_sat.items())
    + f". The counting value is the macro MI's true value here (the sample entropy, {counting_macro:.2f} nats from "
    f"layer 1 on); the neural macro estimates lie between {neural_macro.min():.2f} and {neural_macro.max():.2f} nats "
    "(a saturated flag on them marks an estimator cap or this ceiling). In-context micro changes the subtracted term (position t of the full pass instead of the token alone), so "
    f"its IE differs from isolated micro by {np.abs(ie[names.index('noise sigma=1')] - ie[names.index('noise sigma=1, in-context micro')]).mean():.2f} "
    f"nats on average (noise estimator). "
    + (f"The paper protocol ran only {CONFIG['paper_steps']} of its 10,000 steps on this CPU" if SCALE == "large" else
       "The paper protocol is left out at small scale")
    + f", and the fast protocol ran {CONFIG['fast_steps']} of its 1,500 steps, so the neural values are not converged. "
    f"At layer 0 the macro input is the constant ',' embedding (MI 0), and {layer0_negative} of {len(names)} settings "
    "give a negative IE there"
    + (" (the rest do not resolve even the micro MI)" if layer0_negative < len(names) else "")
    + "; beyond such data-driven facts, "
    "layer trends and magnitudes follow the estimator, so IE values should always be quoted with it.")
print(found)
numbers["found"] = found
numbers["seconds_total"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
