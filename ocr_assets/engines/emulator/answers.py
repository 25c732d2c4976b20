"""Where the emulator's answers come from: an `Answerer` turns one request (prompt text + image bytes +
model) into answer text and token usage.

- `EchoAnswerer`: fast and deterministic; a schema-valid `OcrPageResult` that echoes the page identity
  the prompt names ("Catalog: {school} ({state}), catalog year {year}, page {page}.") and the image
  digest, so a test can check that every page's output came from its own request.
- `LocalAnswerer`: the project's local OCR engine (`ocr_assets.engines.local.LocalInference`), loaded
  lazily, once.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ocr_assets.schema import Course, OcrPageResult, PageInfo, RawOcr, TextBlock

CHARS_PER_TOKEN = 4.0
IMAGE_TOKENS = 258

_IDENTITY = re.compile(
    r"Catalog:\s*(?P<school>.+?)\s*\((?P<state>[^()\n]*)\),\s*catalog year\s+(?P<year>[^,\s]+),"
    r"\s*page\s+(?P<page>-?\d+)\."
)


class AnswerError(RuntimeError):
    """The answerer could not answer this request; the emulator reports it as an error for that record."""

    def __init__(self, message: str, code: int = 500):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Image:
    data: bytes
    mime_type: str = "image/jpeg"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class AnswerRequest:
    """One request as the model sees it: the whole prompt text (cached prefix included) and its images."""

    key: str
    prompt: str
    model: str
    images: tuple[Image, ...] = ()
    max_output_tokens: int | None = None
    # The request's `responseJsonSchema` (or `responseSchema`), which model-like answers honour.
    response_schema: dict | None = field(default=None, hash=False, compare=False)


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    output_tokens: int
    extra: dict = field(default_factory=dict)


@runtime_checkable
class Answerer(Protocol):
    """Answers one request; may also define `answer_many(requests) -> list[Answer | Exception]`."""

    def __call__(self, request: AnswerRequest) -> Answer: ...


@dataclass(frozen=True)
class PageIdentity:
    school: str
    state: str
    year: str
    page: int

    @property
    def record_key(self) -> str:
        """The project's record key `state:school:year:page`."""
        return f"{self.state}:{self.school}:{self.year}:{self.page}"


def parse_page_identity(prompt: str) -> PageIdentity | None:
    """The page a prompt names, or None when it names none."""
    match = _IDENTITY.search(prompt)
    if match is None:
        return None
    return PageIdentity(
        school=match["school"].strip(), state=match["state"].strip(), year=match["year"], page=int(match["page"])
    )


def estimate_prompt_tokens(prompt: str, images: int) -> int:
    return int(len(prompt) / CHARS_PER_TOKEN) + images * IMAGE_TOKENS


def estimate_output_tokens(text: str) -> int:
    return max(1, int(len(text) / CHARS_PER_TOKEN)) if text else 0


def answer_all(answerer: Answerer, requests: list[AnswerRequest]) -> list[Answer | Exception]:
    """Answer every request, one outcome per request in order; a failing request never sinks the rest."""
    many = getattr(answerer, "answer_many", None)
    if many is not None and requests:
        try:
            outcomes = list(many(requests))
            if len(outcomes) == len(requests):
                return outcomes
        except Exception:  # noqa: BLE001 - fall back to one at a time to isolate the failing request
            pass
    outcomes: list[Answer | Exception] = []
    for request in requests:
        try:
            outcomes.append(answerer(request))
        except Exception as exc:  # noqa: BLE001 - reported per record
            outcomes.append(exc)
    return outcomes


class EchoAnswerer:
    """A deterministic `OcrPageResult` that echoes the request's page identity and image digest."""

    name = "echo"

    def __call__(self, request: AnswerRequest) -> Answer:
        identity = parse_page_identity(request.prompt)
        digest = request.images[0].digest[:16] if request.images else "none"
        if identity is None:
            blocks = [TextBlock(block_id=1, text="(no page identity in the prompt)", font_style="regular")]
            result = OcrPageResult(
                raw_ocr=RawOcr(text_blocks=blocks, layout_description="echo"),
                page_info=PageInfo(page_number=None, content_type="other"),
            )
        else:
            year: int | str = int(identity.year) if identity.year.isdigit() else identity.year
            heading = f"{identity.school} ({identity.state}) catalog {identity.year}, page {identity.page}"
            blocks = [
                TextBlock(block_id=1, position=[0, 0, 100, 10], text=heading, font_style="bold"),
                TextBlock(block_id=2, position=[0, 10, 100, 20], text=f"image sha256 {digest}", font_style="regular"),
                TextBlock(
                    block_id=3, position=[0, 20, 100, 30],
                    text=f"ECHO {identity.page}01 Course of page {identity.page}", font_style="regular",
                ),
            ]
            result = OcrPageResult(
                raw_ocr=RawOcr(text_blocks=blocks, layout_description="echo: one column"),
                page_info=PageInfo(page_number=identity.page, content_type="course_listing"),
                school_name=identity.school,
                catalog_year=year,
                courses=[Course(course_name=f"ECHO {identity.page}01 Course of page {identity.page}",
                                department="Echo")],
            )
        text = result.model_dump_json()
        return Answer(
            text=text,
            prompt_tokens=estimate_prompt_tokens(request.prompt, len(request.images)),
            output_tokens=estimate_output_tokens(text),
        )


def local_engine_available() -> bool:
    try:
        from ocr_assets.engines.local import LocalInference  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not here"
        return False
    return True


_SUFFIX = {"image/png": ".png", "image/tiff": ".tif", "image/webp": ".webp", "image/jpeg": ".jpg"}


class LocalAnswerer:
    """Answers with the project's local OCR engine, loaded on first use and shared by every thread."""

    name = "local"

    def __init__(self, engine: str = "rapidocr", device: str = "cpu", batch_size: str = "auto",
                 model_dir: Path | None = None):
        self._options = {"engine": engine, "device": device, "batch_size": batch_size, "model_dir": model_dir}
        self._engine = None
        self._load_lock = threading.Lock()
        self._infer_lock = threading.Lock()

    def _get_engine(self):
        with self._load_lock:
            if self._engine is None:
                from ocr_assets.engines.local import LocalInference

                try:
                    self._engine = LocalInference(**self._options)
                except TypeError:  # a constructor without some of the factory's options: take its defaults
                    self._engine = LocalInference(engine=self._options["engine"], device=self._options["device"])
            return self._engine

    def __call__(self, request: AnswerRequest) -> Answer:
        outcome = self.answer_many([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def answer_many(self, requests: list[AnswerRequest]) -> list[Answer | Exception]:
        from ocr_assets.core import PageRequest, PageSuccess, PromptIdentity

        engine = self._get_engine()
        outcomes: list[Answer | Exception | None] = [None] * len(requests)
        with tempfile.TemporaryDirectory(prefix="ocr-emulator-") as tmp:
            page_requests, positions = [], []
            for index, request in enumerate(requests):
                if not request.images:
                    outcomes[index] = AnswerError("request carries no image", code=400)
                    continue
                image = request.images[0]
                path = Path(tmp) / f"{index}{_SUFFIX.get(image.mime_type, '.img')}"
                path.write_bytes(image.data)
                identity = parse_page_identity(request.prompt)
                book = identity.record_key.rsplit(":", 1)[0] if identity else "emulator:book:0"
                page_requests.append(PageRequest(
                    key=request.key, book=book, page=identity.page if identity else index,
                    image_path=path, prompt=request.prompt,
                    prompt_identity=PromptIdentity(name="emulator", version="0", vars_hash=""),
                ))
                positions.append(index)
            if page_requests:
                with self._infer_lock:
                    results = engine.infer(page_requests)
                for index, result in zip(positions, results, strict=True):
                    request = requests[index]
                    if isinstance(result, PageSuccess):
                        text = result.result.model_dump_json()
                        outcomes[index] = Answer(
                            text=text,
                            prompt_tokens=estimate_prompt_tokens(request.prompt, len(request.images)),
                            output_tokens=estimate_output_tokens(text),
                        )
                    else:
                        outcomes[index] = AnswerError(f"local engine failed: {result.message}")
        return [o if o is not None else AnswerError("no answer") for o in outcomes]


def default_answerer() -> Answerer:
    """The local OCR engine when it is importable, else the echo answerer."""
    return LocalAnswerer() if local_engine_available() else EchoAnswerer()


def make_answerer(name: str) -> Answerer:
    if name == "echo":
        return EchoAnswerer()
    if name == "local":
        if not local_engine_available():
            raise AnswerError("the local OCR engine (ocr_assets.engines.local) is not importable here")
        return LocalAnswerer()
    raise ValueError(f"unknown answerer {name!r} (echo | local)")
