"""The record store: a DuckDB file holding every record's state, batches, failures, costs and inferences.

Every access runs inside a session (`with store.session():`, one unit of work) under an exclusive
file lock, and every SQL statement of the project lives in this package:
`schema` (numbered migrations), `session` (lock + connection), `transitions` (record status rules,
pure), `records`, `batches`, `logs`. Transitions are guarded SQL: a record only moves from the
states its transition allows, and results only apply to the batch the record is in.
"""

from ocr_assets.store.batches import BatchesMixin
from ocr_assets.store.logs import LogsMixin
from ocr_assets.store.models import (
    ACTIVE_BATCH_STATES,
    PLAN_COLUMNS,
    REMOTE_TERMINAL_STATES,
    TERMINAL_STATUSES,
    ApplySummary,
    BatchRow,
    BatchState,
    BatchTransition,
    ClaimItem,
    PlannedRecord,
    RecordOutcome,
    RecordRow,
    RecordStatus,
    StoreError,
    utcnow,
)
from ocr_assets.store.records import Progress, RecordsMixin
from ocr_assets.store.session import copy_database_files


class RecordStore(RecordsMixin, BatchesMixin, LogsMixin):
    """The record store on one DuckDB file; see the package docstring."""


__all__ = [
    "ACTIVE_BATCH_STATES", "PLAN_COLUMNS", "REMOTE_TERMINAL_STATES", "TERMINAL_STATUSES", "ApplySummary",
    "BatchRow", "BatchState", "BatchTransition", "ClaimItem", "PlannedRecord", "Progress", "RecordOutcome",
    "RecordRow", "RecordStatus", "RecordStore", "StoreError", "copy_database_files", "utcnow",
]
