"""GET /v1/models and /v1/models/{model}: the names the served model answers to."""

from fastapi import APIRouter, Request

from dsocr.families import Family
from openai_frontend.errors import NotFound
from openai_frontend.openapi import errors
from openai_frontend.schemas import Model, ModelList

router = APIRouter()

# Fixed, so that listing the models is deterministic across restarts.
CREATED = 1_700_000_000


def model_names(family: Family) -> list[str]:
    """The served name first, then the HF id accepted as an alias."""
    return [family.served_name, family.hf_id]


def require_served(name: str, family: Family) -> None:
    if name not in model_names(family):
        raise NotFound(f"the model {name!r} does not exist; see /v1/models", param="model", code="model_not_found")


def _model(name: str) -> Model:
    return Model(id=name, created=CREATED, owned_by="deepseek-ai")


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request):
    return ModelList(data=[_model(name) for name in model_names(request.app.state.settings.family)])


@router.get("/v1/models/{name:path}", response_model=Model, responses=errors(404))
async def retrieve_model(name: str, request: Request):
    require_served(name, request.app.state.settings.family)
    return _model(name)
