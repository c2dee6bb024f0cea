"""The engine fixture: one vLLM engine per family and test module, on the
tiny model, with the engine arguments the service uses for images
(`dsocr.vllm_plugin.ENGINE_ARGS`) and the settings that work on a small CPU.

The engine core runs in a spawned process, as in the service: this test
process imports numba (the resize passes), and vLLM's worker start-up, which
scans every loaded module's namespace, fails on llvmlite's objects there.
"""

from __future__ import annotations

import gc

import pytest
import torch

from dsocr import paths
from dsocr.tiny_models import FAMILIES, build_tiny_model
from dsocr.vllm_plugin import ENGINE_ARGS


@pytest.fixture(scope="module", params=FAMILIES)
def engine(request):
    """(family, vllm.LLM) for each family in turn; one engine alive at a time."""
    family = request.param
    model_dir = build_tiny_model(paths.tiny_model_dir(family), family)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
        env.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # a fork would inherit numba
        env.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes a share of host memory
        # Thread binding would pin the engine to one core, and without
        # OMP_NUM_THREADS vLLM cuts torch to a single thread.
        env.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        env.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
        from vllm import LLM
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        llm = LLM(
            model=str(model_dir),
            max_model_len=4096,
            max_num_seqs=8,
            limit_mm_per_prompt={"image": 1},
            enforce_eager=True,  # torch.compile on CPU costs more than these few steps
            skip_mm_profiling=True,  # else a full tiled page is encoded at start-up
            seed=0,
            **ENGINE_ARGS,
        )
        try:
            yield family, llm
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
            cleanup_dist_env_and_memory()
