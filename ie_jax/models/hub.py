"""Hub names (`gpt2`, `HuggingFaceTB/SmolLM2-135M`) -> a local checkpoint folder, through huggingface_hub's cache.

Offline first: the cache (HF_HUB_CACHE, or HF_HOME/hub, default ~/.cache/huggingface/hub) is asked with
`local_files_only=True`. Only when the model is not there, and downloads are allowed (HF_HUB_OFFLINE unset),
is it fetched, and then only the files ie_jax reads: config, safetensors weights, tokenizer.json.
"""

import re
from pathlib import Path

# What load_hf_dir reads; no pickles (refused anyway), no ONNX/TF/Flax copies.
HUB_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "tokenizer.json")

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def looks_like_hub_id(name: str) -> bool:
    """`name` or `org/name`, as the Hugging Face Hub spells model ids (and not a .gguf file name)."""
    return bool(_REPO_ID.fullmatch(name)) and ".." not in name and not name.endswith(".gguf")


def hub_snapshot(repo_id: str, *, cache_dir: str | Path | None = None, allow_download: bool | None = None) -> Path:
    """The local folder holding `repo_id`'s checkpoint: from the HF cache, else downloaded into it.

    cache_dir: the hub cache (default: huggingface_hub's, from HF_HUB_CACHE / HF_HOME).
    allow_download: None = unless HF_HUB_OFFLINE is set. Raises FileNotFoundError naming the fix.
    """
    from huggingface_hub import constants, snapshot_download

    cache = Path(cache_dir or constants.HF_HUB_CACHE)
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=list(HUB_FILES), local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError, or a malformed id
        cached_error = err
    if allow_download is None:
        allow_download = not constants.HF_HUB_OFFLINE
    fix = (f"give a local HF dir or .gguf file, a named model (default, minilm), or fetch it once where the "
           f"network allows: `hf download {repo_id}` (into {cache}, or set HF_HUB_CACHE)")
    if not allow_download:
        raise FileNotFoundError(f"{repo_id!r} is not a local path and not in the Hugging Face cache {cache} "
                                f"({type(cached_error).__name__}); downloads are off (HF_HUB_OFFLINE): {fix}.")
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=list(HUB_FILES)))
    except Exception as err:  # no network, unknown repo, gated repo, ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"{repo_id!r} is not a local path, not in the Hugging Face cache {cache}, and "
                                f"downloading it failed ({type(err).__name__}: {reason}): {fix}.") from err
