"""The project's secrets and the one scrubber every output goes through.

Secrets (`GEMINI_API_KEY`, `BRAINTRUST_API_KEY`, `GOOGLE_API_KEY`) come only from the environment, at
the point of use. `scrub` redacts their values (and anything shaped like a Google API key) from a
text; `looks_secret` tells a field name that could carry one (`api_key`, `token`, ...), whose input
value is never repeated back, even in a validation error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

SECRET_ENV = ("GEMINI_API_KEY", "BRAINTRUST_API_KEY", "GOOGLE_API_KEY")
REDACTED = "[REDACTED]"

# Google API keys have a recognisable shape; scrub those too (a key from another variable, say).
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{30,}")
_SECRET_NAME = re.compile(r"key|token|secret|passw", re.IGNORECASE)
# Shorter values would redact ordinary words; no real key is this short.
_MIN_SECRET_LEN = 6


def looks_secret(name: object) -> bool:
    """True for a field or variable name that could hold a credential."""
    return bool(_SECRET_NAME.search(str(name)))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets' values in this process's environment and in `environ` (one given for a call)."""
    values = {env.get(name, "") for env in (os.environ, environ or {}) for name in SECRET_ENV}
    return sorted(v for v in values if len(v) >= _MIN_SECRET_LEN)


def is_secret_value(value: object, environ: Mapping[str, str] | None = None) -> bool:
    text = str(value)
    return any(secret in text for secret in secret_values(environ)) or bool(_GOOGLE_KEY.search(text))


def scrub(text: object, environ: Mapping[str, str] | None = None) -> str:
    """`text` with any secret's value (the configured ones, or anything shaped like a Google key) redacted."""
    out = "" if text is None else str(text)
    for secret in secret_values(environ):
        out = out.replace(secret, REDACTED)
    return _GOOGLE_KEY.sub(REDACTED, out)
