"""The service's document renderer, for a command-line client: its worker processes die with the client.

A server stops its renderer on its way out; a batch run can be killed outright (SIGKILL, the OOM
killer), and the renderer's spawned workers would then wait for work for ever. On Linux each
worker asks the kernel to kill it when its parent goes (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import signal
import sys

from dsocr.documents.limits import DocumentLimits
from dsocr.documents.render import DocumentRenderer

_PR_SET_PDEATHSIG = 1


def client_renderer(workers: int, limits: DocumentLimits) -> DocumentRenderer:
    return DocumentRenderer(workers, limits, worker_initializer=die_with_parent)


def die_with_parent() -> None:
    """In a worker process: the kernel kills it when the process that started it goes."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass  # no prctl: the worker outlives a killed client, as any pool's would
