from fastapi import APIRouter, Request

from dsocr.families import Family

router = APIRouter()

# Fixed, so that listing the models is deterministic across restarts.
CREATED = 1_700_000_000


def model_names(family: Family) -> list[str]:
    """The served name first, then the HF id accepted as an alias."""
    return [family.served_name, family.hf_id]


@router.get("/v1/models")
async def list_models(request: Request):
    family = request.app.state.settings.family
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "deepseek-ai"}
            for name in model_names(family)
        ],
    }
