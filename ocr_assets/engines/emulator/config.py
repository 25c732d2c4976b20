"""Emulator settings: latency, limits and fault injection, all pydantic so they cross HTTP as JSON.

`EmulatorConfig` can be changed while the server runs (`POST /_emulator/config` or
`EmulatorState.update_config`); a change applies to decisions taken after it (a batch's fate is fixed
when it is created, record faults when its requests reach inference).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Per-record fault kinds, in the fixed order used for the categorical draw (changing the order would
# change which records a seed faults, so append new kinds at the end).
RECORD_FAULT_KINDS: tuple[str, ...] = (
    "error_429",
    "error_500",
    "error_503",
    "malformed_json",
    "truncated",
    "safety",
    "recitation",
    "missing_line",
    "duplicate_line",
    "unknown_key",
)
# Kinds that only shape a batch result file (a real-time call or an inline batch answers positionally).
FILE_ONLY_FAULT_KINDS = frozenset({"missing_line", "duplicate_line", "unknown_key"})
ERROR_FAULT_CODES = {"error_429": 429, "error_500": 500, "error_503": 503}

# Route names, for `FaultConfig.endpoint_routes` and the endpoint fault draw.
ROUTES: tuple[str, ...] = (
    "files.upload",
    "files.upload_chunk",
    "files.get",
    "files.list",
    "files.delete",
    "files.download",
    "batches.create",
    "batches.get",
    "batches.list",
    "batches.cancel",
    "batches.delete",
    "models.generateContent",
    "models.countTokens",
    "models.get",
    "caches.create",
    "caches.get",
    "caches.list",
    "caches.update",
    "caches.delete",
)

Probability = float


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FaultConfig(_Config):
    """What goes wrong, decided from a hash of (seed, record key, attempt of that key): reproducible
    whatever the thread timing."""

    seed: int = 0

    # Per-record faults: the probability that one attempt of a record gets this fault instead of a clean
    # answer. One draw per attempt, so the kinds are exclusive; their sum must be ≤ 1.
    error_429: Probability = Field(0.0, ge=0, le=1, description="result line is an error object, code 429")
    error_500: Probability = Field(0.0, ge=0, le=1, description="result line is an error object, code 500")
    error_503: Probability = Field(0.0, ge=0, le=1, description="result line is an error object, code 503")
    malformed_json: Probability = Field(0.0, ge=0, le=1, description="answer text is broken JSON")
    truncated: Probability = Field(0.0, ge=0, le=1, description="finishReason MAX_TOKENS, JSON cut short")
    safety: Probability = Field(0.0, ge=0, le=1, description="finishReason SAFETY, no text")
    recitation: Probability = Field(0.0, ge=0, le=1, description="finishReason RECITATION, no text")
    missing_line: Probability = Field(0.0, ge=0, le=1, description="no result line for the key (file batches)")
    duplicate_line: Probability = Field(0.0, ge=0, le=1, description="the result line appears twice (file batches)")
    unknown_key: Probability = Field(0.0, ge=0, le=1, description="an extra line with a key never submitted")
    # Result lines in a deterministic shuffled order instead of submission order (file batches).
    shuffle_results: bool = False
    # Field a per-line error object goes under in a result file: {"key", "error": {...}} or {"key", "status": {...}}.
    result_error_field: Literal["error", "status"] = "error"

    # Endpoint faults: any API call may be refused before it is served (drawn per route and call count).
    endpoint_429: Probability = Field(0.0, ge=0, le=1)
    endpoint_503: Probability = Field(0.0, ge=0, le=1)
    # Route names (see `ROUTES`) the endpoint faults apply to; empty = every route.
    endpoint_routes: list[str] = Field(default_factory=list)
    # Slow polls: `batches.get` sleeps `slow_poll_s` with probability `slow_poll_rate`.
    slow_poll_rate: Probability = Field(0.0, ge=0, le=1)
    slow_poll_s: float = Field(0.0, ge=0)

    # Batch fates by ordinal (1 = the first batch this emulator accepted).
    fail_batches: list[int] = Field(default_factory=list)
    expire_batches: list[int] = Field(default_factory=list)
    stuck_batches: list[int] = Field(default_factory=list)
    # An EXPIRED batch keeps this fraction of its result lines (chosen per key by the seed).
    expired_keep_fraction: float = Field(0.5, ge=0, le=1)

    @field_validator("endpoint_routes")
    @classmethod
    def _known_routes(cls, routes: list[str]) -> list[str]:
        unknown = sorted(set(routes) - set(ROUTES))
        if unknown:
            raise ValueError(f"unknown route(s) {unknown}; known: {', '.join(ROUTES)}")
        return routes

    @model_validator(mode="after")
    def _record_total(self) -> "FaultConfig":
        total = sum(getattr(self, kind) for kind in RECORD_FAULT_KINDS)
        if total > 1 + 1e-9:
            raise ValueError(f"per-record fault probabilities sum to {total:.3f} (must be ≤ 1)")
        return self

    def record_rates(self) -> dict[str, float]:
        return {kind: getattr(self, kind) for kind in RECORD_FAULT_KINDS}

    @classmethod
    def mixed(cls, rate: float, *, seed: int = 0) -> "FaultConfig":
        """A bit of everything: `rate` spread evenly over the record kinds, shuffled results, and
        `rate / 10` of endpoint 429/503s (the CLI's `--fault-rate`)."""
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate {rate} is not within [0, 1]")
        each = rate / len(RECORD_FAULT_KINDS)
        return cls(
            seed=seed,
            **{kind: each for kind in RECORD_FAULT_KINDS},
            shuffle_results=rate > 0,
            endpoint_429=rate / 20,
            endpoint_503=rate / 20,
        )


class ModelLikeConfig(_Config):
    """Answers that vary the way real model output varies (`engines/emulator/model_like.py`), each
    drawn per (seed, record key, attempt). Every variant but `invalid` is valid content the client
    must accept; `invalid` answers break the page contract on purpose (the client must reject them
    naming the field). Thinking tokens follow the request's thinking config."""

    enabled: bool = False
    null_rate: Probability = Field(0.5, ge=0, le=1, description="empty lists and absent strings sent as null")
    omit_rate: Probability = Field(0.3, ge=0, le=1, description="optional fields left out")
    roman_rate: Probability = Field(0.2, ge=0, le=1, description="page label printed in roman numerals")
    fence_rate: Probability = Field(0.2, ge=0, le=1, description="JSON inside a ```json fence")
    prose_rate: Probability = Field(0.1, ge=0, le=1, description="a sentence before and after the JSON")
    extra_key_rate: Probability = Field(0.2, ge=0, le=1, description="unknown keys the schema does not name")
    invalid_rate: Probability = Field(0.0, ge=0, le=1, description="a course without a name, no courses, …")
    # Thinking tokens a page "needs" when the request lets the model decide (no budget, or -1).
    natural_thinking_tokens: int = Field(900, ge=0)


class EmulatorConfig(_Config):
    """How the emulated Gemini API behaves: timings, limits, token estimates and faults."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")

    # Batch lifecycle: PENDING for `pending_s`, then RUNNING for at least `batch_latency_s` (and until the
    # answers are computed), then terminal. A batch pending or running past `batch_expire_after_s` EXPIRES.
    pending_s: float = Field(0.0, ge=0)
    batch_latency_s: float = Field(0.0, ge=0)
    batch_expire_after_s: float = Field(48 * 3600.0, gt=0)
    realtime_latency_s: float = Field(0.0, ge=0)
    # How long a `batches.get` waits for answers still being computed once the batch is due.
    inline_wait_s: float = Field(2.0, ge=0)
    # Answerer calls running at once (the local OCR engine is CPU-bound).
    inference_concurrency: int = Field(1, ge=1, le=64)

    # Limits (None = unlimited).
    max_enqueued_tokens: int | None = Field(None, ge=1, description="estimated tokens across active batches")
    max_active_batches: int | None = Field(100, ge=1)
    file_ttl_s: float = Field(48 * 3600.0, gt=0, description="uploaded and result files live this long")
    cache_default_ttl_s: float = Field(3600.0, gt=0)
    min_cache_tokens: int = Field(0, ge=0, description="smallest cache accepted (Gemini: 1024+)")
    list_page_size: int = Field(50, ge=1, le=1000)

    # Accepted API keys; None accepts any non-empty key. Never serialised, logged or echoed.
    api_keys: list[SecretStr] | None = Field(None, exclude=True)

    faults: FaultConfig = Field(default_factory=FaultConfig)
    model_like: ModelLikeConfig = Field(default_factory=ModelLikeConfig)

    def merged(self, patch: dict[str, Any]) -> "EmulatorConfig":
        """This config with `patch` (a partial, nested dict) applied and re-validated; keys stay as they are."""
        data = self.model_dump()
        _deep_update(data, {k: v for k, v in patch.items() if k != "api_keys"})
        merged = type(self).model_validate(data)
        merged.api_keys = self.api_keys
        return merged


def _deep_update(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
