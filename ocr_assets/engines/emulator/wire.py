"""The Gemini REST wire format: JSON shapes the `google-genai` SDK sends and parses (camelCase fields,
RFC 3339 times, int64 as strings, `{"error": {code, message, status}}` bodies)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
BATCH_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"

_FILE_REF = re.compile(r"files/([A-Za-z0-9_-]+)")


class ApiError(Exception):
    """An error the emulator answers with: HTTP status + Google's canonical status name."""

    def __init__(self, code: int, message: str, status: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.status)


def error_body(code: int, message: str, status: str | None = None) -> dict[str, Any]:
    return {"error": status_object(code, message, status)}


def status_object(code: int, message: str, status: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status or STATUS_NAMES.get(code, "UNKNOWN")}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(value: str) -> float:
    """Protobuf Duration JSON ("3600s", "1.5s") in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", str(value))
    if match is None:
        raise ApiError(400, f"invalid duration {value!r} (expected e.g. '3600s')")
    return float(match.group(1))


def parse_time(value: str) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, f"invalid timestamp {value!r}") from None


def field(obj: dict[str, Any], camel: str, default: Any = None) -> Any:
    """`obj[camel]`, or its snake_case spelling (proto JSON accepts both)."""
    if camel in obj:
        return obj[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return obj.get(snake, default)


def file_id_from_ref(ref: str) -> str | None:
    """`files/abc` or `https://host/v1beta/files/abc` → `abc`."""
    match = _FILE_REF.search(ref or "")
    return match.group(1) if match else None


def decode_base64(value: str) -> bytes:
    """Standard or URL-safe base64, padded or not (proto JSON accepts both; pydantic writes URL-safe)."""
    text = str(value).strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class ImageRef:
    mime_type: str
    data: bytes | None = None  # inline bytes
    file_id: str | None = None  # a File API reference


@dataclass
class RequestContent:
    """What a GenerateContentRequest asks the model: its texts and image references, in order."""

    texts: list[str]
    images: list[ImageRef]


def content_of(*contents: Any) -> RequestContent:
    """Texts and images of Content objects (dicts), lists of them, or None."""
    out = RequestContent(texts=[], images=[])
    for item in contents:
        if item is None:
            continue
        for content in item if isinstance(item, list) else [item]:
            if not isinstance(content, dict):
                raise ApiError(400, "each content must be an object with 'parts'")
            for part in content.get("parts") or []:
                _add_part(out, part)
    return out


def _add_part(out: RequestContent, part: Any) -> None:
    if not isinstance(part, dict):
        raise ApiError(400, "each part must be an object")
    if (text := part.get("text")) is not None:
        out.texts.append(str(text))
        return
    inline = field(part, "inlineData")
    if inline is not None:
        try:
            data = decode_base64(field(inline, "data", ""))
        except (binascii.Error, ValueError):
            raise ApiError(400, "inlineData.data is not valid base64") from None
        out.images.append(ImageRef(mime_type=field(inline, "mimeType", "application/octet-stream"), data=data))
        return
    file_data = field(part, "fileData")
    if file_data is not None:
        uri = field(file_data, "fileUri", "")
        file_id = file_id_from_ref(uri)
        if file_id is None:
            raise ApiError(400, f"fileData.fileUri {uri!r} does not name a File API file")
        out.images.append(ImageRef(mime_type=field(file_data, "mimeType", "application/octet-stream"),
                                   file_id=file_id))


def usage_metadata(prompt_tokens: int, output_tokens: int, cached_tokens: int, images: int,
                   image_tokens: int, thoughts_tokens: int = 0) -> dict[str, Any]:
    text_tokens = max(0, prompt_tokens - images * image_tokens)
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + thoughts_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": text_tokens}]
        + ([{"modality": "IMAGE", "tokenCount": images * image_tokens}] if images else []),
    }
    if thoughts_tokens:
        usage["thoughtsTokenCount"] = thoughts_tokens
    if cached_tokens:
        usage["cachedContentTokenCount"] = cached_tokens
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached_tokens}]
    return usage


def generate_response(*, text: str | None, finish_reason: str, usage: dict[str, Any], model: str,
                      response_id: str) -> dict[str, Any]:
    """A GenerateContentResponse: one candidate, with content only when there is text."""
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if text is not None:
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
    if finish_reason == "SAFETY":
        candidate["safetyRatings"] = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
        ]
    if finish_reason == "RECITATION":
        candidate["citationMetadata"] = {"citationSources": [{"startIndex": 0, "endIndex": 1}]}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model.removeprefix("models/"),
        "responseId": response_id,
    }
