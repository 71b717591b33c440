"""Record how each peer's venv was set up (benchmarks/peers/setup_venvs.sh) in results/peers_bmi.json, for the
report's Installation section. Standard library only; run once after setup (or whenever the notes change)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NOTES = {
    "benchmark-mi 0.1.3 (bmi)": "installs on Python 3.11, but pip's pick of jax 0.4.38 fails at import: equinox "
    "0.10.11 (bmi pins equinox < 0.11) calls jax.core.pp_eqn_rules, removed in jax 0.4.34. Nearest working setup: "
    "jax and jaxlib 0.4.13 (bmi 0.1.3's era, within its pin < 0.5), chex 0.1.82 (optax 0.1.9 otherwise pulls a chex "
    "needing jax >= 0.4.27) and scipy < 1.12.",
    "torch-mist 0.2.17": "installs with the CPU torch 2.13.0 wheel; it imports pandas without declaring it, so pandas "
    "(< 3) is installed beside it.",
    "latentmi 0.1.3": "installs as is with the CPU torch 2.13.0 wheel. Its README calls `lmi.lmi`; the released "
    "function is `lmi.estimate`.",
    "diffusion-mi 0.1.0": "installs, but with the CPU torch wheel its import fails: it imports torchvision, whose "
    "PyPI wheel (0.28.0, pinned to torch 2.13.0) links libtorch_cuda ('operator torchvision::nms does not exist'). "
    "Nearest working setup: PyPI's own (CUDA 13) build of torch 2.13.0 in that venv, run on the CPU.",
}


def main():
    results = common.load_results()
    results["install_notes"] = NOTES
    results.setdefault("not_installed", {})
    common.save_results(results)


if __name__ == "__main__":
    main()
