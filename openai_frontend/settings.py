"""The frontend's settings: environment (declared in dsocr.envs), then flags."""

from __future__ import annotations

import argparse

from pydantic import BaseModel

from dsocr import envs
from dsocr.families import Family, family_of


class Settings(BaseModel):
    host: str = envs.get("DSOCR_HOST")
    port: int = int(envs.get("DSOCR_PORT"))
    triton_grpc_url: str = envs.get("DSOCR_TRITON_GRPC_URL")
    # What Triton serves; decides the model names the API answers to.
    model: str = envs.get("MODEL") or "deepseek-ai/DeepSeek-OCR"

    @property
    def family(self) -> Family:
        return family_of(self.model)

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "Settings":
        defaults = cls()
        parser = argparse.ArgumentParser(prog="python -m openai_frontend")
        for name, value in defaults.model_dump().items():
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
        return cls(**vars(parser.parse_args(argv)))
