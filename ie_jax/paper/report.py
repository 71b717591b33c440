"""Figures (PNG) and one self-contained HTML page for IE results.

figures(result) draws: IE per layer with its 95% band and ceiling (bounds as triangles where IE is not measured);
MI macro vs mean micro per layer with ceilings; a layer x token heatmap of E(t) (or of the micro MI when no token
curve was measured); and, for a sigma grid, a layer x sigma heatmap of IE(sigma) (blank where not measured).
write_report(dir) finds every run under `dir` (directories holding result.json), writes their PNGs next to
them and one report.html with the images inlined (base64), so the page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
import pathlib

import numpy as np

from ie_jax.ie.result import INDEPENDENCE_NOTE
from ie_jax.ie.result import IEResult
from ie_jax.fileio import atomic_write_text
from ie_jax.ie.store import unfinished_runs

HOW_TO_READ = """
<p><b>What IE is.</b> Information Emergence of block <i>l</i> compares how much information the block passes
from its input to its output for the whole sequence (the <i>macro</i> variable: the last token, which has seen
every token before it) with how much it passes for tokens taken one at a time (the <i>micro</i> variables):
IE(l) = MI(macro input; macro output) &minus; mean over tokens of MI(micro input; micro output).
Positive IE means the block transmits more about the sequence as a whole than about its parts.</p>
<p><b>How to read the figures.</b> Lines are point estimates, bands their 95% intervals (IE's band combines the
MI intervals assuming independent estimates). Dashed lines are <i>ceilings</i>: no estimate can exceed them
(the entropy of the distinct inputs in the sample, an estimator's own cap such as ln(batch) for InfoNCE). A
hollow marker means <i>saturated</i>: the estimate sits within the margin of a ceiling, so it is a lower bound
only and says more about the estimator or the sample size than about the layer; a cross means an MI estimate
lies above what the sample can support (an estimator artefact). For a deterministic network
fed discrete inputs, the true MI between continuous states is the entropy of the inputs at every layer where
distinct inputs stay distinct; the exact-counting and noise-regularised estimators (sigma relative to each
layer's centred standard deviation) give well-defined numbers, which grow with the number of samples N. Read
every number with N, the estimator and the flags next to it.</p>
<p><b>When IE is a number.</b> Only where both terms are measurements: exact (counted over discrete states the
sample covers) or verified below their ceilings. Elsewhere the tables say <i>&ge; x</i> (the macro MI is a lower
bound, the micro MIs measured), <i>&le; x</i> (a micro MI is a lower bound) or <i>n/a</i>, with the reason, and
totals add the measured layers only. The noise-regularised IE(&sigma;) is reported at the smallest &sigma; of its
grid where the most layers are measured; below it the noise cannot hide which sample a state came from
(<i>sample_specific</i>: leaving each draw's own sample out lowers the value), and the number would describe
these N samples rather than the data. The layer &times; &sigma; heatmap shows the whole grid.</p>
<p><b>E(t)</b> (heatmap) is the same difference after <i>t</i>+1 tokens: MI at position <i>t</i> of the full pass
minus the mean micro MI of tokens 0..<i>t</i>.</p>
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_ticks(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _title(r: IEResult) -> str:
    m = r.metadata
    model = m.get("model", {}).get("name", "?")
    data = m.get("data", {}).get("spec", "?")
    return f"{model} | {data} | N={m.get('n_samples', '?')}, T={r.seq_len} | micro: {r.micro_mode}"


def figure_ie(r: IEResult):
    """IE per layer with 95% band for every setting, IE ceilings dashed, saturated points hollow."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.array(r.layers)
    shown = [r.selected] if len(r.settings) > 3 else range(len(r.settings))  # a sigma grid: its heatmap has the rest
    for i in shown:
        s = r.select(i)
        ie, ci, flags = s.ie, s.ie_ci, s.ie_flags
        tot = s.totals["sum_over_layers"]
        (line,) = ax.plot(x, ie, "-", lw=1.6, label=f"IE, {s.setting} (sum over {tot['n_layers_measured']}/"
                                                      f"{tot['n_layers']} measured layers {tot['value']:.2f})")
        c = line.get_color()
        bound, bound_value = np.array(s.ie_bound, dtype=object), s.ie_bound_value
        for kind, marker in (("lower", "^"), ("upper", "v")):
            at = bound == kind
            ax.plot(x[at], bound_value[at], marker, color=c, mfc="none", ms=6)
        ax.fill_between(x, ci[:, 0], ci[:, 1], color=c, alpha=0.2, lw=0)
        sat = np.array([f["macro_saturated"] or f["micro_saturated"] for f in flags])
        ax.plot(x[~sat], ie[~sat], "o", color=c, ms=4)
        ax.plot(x[sat], ie[sat], "o", mfc="none", mec=c, ms=6)
        above = np.array([f["above_ceiling"] for f in flags])
        ax.plot(x[above], ie[above], "x", color=c, ms=7)
        ceiling = np.array([f["ie_ceiling"] for f in flags], dtype=float)
        if np.isfinite(ceiling).any():
            ax.plot(x, ceiling, "--", color=c, lw=1, alpha=0.8)
    ax.axhline(0, color="k", lw=0.5)
    _integer_ticks(ax)
    ax.set_xlabel("block (layer)")
    ax.set_ylabel(f"IE ({r.units})")
    ax.set_title(_title(r), fontsize=9)
    ax.plot([], [], "k--", lw=1, label="ceiling (macro ceiling - mean micro)")
    ax.plot([], [], "o", mfc="none", mec="k", label="saturated: bound only")
    ax.plot([], [], "^", mfc="none", mec="k", label="not measured: IE at least this")
    ax.plot([], [], "v", mfc="none", mec="k", label="not measured: IE at most this")
    ax.plot([], [], "x", color="k", label="an MI above its ceiling: estimator artefact")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def figure_mi(r: IEResult):
    """MI macro vs mean micro per layer (selected setting), with bands and ceilings."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    x = np.array(r.layers)
    macro, mci = r.mi_macro, r.mi_macro_ci
    (l1,) = ax.plot(x, macro, "o-", ms=3, label="MI macro (last token, whole context)")
    ax.fill_between(x, mci[:, 0], mci[:, 1], color=l1.get_color(), alpha=0.2, lw=0)
    micro = r.mi_micro_mean
    mse = np.sqrt((r.mi_micro_stderr ** 2).sum(-1)) / r.seq_len
    (l2,) = ax.plot(x, micro, "s-", ms=3, label=f"MI micro, mean over {r.seq_len} tokens ({r.micro_mode})")
    ax.fill_between(x, micro - 1.96 * mse, micro + 1.96 * mse, color=l2.get_color(), alpha=0.2, lw=0)
    ceiling = r.mi_macro_ceiling
    if np.isfinite(ceiling).any():
        ax.plot(x, ceiling, "--", color=l1.get_color(), lw=1, label="macro ceiling")
    data = r.metadata.get("data", {})
    nats_to = 1.0 if r.units == "nats" else 1 / math.log(2)
    for key, style, name in (("sample_entropy_nats", ":", "entropy of the sample's sequences"),
                             ("generating_entropy_nats", "-.", "entropy of the generator")):
        if data.get(key) is not None:
            ax.axhline(data[key] * nats_to, color="gray", ls=style, lw=1, label=f"{name} ({data[key] * nats_to:.2f})")
    _integer_ticks(ax)
    ax.set_xlabel("block (layer)")
    ax.set_ylabel(f"MI ({r.units})")
    ax.set_title(f"{_title(r)}\n{r.setting}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def figure_heatmap(r: IEResult):
    """Layer x token heatmap of E(t) (or of the micro MI without a token curve)."""
    plt = _plt()
    if r.has_token_curve:
        grid, name = r.token_curve, "E(t)"
    else:
        grid, name = r.mi_micro, "MI micro"
    fig, ax = plt.subplots(figsize=(1.6 + 0.45 * r.seq_len, 1.5 + 0.16 * len(r.layers)))
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(r.seq_len))
    ax.set_yticks(range(len(r.layers)))
    ax.set_yticklabels([str(l) for l in r.layers], fontsize=6)
    ax.set_xlabel("token position t")
    ax.set_ylabel("block (layer)")
    ax.set_title(f"{name} ({r.units}), {r.setting}", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def figure_sigma_heatmap(r: IEResult):
    """Layer x sigma heatmap of IE(sigma) for a noise grid: blank where IE is not measured at that sigma, the
    reported sigma outlined."""
    plt = _plt()
    sigmas = [p.get("sigma") for p in r.metadata.get("setting_params", [])]
    grid = np.array([r.select(i).ie for i in range(len(r.settings))]).T  # [L, S]
    fig, ax = plt.subplots(figsize=(2.0 + 0.42 * len(sigmas), 1.6 + 0.16 * len(r.layers)))
    finite = grid[np.isfinite(grid)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", origin="lower", cmap="RdBu_r", vmin=-top, vmax=top,
                   interpolation="nearest")
    ax.set_xticks(range(len(sigmas)))
    ax.set_xticklabels([f"{s:g}" for s in sigmas], fontsize=6, rotation=90)
    ax.set_yticks(range(len(r.layers)))
    ax.set_yticklabels([str(l) for l in r.layers], fontsize=6)
    ax.add_patch(plt.Rectangle((r.selected - 0.5, -0.5), 1, len(r.layers), fill=False, lw=1.5, ec="k"))
    ax.set_xlabel("sigma (noise / centred std of each variable); outlined: reported")
    ax.set_ylabel("block (layer)")
    ax.set_title(f"IE(sigma) ({r.units}), blank: not measured; N={r.metadata.get('n_samples', '?')}", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


FIGURES = {"ie_per_layer": figure_ie, "mi_macro_vs_micro": figure_mi, "layer_token_heatmap": figure_heatmap}


def figures(r: IEResult, out_dir=None) -> dict:
    """{name: Figure}; written as out_dir/<name>.png when out_dir is given. A result over a noise sigma grid
    also gets "ie_sigma_heatmap"."""
    figs = {name: make(r) for name, make in FIGURES.items()}
    if len(r.settings) > 1 and all(p.get("sigma") is not None for p in r.metadata.get("setting_params", [{}])):
        figs["ie_sigma_heatmap"] = figure_sigma_heatmap(r)
    if out_dir is not None:
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, fig in figs.items():
            fig.savefig(out_dir / f"{name}.png", dpi=110)
    return figs


def find_runs(directory) -> list[pathlib.Path]:
    """Run directories (holding result.json) at or under `directory`."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    runs = sorted({p.parent for p in directory.rglob("result.json")})
    if not runs:
        unfinished = unfinished_runs(directory)
        started = f" ({len(unfinished)} unfinished: {', '.join(map(str, unfinished))})" if unfinished else ""
        raise ValueError(f"{directory} holds no finished run (no result.json){started}: run `ie-jax measure --out "
                         f"DIR` first; an interrupted run resumes when rerun with the same arguments")
    return runs


def write_report(directory) -> pathlib.Path:
    """PNG figures next to every run under `directory` and one self-contained `directory`/report.html."""
    plt = _plt()
    directory = pathlib.Path(directory)
    sections = []
    for run in find_runs(directory):
        r = IEResult.from_json(run)
        figs = figures(r, out_dir=run)
        images = []
        for name, fig in figs.items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110)
            plt.close(fig)
            images.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')
        sections.append(_section(run.relative_to(directory) if run != directory else pathlib.Path("."), r, images))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ie_jax report</title><style>{_CSS}</style>"
            f"</head><body><h1>Information Emergence report</h1>{HOW_TO_READ}{''.join(sections)}"
            f"{_unfinished_section(directory)}"
            f"<p class='note'>{html.escape(INDEPENDENCE_NOTE)}.</p></body></html>")
    return atomic_write_text(directory / "report.html", page)


def _unfinished_section(directory: pathlib.Path) -> str:
    """Runs started under `directory` that hold no result yet: listed, not skipped silently."""
    runs = unfinished_runs(directory)
    if not runs:
        return ""
    items = "".join(f"<li>{html.escape(str(r.relative_to(directory) if r != directory else '.'))}</li>" for r in runs)
    return (f"<h2>Unfinished runs</h2><p>Started but holding no result.json (interrupted or still running): rerun "
            f"the same ie-jax measure command to resume.</p><ul>{items}</ul>")


def _section(name, r: IEResult, images: list[str]) -> str:
    m = r.metadata
    data = m.get("data", {})
    meta_rows = [
        ("model", f"{m.get('model', {}).get('name')} ({m.get('model', {}).get('arch')}, "
                  f"{m.get('model', {}).get('num_layers')} blocks, d={m.get('model', {}).get('hidden_size')})"),
        ("data", f"{data.get('spec')}: {data.get('description')}"),
        ("examples", " | ".join(data.get("examples") or [])),
        ("samples N, tokens T", f"{m.get('n_samples')}, {r.seq_len}"),
        ("distinct sequences", data.get("n_distinct")),
        ("estimator", f"{', '.join(r.settings)}"),
        ("micro variables", m.get("variables", r.micro_mode)),
        ("units", r.units),
        ("time (s)", ", ".join(f"{k} {v:.0f}" for k, v in m.get("timing_s", {}).items())),
        ("versions / devices", f"{m.get('versions')} / {', '.join(m.get('devices', []))}"),
    ]
    meta = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in meta_rows)
    tables = []
    why = m.get("selected_setting", {}).get("reason")
    if why and len(r.settings) > 1:
        tables.append(f"<p>Reported setting: {html.escape(why)}. The tables of the other settings follow it.</p>")
    for i in [r.selected] + [i for i in range(len(r.settings)) if i != r.selected]:
        s = r.select(i)
        rows = []
        for l, (layer, text) in enumerate(zip(s.layers, s.ie_text(3))):
            f = s.ie_flags[l]
            interval = f"[{s.ie_ci[l, 0]:.3f}, {s.ie_ci[l, 1]:.3f}]" if f["ie_measured"] else html.escape(f["ie_reason"])
            rows.append(
                f"<tr><td>{layer}</td><td>{html.escape(text)}</td><td>{interval}</td>"
                f"<td>{f['ie_ceiling']:.3f}</td><td>{s.mi_macro[l]:.3f}</td><td>{s.mi_macro_ceiling[l]:.3f}</td>"
                f"<td>{s.mi_micro_mean[l]:.3f}</td><td>{html.escape(', '.join(f['flags']) or '-')}</td></tr>")
        tables.append(
            f"<h3>{html.escape(s.setting)}</h3><p>{html.escape(s.totals_text())}</p><table><tr><th>block</th><th>IE</th>"
            f"<th>95% CI, or why no number</th><th>IE ceiling</th><th>MI macro</th><th>macro ceiling</th>"
            f"<th>MI micro (mean)</th><th>flags</th></tr>{''.join(rows)}</table>")
    return (f"<h2>{html.escape(str(name))}</h2><table class='meta'>{meta}</table>"
            f"<div class='figs'>{''.join(images)}</div>{''.join(tables)}")


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}table.meta td,table.meta th{text-align:left}img{max-width:100%;margin:.3em 0}
.figs{display:flex;flex-wrap:wrap;gap:.5em}.note{color:#666;font-size:.85em}"""
