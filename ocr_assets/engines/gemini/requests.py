"""`PageRequest` → Gemini `GenerateContentRequest`: the image (inline base64 or a File API
reference), the upstream page's image when the context source is `upstream_image`, then the
rendered prompt, with the generation config from settings.

The generation config is built once (`generation_fields`) and spelled two ways: camelCase for the
batch JSONL (REST wire format) and snake_case for real-time calls (SDK types), so both paths send
identical requests: the page schema as `responseJsonSchema` (generated from `OcrPageResult`), the
thinking budget or level, and the media resolution.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ocr_assets.core import PageFailure, PageRequest
from ocr_assets.schema import ErrorClass, response_json_schema
from ocr_assets.settings import Settings

# Image formats Gemini accepts as-is (by content, not extension); others (TIFF, BMP…) go as PNG.
FORMAT_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


class ImageUnreadable(ValueError):
    """The page image cannot be read or decoded (a fatal, per-record error)."""


class ContextImageUnreadable(ImageUnreadable):
    """The upstream page's image (`upstream_image` context) cannot be read: retryable, not this page's fault."""


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


def load_context_image(path: Path, side: int) -> ImagePayload:
    """The upstream page's image for `upstream_image` context, shrunk to fit `side` x `side` (JPEG):
    context needs the gist of the page, not every glyph, and the image is billed per tile."""
    from PIL import Image

    payload = load_image(path)
    with Image.open(io.BytesIO(payload.data)) as img:
        img.thumbnail((side, side))
        small = img.convert("RGB") if img.mode not in {"RGB", "L"} else img
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=80)
        return ImagePayload(mime_type="image/jpeg", data=out.getvalue(), width=small.width, height=small.height)


def load_page_images(request: PageRequest, settings: Settings) -> tuple[ImagePayload, ImagePayload | None]:
    """(the page's image, the upstream page's context image or None); raises `ImageUnreadable`."""
    image = load_image(request.image_path)
    if request.context_image_path is None:
        return image, None
    try:
        return image, load_context_image(request.context_image_path, settings.gemini.context_image_side)
    except ImageUnreadable as exc:
        raise ContextImageUnreadable(f"context image of the upstream page: {exc}") from None


def image_failure(key: str, exc: ImageUnreadable, model: str) -> PageFailure:
    """The per-record failure of an unreadable image (fatal for the page's own, retryable for context)."""
    if isinstance(exc, ContextImageUnreadable):
        return PageFailure(key=key, error_class=ErrorClass.RETRYABLE, error_type="context_image_unreadable",
                           message=str(exc), model=model)
    return PageFailure(key=key, error_class=ErrorClass.FATAL, error_type="image_unreadable", message=str(exc),
                       model=model)


_MEDIA_RESOLUTION = {"low": "MEDIA_RESOLUTION_LOW", "medium": "MEDIA_RESOLUTION_MEDIUM", "high": "MEDIA_RESOLUTION_HIGH"}


def generation_fields(settings: Settings) -> dict[str, Any]:
    """The generation config in the SDK's snake_case; `generation_config` spells it for REST."""
    gen = settings.model.generation
    fields: dict[str, Any] = {
        "temperature": gen.temperature,
        "max_output_tokens": gen.max_output_tokens,
        "response_mime_type": gen.response_mime_type,
    }
    if gen.response_mime_type == "application/json":  # a schema needs JSON output
        fields["response_json_schema"] = response_json_schema()
    if gen.thinking_level is not None:  # never both: a request with budget and level is a 400
        fields["thinking_config"] = {"thinking_level": gen.thinking_level.upper()}
    elif gen.thinking_budget is not None:
        fields["thinking_config"] = {"thinking_budget": gen.thinking_budget}
    if gen.media_resolution is not None:
        fields["media_resolution"] = _MEDIA_RESOLUTION[gen.media_resolution]
    return fields


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def generation_config(settings: Settings) -> dict[str, Any]:
    """The generation config as the REST API spells it (camelCase; the schema's own names untouched)."""
    out: dict[str, Any] = {}
    for name, value in generation_fields(settings).items():
        if name == "thinking_config":
            value = {_camel(k): v for k, v in value.items()}
        out[_camel(name)] = value
    return out


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
    context_image: ImagePayload | None = None,
) -> dict[str, Any]:
    """One `GenerateContentRequest` (REST JSON) for a page: image part(s), then the prompt text."""
    parts = [_image_part(image, file_ref)]
    if context_image is not None:
        parts.append(_image_part(context_image, None))
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [*parts, {"text": request.prompt}]}],
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
    context_image: ImagePayload | None = None,
) -> tuple[list[Any], Any]:
    """(contents, GenerateContentConfig) for `client.models.generate_content`."""
    from google.genai import types

    if file_ref is not None:
        media = types.Part.from_uri(file_uri=file_ref.uri, mime_type=file_ref.mime_type)
    elif image is not None:
        media = types.Part.from_bytes(data=image.data, mime_type=image.mime_type)
    else:
        raise ValueError("a request needs an inline image or a File API reference")
    parts = [media]
    if context_image is not None:
        parts.append(types.Part.from_bytes(data=context_image.data, mime_type=context_image.mime_type))
    contents = [types.Content(role="user", parts=[*parts, types.Part.from_text(text=request.prompt)])]
    config = generation_fields(settings)
    cached = cached_content or settings.gemini.cached_content
    if cached:
        config["cached_content"] = cached
    if service_tier:
        config["service_tier"] = service_tier
    return contents, types.GenerateContentConfig(**config)
