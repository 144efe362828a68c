"""The base of every config section: unknown keys are errors, assignments validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section (``*Config``): its fields carry their defaults and help text."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
