"""Sample both bmi suites with bmi's own samplers (run in the bmi venv: /work/peer-venvs/bmi/bin/python).

v1: the 40 tasks of `bmi.benchmark.BENCHMARK_TASKS` (benchmark-mi 0.1.3), seed = task index, as in
    benchmarks/bmi_suite.py.
v2: the 26 tasks of cbg-ethz/bmi `workflows/benchmark/v2/config.py` (UNSCALED_TASKS, each wrapped by bmi's
    `transform_rescale` as that config does), built from the task constructors that ship in the released
    benchmark-mi 0.1.3; seeds 0..9 (the suite's 10 seeds; the config on the default branch runs range(3) with a
    "TODO: 10"). The mixture tasks' true MI is bmi's own Monte Carlo value (100,000 points), recorded with its
    standard error.

Writes runs/peers_samples.npz (float32 arrays "x:<key>", "y:<key>" and a JSON "meta") and the task list into
benchmarks/results/peers_bmi.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def v2_tasks():
    """The 26 tasks of bmi's workflows/benchmark/v2/config.py, from benchmark-mi 0.1.3's constructors."""
    import bmi.benchmark.tasks.additive_noise as additive_noise
    import bmi.benchmark.tasks.bivariate_normal as binormal
    import bmi.benchmark.tasks.embeddings as embeddings
    import bmi.benchmark.tasks.mixtures as mixtures
    import bmi.benchmark.tasks.multinormal as multinormal
    import bmi.benchmark.tasks.student as student
    from bmi.benchmark.tasks import transform_rescale
    from bmi.benchmark.tasks.asinh import transform_asinh_task as asinh
    from bmi.benchmark.tasks.normal_cdf import transform_normal_cdf_task as normal_cdfise
    from bmi.benchmark.tasks.spiral import transform_spiral_task as spiralise

    bivariate = binormal.task_bivariate_normal(gaussian_correlation=0.75)
    uniform_bivariate = normal_cdfise(bivariate)
    unscaled = (
        additive_noise.task_additive_noise(epsilon=0.75),
        asinh(student.task_student_identity(dim_x=1, dim_y=1, df=1)),
        mixtures.task_x(),
        mixtures.task_ai(),
        embeddings.transform_swissroll_task(uniform_bivariate, task_name="Swiss roll 2 × 1"),
        mixtures.task_waves(),
        mixtures.task_galaxy(),
        mixtures.task_concentric_multinormal(dim_x=3, n_components=5),
        mixtures.task_concentric_multinormal(dim_x=5, n_components=5),
        mixtures.task_concentric_multinormal(dim_x=3, n_components=10),
        mixtures.task_concentric_multinormal(dim_x=5, n_components=10),
        mixtures.task_concentric_multinormal(dim_x=25, n_components=5),
        multinormal.task_multinormal_dense(5, 5),
        multinormal.task_multinormal_dense(25, 25),
        multinormal.task_multinormal_dense(50, 50),
        multinormal.task_multinormal_2pair(5, 5),
        multinormal.task_multinormal_2pair(25, 25),
        mixtures.task_multinormal_sparse_w_inliers(dim_x=5, dim_y=5, inlier_fraction=0.2),
        mixtures.task_multinormal_sparse_w_inliers(dim_x=25, dim_y=25, inlier_fraction=0.2),
        mixtures.task_multinormal_sparse_w_inliers(dim_x=5, dim_y=5, inlier_fraction=0.5),
        mixtures.task_multinormal_sparse_w_inliers(dim_x=25, dim_y=25, inlier_fraction=0.5),
        asinh(student.task_student_identity(dim_x=2, dim_y=2, df=1)),
        asinh(student.task_student_identity(dim_x=3, dim_y=3, df=2)),
        asinh(student.task_student_identity(dim_x=5, dim_y=5, df=2)),
        spiralise(multinormal.task_multinormal_2pair(3, 3)),
        spiralise(multinormal.task_multinormal_2pair(5, 5)),
    )
    assert len(unscaled) == 26
    return [transform_rescale(base_task=t, task_name=t.name, task_id=t.id) for t in unscaled]


def mc_stderr(task):
    """bmi's Monte Carlo standard error of the true MI (mixture tasks), else None."""
    sampler = task.sampler
    while sampler is not None:
        if getattr(sampler, "_mi_stderr", None) is not None:
            return float(sampler._mi_stderr)
        sampler = getattr(sampler, "_base_sampler", None)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--v2-seeds", type=int, default=10)
    parser.add_argument("--out", default=str(common.SAMPLES))
    args = parser.parse_args(argv)
    import bmi
    import jax

    arrays, suites = {}, {"v1": [], "v2": []}
    start = time.perf_counter()
    for index, task in enumerate(bmi.benchmark.BENCHMARK_TASKS.values()):
        key = f"v1/{index}/n{common.N}"
        x, y = task.sample(common.N, seed=index)
        arrays[f"x:{key}"], arrays[f"y:{key}"] = np.asarray(x, np.float32), np.asarray(y, np.float32)
        suites["v1"].append({"index": index, "id": task.id, "name": task.name, "dim_x": task.dim_x,
                             "dim_y": task.dim_y, "true_mi_nats": float(task.mutual_information)})
        print(f"v1 {index:2d} {task.id:50s} true {task.mutual_information:.3f}", flush=True)
    for index, task in enumerate(v2_tasks()):
        mi = float(task.mutual_information)  # Monte Carlo for the mixtures: computed once, cached by bmi
        for seed in range(args.v2_seeds):
            key = f"v2/{index}/s{seed}/n{common.N}"
            x, y = task.sample(common.N, seed=seed)
            arrays[f"x:{key}"], arrays[f"y:{key}"] = np.asarray(x, np.float32), np.asarray(y, np.float32)
        suites["v2"].append({"index": index, "id": task.id, "name": task.name, "dim_x": task.dim_x,
                             "dim_y": task.dim_y, "true_mi_nats": mi, "true_mi_mc_stderr": mc_stderr(task)})
        print(f"v2 {index:2d} {task.id:50s} true {mi:.3f} (MC stderr {mc_stderr(task)})", flush=True)
    meta = {"suites": suites, "v2_seeds": list(range(args.v2_seeds)), "n": common.N,
            "sampled_with": {"benchmark-mi": version("benchmark-mi"), "jax": jax.__version__,
                             "jaxlib": version("jaxlib"), "tensorflow-probability": version("tensorflow-probability")},
            "sample_seconds": time.perf_counter() - start, "host": common.host_info()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, meta=json.dumps(meta), **arrays)
    digest = hashlib.sha256(Path(args.out).read_bytes()).hexdigest()
    results = common.load_results()
    results["samples"] = {"file": str(Path(args.out).relative_to(common.ROOT)) if Path(args.out).is_relative_to(
        common.ROOT) else args.out, "sha256": digest, **{k: v for k, v in meta.items() if k != "suites"}}
    results["tasks"] = suites
    common.save_results(results)
    print(f"wrote {args.out} ({digest[:12]}) in {meta['sample_seconds']:.0f} s")


if __name__ == "__main__":
    main()
