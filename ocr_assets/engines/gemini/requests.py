"""`PageRequest` → Gemini `GenerateContentRequest`: the image (inline base64 or a File API
reference) then the rendered prompt, with the generation config from settings.

The same builder feeds the batch JSONL (REST wire format, camelCase) and real-time calls (SDK
types), so both paths send identical requests.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ocr_assets.engines.base import PageRequest
from ocr_assets.settings import Settings

# Image formats Gemini accepts as-is (by content, not extension); others (TIFF, BMP…) go as PNG.
FORMAT_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class ImageUnreadable(ValueError):
    """The page image cannot be read or decoded (a fatal, per-record error)."""


class ImagePayload(BaseModel):
    """The bytes Gemini receives for one page image, with what the token estimate needs."""

    mime_type: str
    data: bytes
    width: int
    height: int


class FileRef(BaseModel):
    """An uploaded File API image: `fileData` instead of inline bytes."""

    name: str
    uri: str
    mime_type: str


def load_image(path: Path) -> ImagePayload:
    """Read a page image; re-encode to PNG when Gemini does not take the format directly."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageUnreadable(f"cannot read image {path}: {exc.strerror or exc}") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size
            mime = FORMAT_MIME.get((img.format or "").upper())
            if mime is None:
                img.load()
                converted = img if img.mode in {"RGB", "L", "RGBA"} else img.convert("RGB")
                out = io.BytesIO()
                converted.save(out, format="PNG")
                raw, mime = out.getvalue(), "image/png"
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise ImageUnreadable(f"image {path} cannot be decoded: {exc}") from None
    return ImagePayload(mime_type=mime, data=raw, width=width, height=height)


def generation_config(settings: Settings) -> dict[str, Any]:
    """The generation config as the REST API spells it (camelCase)."""
    gen = settings.model.generation
    return {
        "temperature": gen.temperature,
        "maxOutputTokens": gen.max_output_tokens,
        "responseMimeType": gen.response_mime_type,
    }


def _image_part(image: ImagePayload | None, file_ref: FileRef | None) -> dict[str, Any]:
    if file_ref is not None:
        return {"fileData": {"mimeType": file_ref.mime_type, "fileUri": file_ref.uri}}
    if image is None:
        raise ValueError("a request needs an inline image or a File API reference")
    return {"inlineData": {"mimeType": image.mime_type, "data": base64.b64encode(image.data).decode("ascii")}}


def build_request(
    request: PageRequest,
    settings: Settings,
    *,
    image: ImagePayload | None = None,
    file_ref: FileRef | None = None,
    cached_content: str | None = None,
) -> dict[str, Any]:
    """One `GenerateContentRequest` (REST JSON) for a page: image part, then the prompt text."""
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [_image_part(image, file_ref), {"text": request.prompt}]}],
        "generationConfig": generation_config(settings),
    }
    cached = cached_content or settings.gemini.cached_content
    if cached:
        body["cachedContent"] = cached
    return body


def jsonl_line(key: str, body: dict[str, Any]) -> bytes:
    """One batch input line `{"key", "request"}`; the key is the record key, joined on at ingest."""
    return json.dumps({"key": key, "request": body}, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def sdk_call(
    request: PageRequest,
    settings: Settings,
    *,
    image: ImagePayload | None = None,
    file_ref: FileRef | None = None,
    service_tier: str | None = None,
    cached_content: str | None = None,
) -> tuple[list[Any], Any]:
    """(contents, GenerateContentConfig) for `client.models.generate_content`."""
    from google.genai import types

    if file_ref is not None:
        media = types.Part.from_uri(file_uri=file_ref.uri, mime_type=file_ref.mime_type)
    elif image is not None:
        media = types.Part.from_bytes(data=image.data, mime_type=image.mime_type)
    else:
        raise ValueError("a request needs an inline image or a File API reference")
    contents = [types.Content(role="user", parts=[media, types.Part.from_text(text=request.prompt)])]
    gen = settings.model.generation
    config: dict[str, Any] = {
        "temperature": gen.temperature,
        "max_output_tokens": gen.max_output_tokens,
        "response_mime_type": gen.response_mime_type,
    }
    cached = cached_content or settings.gemini.cached_content
    if cached:
        config["cached_content"] = cached
    if service_tier:
        config["service_tier"] = service_tier
    return contents, types.GenerateContentConfig(**config)
