#!/usr/bin/env bash
# The peers' virtual environments, one per peer, outside the project (none of them is a dependency of ie_jax).
# Python 3.11; run once: bash benchmarks/peers/setup_venvs.sh [/work/peer-venvs]
set -euo pipefail
D=${1:-/work/peer-venvs}
mkdir -p "$D" && cd "$D"

# bmi (benchmark-mi 0.1.3, jax < 0.5 as it pins). pip's pick of jax 0.4.38 breaks equinox 0.10.x (bmi pins < 0.11)
# at import (jax.core.pp_eqn_rules removed in jax 0.4.34), so jax/jaxlib are pinned to 0.4.13 (bmi 0.1.3's era),
# chex to 0.1.82 (optax 0.1.9 pulls a chex that needs jax >= 0.4.27) and scipy < 1.12.
python3.11 -m venv bmi
bmi/bin/pip install benchmark-mi==0.1.3
bmi/bin/pip install jax==0.4.13 jaxlib==0.4.13 chex==0.1.82 "scipy<1.12"

# torch-mist 0.2.17 with the CPU torch wheel; it imports pandas without declaring it.
python3.11 -m venv torchmist
torchmist/bin/pip install torch==2.13.0 torch-mist==0.2.17 "pandas<3" tqdm

# latentmi 0.1.3 with the CPU torch wheel.
python3.11 -m venv latentmi
latentmi/bin/pip install torch==2.13.0 latentmi==0.1.3

# diffusion-mi 0.1.0 imports torchvision, whose PyPI wheel links libtorch_cuda: with the CPU torch wheel the import
# fails ("operator torchvision::nms does not exist"). PyPI's own (CUDA) build of torch 2.13.0 runs on the CPU.
# Here pip's local find-links (the CPU wheel) and the constraints file are bypassed for that venv only.
python3.11 -m venv diffmi-cu
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null diffmi-cu/bin/pip install torch==2.13.0 torchvision==0.28.0 \
    diffusion-mi==0.1.0
