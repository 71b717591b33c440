# %% [markdown]
# # 6. Estimator sensitivity: how much do the conclusions depend on the estimator?
#
# `ie_jax.paper.analysis.estimator_sensitivity` measures the same per-layer IE of SmolLM2-135M-Instruct (fp32) on
# ICL country lists (4 shots, T = 8) under: the default of `ie_jax.measure` (noise-regularised IE over its sigma
# grid, read at the reported sigma) with isolated and with in-context micro; the noise estimator at sigma = 1 alone
# (the notebooks' earlier choice); exact counting of distinct states; the Gaussian closed form; the fast neural
# protocol with InfoNCE and with Donsker-Varadhan, and InfoNCE with in-context micro; and the paper's protocol (DV,
# concat critic, full batch). An IE is a number only where both of its terms are measurements; the table prints
# bounds (">=", "<=") and "n/a" elsewhere. On this CPU the paper protocol runs only a few hundred steps at most
# instead of its 10,000 (said again in the findings), and the fast protocol runs shortened too.
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
    "small": dict(n_samples=400, layers=(0, 1, 29), fast_steps=40, batch_size=64, paper_steps=10, n_mc=32),
    "large": dict(n_samples=1024, layers=(0, 1, 8, 15, 22, 29), fast_steps=300, batch_size=128,
                  paper_steps=100, n_mc=128),
}[SCALE]
# The neural critic's own held-out bound, as the committed results were measured (before the fast protocol's
# selection default, issue 16): this notebook compares bounds and their caps, not the default's choice.
fast = dict(protocol="fast", steps=CONFIG["fast_steps"], batch_size=CONFIG["batch_size"], select=False,
            test_fraction=0.2, eval_batch_size=CONFIG["batch_size"])
SETTINGS = {
    "noise, default grid": dict(n_mc=CONFIG["n_mc"]),
    "noise, default grid, in-context micro": dict(n_mc=CONFIG["n_mc"], micro="in_context"),
    "noise sigma=1": dict(estimator="noise", sigma=1.0, n_mc=CONFIG["n_mc"]),
    "exact counting": dict(estimator="exact_discrete"),
    "fast InfoNCE": dict(fast, bound="infonce"),
    # the Gaussian closed form needs more samples than the 576 dimensions; it and DV run at large scale only (time)
    **({"gaussian": dict(estimator="gaussian"), "fast DV": dict(fast, bound="dv")} if SCALE == "large" else {}),
    # the in-context InfoNCE compiles another critic program: large scale only (the noise pair covers it at small)
    **({"fast InfoNCE, in-context micro": dict(fast, bound="infonce", micro="in_context")} if SCALE == "large" else {}),
    # the paper protocol (full batch, concat critic) takes about a minute per compile on 2 cores: large scale only
    **({f"paper (DV, {CONFIG['paper_steps']} of 10,000 steps)": dict(protocol="paper", steps=CONFIG["paper_steps"])}
       if SCALE == "large" else {}),
}
PAPER = next((n for n in SETTINGS if n.startswith("paper")), None)
t_start = time.perf_counter()

# %%
lm = ie_jax.load_model("default")
data = data_lib.icl_lists(lm.tokenizer, "country", n_samples=CONFIG["n_samples"], shots=4, seed=0)
res = analysis.estimator_sensitivity(lm, data, settings=SETTINGS, layers=CONFIG["layers"])
for (name, r), sec in zip(res["settings"].items(), res["seconds"]):
    print(f"{name:40s} {r['setting']}: IE {r['ie_text']} ({r['n_layers_measured']} of {r['n_layers']} measured) macro "
          f"{np.round(r['mi_macro'], 2).tolist()} saturated {r['macro_saturated'].astype(int).tolist()} ({sec:.0f} s)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for name, r in res["settings"].items():
    line, = axes[0].plot(r["layers"], r["ie"], "o-", ms=3, label=f"{name} ({r['n_layers_measured']}/{r['n_layers']})")
    b = np.array([v if k is not None else np.nan for v, k in zip(r["ie_bound_value"], r["ie_bound"])])
    axes[0].plot(r["layers"], b, "^", mfc="none", color=line.get_color(), ms=6)
axes[0].set_yscale("symlog", linthresh=0.1)
axes[0].set(xlabel="block", ylabel="IE (nats, symlog)",
            title="IE per layer by estimator (lines: measured; open triangles: bounds)")
axes[0].legend(fontsize=6)
agree = np.ma.masked_invalid(res["rank_agreement"])
im = axes[1].imshow(agree, vmin=-1, vmax=1, cmap="RdBu")
axes[1].set_xticks(range(len(res["names"])), [n[:22] for n in res["names"]], rotation=60, ha="right", fontsize=6)
axes[1].set_yticks(range(len(res["names"])), [n[:22] for n in res["names"]], fontsize=6)
axes[1].set_title("Spearman agreement over commonly measured layers (blank: < 3)")
fig.colorbar(im, ax=axes[1])
fig.tight_layout()
fig.savefig(FIG_DIR / f"{NAME}_ie.png", dpi=110)

# %%
names = res["names"]
ie = np.array([res["settings"][n]["ie"] for n in names])
numbers = {"scale": SCALE, "config": CONFIG, "units": "nats", "names": names, "ie": ie,
           "n_layers_measured": res["n_layers_measured"], "n_common": res["n_common"],
           "rank_agreement": res["rank_agreement"], "sign_agreement": res["sign_agreement"],
           "seconds": res["seconds"], "layers": res["settings"][names[0]]["layers"],
           "settings": {n: {k: r[k] for k in ("ie", "ie_ci", "ie_text", "ie_measured", "ie_bound", "ie_bound_value",
                                               "ie_reason", "n_layers_measured", "n_layers", "sigma", "setting",
                                               "reported", "mi_macro", "mi_micro_mean", "mi_macro_ceiling",
                                               "macro_saturated", "macro_sample_specific", "grid")}
                        for n, r in res["settings"].items()}}
L = len(CONFIG["layers"])
default, in_ctx = res["settings"]["noise, default grid"], res["settings"]["noise, default grid, in-context micro"]
full = [n for n in names if res["settings"][n]["n_layers_measured"] == L]
none = [n for n in names if res["settings"][n]["n_layers_measured"] == 0]
bounds = {n: sum(b is not None for b in res["settings"][n]["ie_bound"]) for n in names}
both = np.isfinite(default["ie"]) & np.isfinite(in_ctx["ie"])
counting_macro = float(np.max(res["settings"]["exact counting"]["mi_macro"]))
paper = res["settings"].get(PAPER)
hard = ("saturated", "above_ceiling", "sample_specific")
if paper is None:
    v_paper, e_paper = "cannot be tested at measurable resolutions", "the paper protocol is not run at small scale"
else:
    reasons = [x for x in paper["ie_reason"] if x]
    limited = sum(any(h in x for h in hard) for x in reasons)
    v_paper = ("holds" if paper["n_layers_measured"] == L else
               "does not hold" if limited == len(reasons) else "cannot be tested at measurable resolutions")
    e_paper = (f"after {CONFIG['paper_steps']} of its 10,000 steps IE is measured at {paper['n_layers_measured']} of {L} "
               f"layers; at {limited} of the other {len(reasons)} a term is saturated, above its ceiling or "
               "sample-specific, which more steps do not change")
numbers["verdicts"] = [analysis.finding(
    "The paper's estimator (DV critic) gives IE as a measurement on these states", v_paper, e_paper,
    n_layers_measured=None if paper is None else paper["n_layers_measured"], n_layers=L)]
found = (
    f"What we found. Across {len(names)} settings on the same {CONFIG['n_samples']:,} ICL lists, IE is a measurement at "
    f"every one of the {L} layers only under " + (", ".join(f'"{n}"' for n in full) or "none") + "; under "
    + (", ".join(f'"{n}"' for n in none) or "none") + " it is measured at no layer, and bounds replace it at "
    + ", ".join(f'{bounds[n]} ("{n}")' for n in names if bounds[n]) + " layers. "
    f"The default reports sigma = {default['sigma']:g}, where IE lies in [{np.nanmin(default['ie']):.2f}, "
    f"{np.nanmax(default['ie']):.2f}] nats; with in-context micro it reports sigma = {in_ctx['sigma']:g} and "
    + (f"differs from isolated micro by {np.abs(default['ie'] - in_ctx['ie'])[both].mean():.2f} nats on average over "
       f"the {int(both.sum())} layers measured in both. " if both.any() else "shares no measured layer with it. ")
    + f"The counting value of the macro MI is the sample's ({counting_macro:.2f} nats from layer 1 on, one state per "
    "sequence), flagged as a lower bound, so exact counting measures IE only where the macro input is constant. "
    + (f"The paper protocol ran only {CONFIG['paper_steps']} of its 10,000 steps on this CPU" if SCALE == "large" else
       "The paper protocol is left out at small scale")
    + f", and the fast protocol ran {CONFIG['fast_steps']} of its 1,500 steps; the neural values are not converged, and "
    "where they reach the sample's ceiling more steps would not make them measurements. Layer profiles can only be "
    "compared over commonly measured layers (the rank-agreement figure); IE values should always be quoted with the "
    "estimator and sigma they were read at.")
print(found)
numbers["found"] = found
numbers["seconds_total"] = time.perf_counter() - t_start
(RESULT_DIR / f"{NAME}.json").write_text(json.dumps(jsonable(numbers), indent=1))
