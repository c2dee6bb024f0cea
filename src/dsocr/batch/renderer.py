"""The service's document renderer, for a command-line client: its worker processes die with the client.

A server stops its renderer on its way out; a batch run can be killed outright (SIGKILL, the OOM
killer), and the renderer's spawned workers would then wait for work for ever. On Linux each
worker asks the kernel to kill it when its parent goes (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

from dsocr.documents import render

_PR_SET_PDEATHSIG = 1


class ClientRenderer(render.DocumentRenderer):
    def _new_pool(self) -> ProcessPoolExecutor:
        # The pool the service's renderer makes (spawned workers), with one more step in each worker.
        return ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_client_worker
        )


def _init_client_worker() -> None:
    render._init_worker()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass  # no prctl: the worker outlives a killed client, as any pool's would
