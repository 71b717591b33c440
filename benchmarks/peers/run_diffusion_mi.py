"""diffusion-mi (DMI; its `MINDEEstimator`, MINDE-C: the conditional diffusion MI estimator of Franzese et al.,
ICLR 2024) on the peers' samples, in its own venv, through its documented workflow: construct with the defaults,
`.fit(X_train, Y_train)`, then `.estimate(X_test, Y_test)` on held-out data. The sample is split in half (train /
test; the README leaves the split to the user; half is bmi's and latentmi's default too).

MINDEEstimator's defaults (recorded in the JSON): batch 64, lr 5e-5, type "c", EMA 0.999, importance sampling,
mc_iter 10, max_n_steps None and max_epochs None, which Lightning's Trainer reads as 1,000 epochs.

Each task runs in a forked child stopped after --task-cap wall seconds (default 600) or --task-cap-cpu CPU seconds
of the child: a task that does not finish is recorded as such, with no value.

  nice -n 15 /work/peer-venvs/diffmi-cu/bin/python benchmarks/peers/run_diffusion_mi.py --subset --budget 900
"""

from __future__ import annotations

import inspect
import os
import random
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def child_cpu_seconds(pid):
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cap = 600.0
    if "--task-cap" in argv:
        i = argv.index("--task-cap")
        cap = float(argv[i + 1])
        del argv[i:i + 2]
    kind = "wall"
    if "--task-cap-cpu" in argv:
        i = argv.index("--task-cap-cpu")
        cap, kind = float(argv[i + 1]), "cpu"
        del argv[i:i + 2]
    args, data, meta, keys = common.argv_suites(argv)
    args.task_cap, args.cap_kind = cap, kind
    import numpy as np
    import torch
    from dmi import estimators

    torch.set_num_threads(1)

    def fit_and_estimate(x, y, seed):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        half = len(x) // 2
        est = estimators.MINDEEstimator()
        est.fit(x[:half].astype(np.float32), y[:half].astype(np.float32))
        return float(est.estimate(x[half:].astype(np.float32), y[half:].astype(np.float32))), {
            "epochs_trained": int(est.trainer.current_epoch) if getattr(est, "_trainer", None) else None}

    def run(x, y, seed):
        """One task in a forked child, stopped after --task-cap wall seconds (its defaults train 1,000 epochs)."""
        import multiprocessing as mp

        parent, child = mp.get_context("fork").Pipe(duplex=False)

        def target():
            try:
                child.send(("ok", fit_and_estimate(x, y, seed)))
            except Exception as e:  # noqa: BLE001
                child.send(("error", f"{type(e).__name__}: {e}"))

        proc = mp.get_context("fork").Process(target=target)
        proc.start()
        start = time.perf_counter()
        while not parent.poll(5.0):
            spent = child_cpu_seconds(proc.pid) if args.cap_kind == "cpu" else time.perf_counter() - start
            if spent > args.task_cap:
                proc.kill()
                proc.join()
                raise TimeoutError(f"not finished within the per-task cap of {args.task_cap:.0f} {args.cap_kind} "
                                   f"seconds at its defaults ({time.perf_counter() - start:.0f} s wall)")
        status, out = parent.recv()
        proc.join()
        if status != "ok":
            raise RuntimeError(out)
        return out

    defaults = {k: v.default for k, v in inspect.signature(estimators.MINDEEstimator.__init__).parameters.items()
                if v.default is not inspect.Parameter.empty}
    defaults = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)) for k, v in defaults.items()}
    settings = {"diffusion-mi MINDE-C": {
        "call": "MINDEEstimator().fit(x[:N/2], y[:N/2]); .estimate(x[N/2:], y[N/2:])",
        "MINDEEstimator defaults": defaults, "Lightning max_epochs when both unset": 1000,
        "seed": "torch/numpy/random seeded with the task's seed", "torch threads": 1,
        f"per-task cap ({kind} seconds)": cap}}
    versions = common.pip_versions(["diffusion-mi", "torch", "torchvision", "lightning", "pytorch-lightning",
                                    "numpy", "scikit-learn"])
    common.run_estimators({"diffusion-mi MINDE-C": run}, keys, data, peer="diffusion-mi",
                          package=f"diffusion-mi {versions['diffusion-mi']}", versions=versions, settings=settings,
                          budget_s=args.budget, budget_kind=args.budget_kind,
                          notes="PyPI's CUDA build of torch 2.13.0 run on the CPU: diffusion-mi imports torchvision, "
                                "whose PyPI wheel needs libtorch_cuda (with the CPU torch wheel: 'operator "
                                "torchvision::nms does not exist')")


if __name__ == "__main__":
    main()
