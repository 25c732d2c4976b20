"""The `google-genai` client, built from settings, with the API key kept out of every output.

The key comes only from `$GEMINI_API_KEY` at the point of use. It is handed to the SDK (which sends
it as a header) and nowhere else: no attribute of ours holds it, and every error text that leaves
this package goes through `scrub`, so it never lands in logs, the record store or exceptions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from ocr_assets.redaction import REDACTED, scrub  # noqa: F401  (re-exported: callers scrub through here)
from ocr_assets.settings import Settings

API_KEY_ENV = "GEMINI_API_KEY"
BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"
# The emulator accepts any key; a loopback base URL without $GEMINI_API_KEY uses this placeholder.
EMULATOR_PLACEHOLDER_KEY = "emulator-no-key"


class GeminiUnavailable(RuntimeError):
    """The Gemini client cannot be built (no key, SDK missing)."""


class GeminiCallError(RuntimeError):
    """A Gemini API call failed (after retries); the message is scrubbed, the cause is not chained."""

    def __init__(self, message: str, *, code: int | None = None, status: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status

    @classmethod
    def wrap(cls, exc: BaseException, what: str) -> "GeminiCallError":
        return cls(f"{what}: {describe_error(exc)}", code=getattr(exc, "code", None),
                   status=getattr(exc, "status", None))


def describe_error(exc: BaseException) -> str:
    """`Type: message` of an exception, scrubbed and bounded (for last_error and the failure log)."""
    message = scrub(f"{type(exc).__name__}: {exc}")
    return message if len(message) <= 4000 else message[:4000] + "…"


def scrub_traceback(exc: BaseException) -> str:
    import traceback

    return scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def resolve_base_url(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return settings.gemini.base_url or env.get(BASE_URL_ENV) or None


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = (urlparse(url).hostname or "").lower()
    return host in {"localhost", "127.0.0.1", "::1"} or host.startswith("127.")


def credentials(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(API key, base URL) for the client; `GeminiUnavailable` without a key outside the emulator.

    Checked before any record is claimed, without importing the SDK.
    """
    env = os.environ if environ is None else environ
    base_url = resolve_base_url(settings, env)
    key = env.get(API_KEY_ENV, "")
    if not key:
        if not _is_loopback(base_url):
            raise GeminiUnavailable(
                f"${API_KEY_ENV} is not set; export it, or point gemini.base_url at the emulator"
            )
        key = EMULATOR_PLACEHOLDER_KEY
    return key, base_url


def make_client(settings: Settings, *, environ: Mapping[str, str] | None = None, timeout_s: float | None = None):
    """A `genai.Client` for the Gemini Developer API (or the emulator at the configured base URL).

    Retries are ours (tenacity around each call), so the SDK's own retry is left off.
    """
    key, base_url = credentials(settings, environ)
    try:
        from google import genai
        from google.genai import types
    except ImportError as exc:  # pragma: no cover - google-genai is a dependency
        raise GeminiUnavailable(f"google-genai is not installed: {exc}") from None
    timeout = timeout_s if timeout_s is not None else settings.gemini.request_timeout_s
    options = types.HttpOptions(
        base_url=base_url, api_version=settings.gemini.api_version, timeout=int(timeout * 1000)
    )
    try:
        return genai.Client(vertexai=False, api_key=key, http_options=options)
    except Exception as exc:  # never let the SDK's message (or locals) carry the key out
        raise GeminiUnavailable(f"cannot build the Gemini client: {describe_error(exc)}") from None
