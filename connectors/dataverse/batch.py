"""OData `$batch` (multipart/mixed) for the Dataverse Web API: build requests, read parts.

Independent requests, no change sets: with `Prefer: odata.continue-on-error` each part has
its own status, so one bad row doesn't sink the others (reference §1.4).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Part:
    """One request of a batch, or one response."""

    method: str = ""
    url: str = ""
    status: int = 0
    headers: dict[str, str] | None = None
    body: Any = None


def odata_string(value: str) -> str:
    """A string literal for an OData key or filter: quoted, with `'` doubled."""
    return "'" + value.replace("'", "''") + "'"


def _envelope(boundary: str) -> list[str]:
    """The MIME head of one batch part, request or response."""
    return [
        f"--{boundary}",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
    ]


def build(parts: list[Part]) -> tuple[str, bytes]:
    """Return (content type, body) of a batch of independent requests."""
    boundary = f"batch_{uuid.uuid4().hex}"
    lines: list[str] = []
    for part in parts:
        lines += [*_envelope(boundary), f"{part.method} {part.url} HTTP/1.1"]
        lines += [f"{key}: {value}" for key, value in (part.headers or {}).items()]
        if part.body is None:
            lines += ["", ""]
            continue
        lines += ["Content-Type: application/json; charset=utf-8", ""]
        lines.append(json.dumps(part.body, ensure_ascii=False))
    lines += [f"--{boundary}--", ""]
    return f'multipart/mixed; boundary="{boundary}"', "\r\n".join(lines).encode("utf-8")


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STATUS = re.compile(r"^HTTP/1\.[01] (\d{3})")


def boundary_of(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type or "")
    return match.group(1) if match else None


def parse(content_type: str, body: bytes, *, requests_side: bool = False) -> list[Part]:
    """Split a multipart batch into parts (responses, or requests when `requests_side`)."""
    boundary = boundary_of(content_type)
    if boundary is None:
        raise ValueError("no multipart boundary in Content-Type")
    text = body.decode("utf-8")
    parts = []
    for chunk in text.split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        _, _, http = _split_headers(chunk.strip("\r\n"))
        first, headers, payload = _split_headers(http)
        payload = payload.strip()
        parsed = json.loads(payload) if payload.startswith(("{", "[")) else (payload or None)
        if requests_side:
            method, url, _ = first.split(" ", 2)
            parts.append(Part(method=method, url=url, headers=headers, body=parsed))
        else:
            status = _STATUS.match(first)
            parts.append(
                Part(status=int(status.group(1)) if status else 0, headers=headers, body=parsed)
            )
    return parts


def response(parts: list[Part]) -> tuple[str, bytes]:
    """Serialise response parts (used by the sandbox, and by tests as the vendor's shape)."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    lines: list[str] = []
    reasons = {
        200: "OK",
        201: "Created",
        204: "No Content",
        400: "Bad Request",
        404: "Not Found",
        412: "Precondition Failed",
        429: "Too Many Requests",
        500: "Internal Server Error",
    }
    for part in parts:
        lines += [
            *_envelope(boundary),
            f"HTTP/1.1 {part.status} {reasons.get(part.status, '')}".rstrip(),
        ]
        for key, value in (part.headers or {}).items():
            lines.append(f"{key}: {value}")
        if part.body is not None:
            lines += [
                "Content-Type: application/json; odata.metadata=minimal",
                "",
                json.dumps(part.body),
            ]
        else:
            lines.append("")
        lines.append("")
    lines += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(lines).encode("utf-8")


def _split_headers(block: str) -> tuple[str, dict[str, str], str]:
    """First line, headers, rest — of an HTTP-ish block."""
    head, _, rest = block.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return lines[0].strip(), headers, rest
