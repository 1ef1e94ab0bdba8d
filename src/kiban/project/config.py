"""The shapes of a project's YAML files, validated with Pydantic."""

from __future__ import annotations

import os
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LAYERS = ("lake", "warehouse", "mart")
Layer = Literal["lake", "warehouse", "mart"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectConfig(_Strict):
    """``kiban.yml``."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    timezone: str = "UTC"
    warehouse: str = "duckdb:///kiban.duckdb"
    lake: str = "lake"
    state: str = "sqlite:///.kiban/state.db"
    threads: int | None = Field(default=None, ge=1, le=64)
    retries: int = Field(default=0, ge=0, le=20)
    retry_delay: float = Field(default=1.0, ge=0)
    timeout: float | None = Field(default=None, gt=0, description="seconds per asset attempt")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{value}' (use an IANA name such as Asia/Tokyo)") from None
        return value

    @property
    def effective_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


class ColumnConfig(_Strict):
    """One documented column of a model."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()


class ModelConfig(_Strict):
    """The optional sidecar ``NAME.yml`` next to a model's SQL."""

    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    materialized: Literal["table", "view"] = "table"
    columns: tuple[ColumnConfig, ...] = ()
    retries: int | None = Field(default=None, ge=0, le=20)
    timeout: float | None = Field(default=None, gt=0)
