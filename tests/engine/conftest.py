"""The engine fixture: one vLLM engine per family and test module, on the
tiny model, with the engine arguments and CPU environment the service uses
(`dsocr.engine_config`, engine.json's CPU section, and the plugin's
`dsocr.vllm_plugin.ENGINE_ARGS`).

The engine core runs in a spawned process, as in the service: this test
process imports numba (the resize passes), and vLLM's worker start-up, which
scans every loaded module's namespace, fails on llvmlite's objects there.
"""

from __future__ import annotations

import gc

import pytest

from dsocr import paths
from dsocr.engine_config import cpu_environment, engine_json, load_engine_args
from dsocr.tiny_models import FAMILIES, build_tiny_model
from dsocr.vllm_plugin import ENGINE_ARGS


@pytest.fixture(scope="module", params=FAMILIES)
def engine(request):
    """(family, vllm.LLM) for each family in turn; one engine alive at a time."""
    family = request.param
    model_dir = build_tiny_model(paths.tiny_model_dir(family), family)
    with pytest.MonkeyPatch.context() as env:
        for name, value in cpu_environment().items():
            env.setenv(name, value)
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
        env.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # a fork would inherit numba
        env.setenv("MODEL", str(model_dir))
        from vllm import LLM
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        engine_args = load_engine_args(engine_json(), on_cpu=True)
        # One image a prompt, as the service sends; a fixed seed for the sampler.
        llm = LLM(**engine_args, **ENGINE_ARGS, limit_mm_per_prompt={"image": 1}, seed=0)
        try:
            yield family, llm
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
            cleanup_dist_env_and_memory()
