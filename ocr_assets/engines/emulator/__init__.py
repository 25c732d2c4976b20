"""A local Gemini API emulator: the REST wire format the unmodified `google-genai` SDK speaks (files,
batches, generateContent, cachedContents), with batch latency, limits and seeded fault injection,
answering from the local OCR engine or a deterministic echo."""

from ocr_assets.engines.emulator.answers import (
    Answer,
    AnswerError,
    Answerer,
    AnswerRequest,
    EchoAnswerer,
    Image,
    LocalAnswerer,
    PageIdentity,
    default_answerer,
    local_engine_available,
    make_answerer,
    parse_page_identity,
)
from ocr_assets.engines.emulator.config import RECORD_FAULT_KINDS, ROUTES, EmulatorConfig, FaultConfig
from ocr_assets.engines.emulator.server import EmulatorServer
from ocr_assets.engines.emulator.state import BatchEvent, EmulatorState, RequestLogEntry

__all__ = [
    "RECORD_FAULT_KINDS",
    "ROUTES",
    "Answer",
    "AnswerError",
    "AnswerRequest",
    "Answerer",
    "BatchEvent",
    "EchoAnswerer",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorState",
    "FaultConfig",
    "Image",
    "LocalAnswerer",
    "PageIdentity",
    "RequestLogEntry",
    "default_answerer",
    "local_engine_available",
    "make_answerer",
    "parse_page_identity",
]
