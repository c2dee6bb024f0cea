"""Every environment variable the service reads, with its default and meaning.

Read through `get(name)` so that a variable used anywhere is declared here.
The README's configuration table is this list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dsocr.documents.limits import DocumentLimits
from dsocr.preprocessing.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

_DOCUMENT = DocumentLimits()


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    meaning: str


_DECLARED = [
    # vLLM engine (model_repository/vllm_model/1/engine.json holds the file defaults)
    EnvVar("MODEL", None, "model to serve: HF id or local directory (overrides engine.json)"),
    EnvVar("GPU_MEMORY_UTILIZATION", None, "fraction of accelerator memory vLLM may use (CPU: of host memory)"),
    EnvVar("MAX_MODEL_LEN", None, "context length in tokens, prompt + output (engine.json: 8192)"),
    EnvVar("TENSOR_PARALLEL_SIZE", None, "GPUs one engine spans"),
    EnvVar(
        "STREAM_INTERVAL",
        None,
        "output tokens the engine gathers into one streamed response (the first and the last go at once; "
        "engine.json's stream_interval)",
    ),
    # Input limits (preprocess model; the frontend checks bytes early too)
    EnvVar("DSOCR_MAX_IMAGE_BYTES", str(DEFAULT_MAX_BYTES), "largest encoded image accepted, in bytes"),
    EnvVar(
        "DSOCR_MAX_IMAGE_PIXELS",
        str(DEFAULT_MAX_PIXELS),
        "largest image accepted, width x height as its header declares; a document's page at its DPI too",
    ),
    # Set-up and serve
    EnvVar("DSOCR_DEVICE", None, "cpu or gpu; default: gpu when nvidia-smi sees one"),
    EnvVar("DSOCR_CACHE_DIR", None, "where the tiny test models are built (default ~/.cache/dsocr)"),
    # OpenAI frontend (each also a flag of python -m openai_frontend)
    EnvVar("DSOCR_HOST", "0.0.0.0", "frontend bind address"),
    EnvVar("DSOCR_PORT", "8080", "frontend port"),
    EnvVar(
        "DSOCR_TRITON_GRPC_URL",
        "127.0.0.1:8001",
        "Triton gRPC endpoint(s) the frontend sends requests to; comma-separated: each request to the "
        "ready one with the fewest in flight",
    ),
    EnvVar("DSOCR_API_KEY", None, "Bearer key every route but /, /health and /health/ready requires; unset: no key"),
    EnvVar(
        "DSOCR_MAX_REQUEST_BYTES",
        None,
        "largest request body, in bytes (413 beyond); default: one base64 document of DSOCR_MAX_DOCUMENT_BYTES "
        "(or image, the larger) + 1 MiB",
    ),
    EnvVar(
        "DSOCR_MAX_CONCURRENT_REQUESTS",
        "256",
        "chat completions and OCR requests in flight at once, streams included; beyond it 429 with Retry-After",
    ),
    EnvVar("DSOCR_MAX_DOCUMENT_BYTES", str(_DOCUMENT.max_bytes), "largest document (PDF, TIFF) accepted, in bytes"),
    EnvVar(
        "DSOCR_MAX_DOCUMENT_PAGES",
        str(_DOCUMENT.max_pages),
        "most pages one document may have, and one request may OCR",
    ),
    EnvVar("DSOCR_MIN_DPI", str(_DOCUMENT.min_dpi), "lowest DPI a request may render PDF pages at"),
    EnvVar("DSOCR_MAX_DPI", str(_DOCUMENT.max_dpi), "highest DPI a request may render PDF pages at"),
    EnvVar(
        "DSOCR_MAX_PAGES_IN_FLIGHT",
        "64",
        "pages (document pages and chat images) in the engine at once, over all requests; more wait their turn",
    ),
    EnvVar(
        "DSOCR_MAX_PAGES_IN_FLIGHT_PER_REQUEST",
        "16",
        "pages of one request in the engine at once, so that one large document cannot hold every slot",
    ),
    EnvVar(
        "DSOCR_OCR_MAX_TOKENS",
        None,
        "output tokens per page when an /v1/ocr request names no max_tokens; unset: all the context the page leaves",
    ),
    EnvVar("DSOCR_RENDER_WORKERS", None, "processes rendering PDF pages (PDFium); default: the cores, at most 4"),
    EnvVar("DSOCR_ALLOW_IMAGE_URLS", "false", "fetch http(s) image URLs from any public host (off: data URLs only)"),
    EnvVar(
        "DSOCR_IMAGE_URL_HOSTS",
        None,
        "comma-separated hosts image URLs may come from (*.example.com: its subdomains); set: URLs on for them only",
    ),
    EnvVar(
        "DSOCR_IMAGE_URL_ALLOW_PRIVATE",
        "false",
        "let image URLs reach private, loopback and link-local addresses (off: refused after DNS resolution)",
    ),
    EnvVar("DSOCR_IMAGE_URL_TIMEOUT_S", "10", "time one image URL may take, DNS to last byte, in seconds"),
    EnvVar("DSOCR_IMAGE_URL_MAX_REDIRECTS", "0", "redirects an image URL may follow, each one checked again"),
    # Slow and hostile clients (openai_frontend/server.py): nothing a client holds is held for ever.
    EnvVar(
        "DSOCR_HEADER_TIMEOUT_S",
        "10",
        "seconds a client has to send a request's head, from the connection's opening (or, kept alive, the "
        "request's first byte); then the connection is closed",
    ),
    EnvVar(
        "DSOCR_BODY_TIMEOUT_S",
        "60",
        "seconds a client has to send a request's whole body once its head is in; then 408 and the connection closed",
    ),
    EnvVar(
        "DSOCR_WRITE_TIMEOUT_S",
        "30",
        "seconds a response may wait on a client that reads none of it (the send buffers full); then the connection "
        "is dropped and its generation stopped, as when a client leaves",
    ),
    EnvVar("DSOCR_KEEP_ALIVE_TIMEOUT_S", "5", "seconds an idle kept-alive connection stays open (uvicorn's)"),
    # Tests
    EnvVar("DSOCR_FUZZ_MAX_EXAMPLES", "30", "requests the API fuzzing test generates per route (scripts/fuzz.sh)"),
]
DECLARED = {var.name: var for var in _DECLARED}


def get(name: str) -> str | None:
    """The variable's value, or its declared default when unset or empty."""
    var = DECLARED[name]  # KeyError: declare it above first
    value = os.environ.get(name, "")
    return value if value else var.default


def value(name: str) -> str:
    """The value of a variable declared with a default: never None."""
    found = get(name)
    if found is None:
        raise KeyError(f"{name} is declared without a default; read it with envs.get")
    return found
