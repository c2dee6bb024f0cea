"""The engine fixture: one in-process vLLM engine per family and test module,
on the tiny model, with the engine arguments the service uses for images
(`dsocr.vllm_plugin.ENGINE_ARGS`) and the settings that work on a small CPU.
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
    # The CPU worker replaces torch.set_num_threads in its process (here, the
    # test process): put it back afterwards.
    set_num_threads, num_threads = torch.set_num_threads, torch.get_num_threads()
    with pytest.MonkeyPatch.context() as env:
        # In-process engine core: no spawned processes, ~30 s less start-up on 2 cores.
        env.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        env.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes a share of host memory
        # Thread binding would pin this whole test process to one core, and
        # without OMP_NUM_THREADS vLLM cuts torch to a single thread.
        env.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        env.setenv("OMP_NUM_THREADS", str(num_threads))
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
            torch.set_num_threads = set_num_threads
            torch.set_num_threads(num_threads)
