"""OData `$batch` (multipart/mixed) for the Dataverse Web API: build requests, read parts.

With `Prefer: odata.continue-on-error` each item of a batch has its own status, so one bad
row doesn't sink the others (reference §1.4). An item is a request, or a change set: a
nested multipart/mixed of requests that succeed or fail together, each with a `Content-ID`
a later request of the same change set refers to as `$<id>` (a contact's upsert, then the
lead bound to it). A change set that fails is answered by ONE application/http error
response for all its requests (OData 4.0 Part 1 §11.7.4, "Responding to a Batch Request";
the format: learn.microsoft.com/power-apps/developer/data-platform/webapi/
execute-batch-operations-using-web-api, "Change sets").
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
    content_id: str | None = None  # inside a change set: `$<content_id>` names its record


@dataclass(frozen=True)
class ChangeSet:
    """Requests applied as one transaction; in a response, their answers (or, when it
    failed, a single error Part instead of a ChangeSet)."""

    parts: list[Part]


def odata_string(value: str) -> str:
    """A string literal for an OData key or filter: quoted, with `'` doubled."""
    return "'" + value.replace("'", "''") + "'"


def _envelope(boundary: str, content_id: str | None = None) -> list[str]:
    """The MIME head of one batch part, request or response."""
    return [
        f"--{boundary}",
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        *([f"Content-ID: {content_id}"] if content_id is not None else []),
        "",
    ]


def _request_lines(boundary: str, part: Part) -> list[str]:
    lines = [*_envelope(boundary, part.content_id), f"{part.method} {part.url} HTTP/1.1"]
    lines += [f"{key}: {value}" for key, value in (part.headers or {}).items()]
    if part.body is None:
        return [*lines, "", ""]
    lines += ["Content-Type: application/json; charset=utf-8", ""]
    return [*lines, json.dumps(part.body, ensure_ascii=False)]


def build(items: list[Part] | list[Part | ChangeSet]) -> tuple[str, bytes]:
    """Return (content type, body) of a batch of requests and change sets."""
    boundary = f"batch_{uuid.uuid4().hex}"
    lines: list[str] = []
    for item in items:
        if isinstance(item, ChangeSet):
            inner = f"changeset_{uuid.uuid4().hex}"
            lines += [
                f"--{boundary}",
                f'Content-Type: multipart/mixed; boundary="{inner}"',
                "",
            ]
            for part in item.parts:
                lines += _request_lines(inner, part)
            lines += [f"--{inner}--", ""]
            continue
        lines += _request_lines(boundary, item)
    lines += [f"--{boundary}--", ""]
    return f'multipart/mixed; boundary="{boundary}"', "\r\n".join(lines).encode("utf-8")


_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STATUS = re.compile(r"^HTTP/1\.[01] (\d{3})")


def boundary_of(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type or "")
    return match.group(1) if match else None


def parse(content_type: str, body: bytes, *, requests_side: bool = False) -> list[Any]:
    """Split a multipart batch into its items (responses, or requests when
    `requests_side`): a `Part` each, or a `ChangeSet` of parts for a nested multipart."""
    return _items(content_type, body.decode("utf-8"), requests_side)


def _items(content_type: str, text: str, requests_side: bool) -> list[Any]:
    boundary = boundary_of(content_type)
    if boundary is None:
        raise ValueError("no multipart boundary in Content-Type")
    items: list[Any] = []
    for chunk in text.split(f"--{boundary}")[1:]:
        if chunk.startswith("--"):
            break
        mime, _, http = chunk.strip("\r\n").replace("\r\n", "\n").partition("\n\n")
        head = _header_lines(mime.split("\n"))
        if head.get("content-type", "").lower().startswith("multipart/mixed"):
            nested = _items(head["content-type"], http, requests_side)
            items.append(ChangeSet([p for p in nested if isinstance(p, Part)]))
            continue
        items.append(_part(http, requests_side, head.get("content-id")))
    return items


def _part(http: str, requests_side: bool, content_id: str | None) -> Part:
    first, headers, payload = _split_headers(http)
    payload = payload.strip()
    parsed = json.loads(payload) if payload.startswith(("{", "[")) else (payload or None)
    if requests_side:
        method, url, _ = first.split(" ", 2)
        return Part(method=method, url=url, headers=headers, body=parsed, content_id=content_id)
    status = _STATUS.match(first)
    return Part(
        status=int(status.group(1)) if status else 0,
        headers=headers,
        body=parsed,
        content_id=content_id,
    )


def response(items: list[Part] | list[Part | ChangeSet]) -> tuple[str, bytes]:
    """Serialise response items (used by the sandbox, and by tests as the vendor's shape):
    a ChangeSet becomes a nested `changesetresponse_…` multipart whose parts repeat their
    request's Content-ID, as in the doc's change-set example."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    lines: list[str] = []
    for item in items:
        if isinstance(item, ChangeSet):
            inner = f"changesetresponse_{uuid.uuid4()}"
            lines += [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={inner}", ""]
            lines += _response_lines(inner, item.parts)
            lines += [f"--{inner}--"]
            continue
        lines += _response_lines(boundary, [item])
    lines += [f"--{boundary}--", ""]
    return f"multipart/mixed; boundary={boundary}", "\r\n".join(lines).encode("utf-8")


def _response_lines(boundary: str, parts: list[Part]) -> list[str]:
    lines: list[str] = []
    reasons = {
        200: "OK",
        201: "Created",
        204: "No Content",
        400: "Bad Request",
        404: "Not Found",
        409: "Conflict",
        412: "Precondition Failed",
        429: "Too Many Requests",
        500: "Internal Server Error",
    }
    for part in parts:
        lines += [
            *_envelope(boundary, part.content_id),
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
    return lines


def _split_headers(block: str) -> tuple[str, dict[str, str], str]:
    """First line, headers, rest — of an HTTP-ish block."""
    head, _, rest = block.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    return lines[0].strip(), _header_lines(lines[1:]), rest


def _header_lines(lines: list[str]) -> dict[str, str]:
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip():
            headers[key.strip().lower()] = value.strip()
    return headers
