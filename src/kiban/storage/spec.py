"""The ``storage:`` block of ``kiban.yml``: where the shared lake and the published tables live.

::

    storage:
      lake: s3://kiban-shop/lake            # loads as Delta tables: s3://bucket/prefix, or a local folder
      warehouse: s3://kiban-shop/published   # published warehouse/mart tables as Delta tables (optional)
      endpoint_url: http://127.0.0.1:9000    # an S3-compatible server (MinIO, Ceph, …); leave out for AWS
      region: us-east-1
      access_key_id: env:KIBAN_S3_KEY        # credentials only as env:NAME — never written in the file
      secret_access_key: env:KIBAN_S3_SECRET
      retention: 7d                          # `kiban storage vacuum` keeps versions younger than this

Without ``storage:`` (the default) the lake is the local ``lake:`` folder, exactly as before. A leaf: the
project loader validates with it; nothing here touches the network or imports ``deltalake``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator

from kiban import envref
from kiban.errors import KibanError

SCHEMES = ("s3://", "file://")


UNITS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}


def retention_hours(text: str) -> float:
    """``7d``, ``36h``, ``90m``, ``0`` → hours (ValueError for anything else)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", str(text))
    if match is None:
        raise ValueError(f"'{text}': a retention is a number and a unit, e.g. 7d, 36h or 90m")
    return float(match.group(1)) * UNITS[match.group(2) or "h"]


class StorageError(KibanError):
    """The shared storage cannot be reached or used as configured."""


class StorageConfig(BaseModel):
    """``storage:`` in ``kiban.yml``."""

    model_config = ConfigDict(extra="forbid", defer_build=True, frozen=True)

    lake: str | None = None
    warehouse: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    allow_http: bool | None = None  # default: true when endpoint_url is http://
    cache: str = ".kiban/storage-cache"  # where this machine keeps copies of a snapshot's files (relative: project)
    retention: str = "7d"  # `kiban storage vacuum` keeps every version younger than this (time travel, long reads)

    @field_validator("lake", "warehouse")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" in value and not value.startswith(SCHEMES):
            raise ValueError(f"'{value}': storage takes s3://bucket/prefix or a local folder")
        if value.startswith("s3://") and not value[len("s3://"):].strip("/"):
            raise ValueError(f"'{value}': name a bucket, e.g. s3://my-bucket/lake")
        return value.rstrip("/")

    @field_validator("access_key_id", "secret_access_key")
    @classmethod
    def _from_environment(cls, value: str | None) -> str | None:
        if value is not None and envref.env_name(value) is None:
            raise ValueError("credentials go in the environment: write env:NAME, not the value itself")
        return value

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> str:
        text = str(value)  # YAML reads `retention: 0` as a number
        retention_hours(text)
        return text

    def retention_hours(self) -> float:
        return retention_hours(self.retention)

    def remote(self, location: str | None) -> bool:
        return bool(location) and str(location).startswith("s3://")

    def options(self) -> dict[str, str]:
        """The object store's options (delta-rs ``storage_options``); credentials resolved from the environment
        (a variable that is not set: :class:`StorageError`, naming the variable and never a value)."""
        out: dict[str, str] = {}
        if self.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.region:
            out["AWS_REGION"] = self.region
        for key, value in (("AWS_ACCESS_KEY_ID", self.access_key_id),
                           ("AWS_SECRET_ACCESS_KEY", self.secret_access_key)):
            if value is not None:
                out[key] = envref.resolve(value, lambda name: StorageError(
                    f"environment variable {name} is not set (storage credentials: env:{name})",
                    f"export {name}=... before running"))
        http = self.allow_http if self.allow_http is not None else bool(
            self.endpoint_url and self.endpoint_url.startswith("http://"))
        if http:
            out["AWS_ALLOW_HTTP"] = "true"
        # kiban commits one table from one process at a time (the collection lock, the run lock): the log's
        # put-if-absent is what delta-rs relies on; S3 gives it (conditional writes), so no DynamoDB lock is needed
        out["AWS_CONDITIONAL_PUT"] = "etag"
        return out
