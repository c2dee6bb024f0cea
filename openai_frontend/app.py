"""The FastAPI application: thin routers over one engine."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from openai_frontend.engine import TritonEngine
from openai_frontend.errors import install_handlers
from openai_frontend.routers import chat, health, models
from openai_frontend.settings import Settings


def create_app(settings: Settings, engine: TritonEngine | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = engine or TritonEngine(settings.triton_grpc_url)
        yield
        await app.state.engine.close()

    app = FastAPI(title="DeepSeek-OCR", lifespan=lifespan)
    app.state.settings = settings
    install_handlers(app)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(chat.router)
    return app
