"""The configuration every connector's config builds on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class ConnectorConfig(BaseModel):
    """Base of every connector's config. Unknown keys are errors, so typos are caught.

    Any secret may instead be read from a file: `client_secret_file: /run/secrets/sf`
    fills `client_secret` (the Docker / Kubernetes secrets convention).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in [k for k in data if isinstance(k, str) and k.endswith("_file")]:
            field = key.removesuffix("_file")
            if field not in cls.model_fields or key in cls.model_fields:
                continue
            path = Path(str(data.pop(key)))
            try:
                data[field] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"{key}: cannot read {path} ({exc.strerror}); "
                    f"mount the secret there or set {field} directly"
                ) from exc
        return data
