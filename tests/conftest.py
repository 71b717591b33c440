"""Test configuration: CPU only, float32 matmuls at full precision, 8 fake devices for sharding tests."""

import os

# Must be set before jax is imported anywhere: 8 host devices let sharding tests run on a CPU.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# `measure` turns JAX's persistent compilation cache on for the rest of the process. The default directory
# is shared by every process on the machine, and one full run stalled reading a cached CPU executable. So
# the tests run without the cache. The warm-cache resume test gives its subprocess a directory of its own.
os.environ.setdefault("IE_JAX_COMPILATION_CACHE", "off")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop every compiled program after each test module. One full run, with the executables of ~40 modules
    piling up (7 GB resident), segfaulted inside an XLA compilation that passes in a fresh process."""
    yield
    jax.clear_caches()
    import gc

    gc.collect()


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct from its GGUF (ie_jax.load_model("default")), loaded once per session."""
    from ie_jax.models import load_model

    return load_model("default")
