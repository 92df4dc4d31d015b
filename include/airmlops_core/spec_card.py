"""The spec's `card:` section: what a version's model card says beyond the logged evidence.

Cheap to import (pydantic only); kept apart from spec.py, which is near the module size limit.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from airmlops_core.yaml_schema import StrictModel


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v.strip()


Text = Annotated[str, Field(max_length=2000), AfterValidator(_not_blank)]


class Card(StrictModel):
    """Intended use, the accountable owner (default: the spec's `owner`) and known limitations,
    printed on every version's model card (airmlops_core.validate.model_card)."""

    intended_use: Text | None = None
    owner: Annotated[str, Field(max_length=200), AfterValidator(_not_blank)] | None = None
    limitations: list[Text] = Field(default_factory=list, max_length=30)
