from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openai_frontend.openapi import Status

router = APIRouter()


@router.get("/")
async def service_info(request: Request):
    settings = request.app.state.settings
    return {
        "service": "DeepSeek-OCR on Triton",
        "model": settings.family.served_name,
        "endpoints": [
            "/v1/chat/completions",
            "/v1/ocr",
            "/v1/models",
            "/v1/models/{model}",
            "/health",
            "/health/ready",
        ],
    }


@router.get("/health", response_model=Status)
async def liveness():
    """The frontend process answers; says nothing about Triton."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=Status, responses={503: {"model": Status, "description": "not ready"}})
async def readiness(request: Request):
    """Ready when a Triton server is up with the ensemble loaded."""
    if await request.app.state.engine.ready():
        return {"status": "ready"}
    return JSONResponse({"status": "not ready"}, status_code=503)
