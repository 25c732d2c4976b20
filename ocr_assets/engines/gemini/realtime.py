"""Gemini real-time (and flex tier) engines: concurrent `generate_content`, one outcome per request.

Transport failures (429, 5xx, timeouts, dropped connections) are retried in place with tenacity;
what still fails comes back as a classified `PageFailure`, so record semantics match the batch
path exactly. The flex engine sets `service_tier=flex` on the same call (supported by the installed
google-genai: `GenerateContentConfig.service_tier`): the batch price, synchronously, with minutes
of latency — a fit for long dependent chains and retry tails.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ocr_assets.core import EngineMisconfigured, EngineUnreachable, PageOutcome, PageRequest, PricingMode
from ocr_assets.engines.gemini.calls import retrying
from ocr_assets.engines.gemini.classify import classify_exception, classify_response
from ocr_assets.engines.gemini.client import describe_error, make_client, resolve_base_url
from ocr_assets.engines.gemini.requests import ImageUnreadable, image_failure, load_page_images, sdk_call
from ocr_assets.settings import Settings


def flex_supported() -> bool:
    """Whether the installed SDK can ask for the flex service tier."""
    try:
        from google.genai import types
    except ImportError:  # pragma: no cover
        return False
    return "service_tier" in types.GenerateContentConfig.model_fields and hasattr(types, "ServiceTier")


class GeminiRealtimeEngine:
    """`SyncEngine` over `client.models.generate_content`, bounded by `execution.realtime_concurrency`."""

    name: str = "gemini-realtime"
    pricing_mode: PricingMode = "realtime"
    service_tier: str | None = None

    def __init__(self, settings: Settings, client: Any = None):
        self.settings = settings
        self.model_name = settings.model.name
        self.concurrency = settings.execution.realtime_concurrency
        self._client = client
        self._retry = retrying(settings.gemini)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, concurrency={self.concurrency})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    def infer(self, requests: list[PageRequest]) -> list[PageOutcome]:
        if not requests:
            return []
        _ = self.client  # build once, before the threads share it
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self.infer_one, requests))

    def infer_one(self, request: PageRequest) -> PageOutcome:
        start = time.monotonic()
        try:
            image, context_image = load_page_images(request, self.settings)
        except ImageUnreadable as exc:
            return image_failure(request.key, exc, self.model_name)
        contents, config = sdk_call(request, self.settings, image=image, service_tier=self.service_tier,
                                    context_image=context_image)
        try:
            response = self._retry(self.client.models.generate_content)(
                model=self.model_name, contents=contents, config=config
            )
        except Exception as exc:
            self._stop_if_no_page_can_be_answered(exc)
            return classify_exception(request.key, exc, model=self.model_name, latency_s=time.monotonic() - start)
        data = response.model_dump(
            mode="json", by_alias=True, exclude_none=True,
            exclude={"sdk_http_response", "automatic_function_calling_history", "parsed"},
        )
        return classify_response(request.key, data, model=self.model_name, latency_s=time.monotonic() - start)


    def _stop_if_no_page_can_be_answered(self, exc: Exception) -> None:
        """A 404 (no such endpoint or model) or a refused connection would fail every page alike."""
        url = resolve_base_url(self.settings) or "Google's endpoint"
        if getattr(exc, "code", None) == 404:
            raise EngineMisconfigured(
                f"model {self.model_name!r} not found at {url} (404): check model.name and gemini.base_url "
                f"({describe_error(exc)})") from None
        # The SDK's HTTP client (httpx, or httpx2 in newer SDKs) names it ConnectError; after the retries.
        if isinstance(exc, ConnectionError) or type(exc).__name__ in ("ConnectError", "ConnectTimeout"):
            raise EngineUnreachable(f"cannot reach the Gemini API at {url}: {describe_error(exc)}") from None


class GeminiFlexEngine(GeminiRealtimeEngine):
    """The flex service tier: real-time calls billed at the batch price, minutes of latency."""

    name = "gemini-flex"
    pricing_mode: PricingMode = "batch"
    service_tier = "flex"
