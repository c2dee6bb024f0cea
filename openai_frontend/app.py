"""The FastAPI application: middlewares, thin routers, one engine (the Triton servers) and one image loader."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from dsocr.documents.render import DocumentRenderer
from openai_frontend.disconnect import ClientDisconnected, client_disconnected
from openai_frontend.documents import PageRunner, PageSlots
from openai_frontend.engine import Engine
from openai_frontend.errors import install_handlers
from openai_frontend.image_urls import ImageFetcher, ImageURLPolicy
from openai_frontend.middlewares import ApiKeyAuth, BodySizeLimit, ConcurrencyLimit
from openai_frontend.ocr import DocumentService
from openai_frontend.openapi import describe_api
from openai_frontend.pool import TritonPool
from openai_frontend.routers import chat, health, models, ocr
from openai_frontend.settings import Settings
from openai_frontend.sources import SourceLoader

# What the concurrency limit counts: requests that run the model.
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/ocr"})


def image_fetcher(settings: Settings) -> ImageFetcher:
    policy = ImageURLPolicy(
        enabled=settings.image_urls_enabled,
        hosts=settings.image_url_hosts,
        allow_private=settings.image_url_allow_private,
    )
    return ImageFetcher(
        policy,
        max_bytes=settings.max_image_bytes,
        timeout_s=settings.image_url_timeout_s,
        max_redirects=settings.image_url_max_redirects,
    )


def middlewares(settings: Settings) -> list[Middleware]:
    """Outermost first: an unauthenticated request takes no slot, a refused one reads no body."""
    stack = [
        Middleware(ConcurrencyLimit, limit=settings.max_concurrent_requests, paths=GENERATION_PATHS),
        Middleware(BodySizeLimit, max_bytes=settings.request_byte_limit, timeout_s=settings.body_timeout_s),
    ]
    if settings.api_key:
        stack.insert(0, Middleware(ApiKeyAuth, api_key=settings.api_key))
    return stack


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = engine or await TritonPool.connect(settings.triton_grpc_urls)
        app.state.documents = DocumentService(
            sources=SourceLoader(settings.max_image_bytes, settings.max_document_bytes, image_fetcher(settings)),
            renderer=DocumentRenderer(settings.render_workers, settings.document_limits),
            runner=PageRunner(
                app.state.engine, PageSlots(settings.max_pages_in_flight, settings.max_pages_in_flight_per_request)
            ),
        )
        try:
            yield
        finally:
            await app.state.documents.sources.close()
            await app.state.documents.renderer.close()
            await app.state.engine.close()

    app = FastAPI(title="DeepSeek-OCR", lifespan=lifespan, middleware=middlewares(settings))
    app.state.settings = settings
    install_handlers(app)
    app.add_exception_handler(ClientDisconnected, client_disconnected)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(chat.router)
    app.include_router(ocr.router)
    describe_api(app, api_key_required=bool(settings.api_key))
    return app
