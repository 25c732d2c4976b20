"""The corpus plan: scan images + allow-list once into immutable nodes and page-chain deps.

Only allow-listed pages exist. Within a book, page N depends on the previous allow-listed page
only if that page is N−1; a gap starts a new chain. Bad entries never crash the scan: each one
becomes a report line with a reason, and valid pages beside it are kept. A page whose image is
empty or undecodable (checked cheaply: size, header, dimensions; no full decode) is reported and
left out, like a missing image. Hidden and OS files (`.DS_Store`, `._*`, `Thumbs.db`) are skipped
quietly. A missing images or allow-list root is a configuration error (`CorpusRootMissing`).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from ocr_assets.keys import BookKey, check_name_part
from ocr_assets.settings import FilterSettings
from ocr_assets.store import PLAN_COLUMNS, PlannedRecord, RecordStore

_BOOK, _PAGE = PLAN_COLUMNS.index("book"), PLAN_COLUMNS.index("page")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


# Files operating systems and archivers leave behind: never corpus entries, never worth a report line.
_OS_FILES = frozenset({"Thumbs.db", "desktop.ini", "ehthumbs.db", "__MACOSX", "Icon\r"})


def _hidden(name: str) -> bool:
    """Dot-files (`.DS_Store`, AppleDouble `._1.jpg`, `.git`) and OS litter, skipped quietly."""
    return name.startswith(".") or name in _OS_FILES


class CorpusRootMissing(ValueError):
    """The images or allow-list root is not a folder: the settings point at the wrong place."""


class ReportEntry(BaseModel):
    path: str
    reason: str


@dataclass
class ScanResult:
    """Nodes found on disk (plain tuples in `PLAN_COLUMNS` order: a million pydantic objects would
    cost seconds and a GiB) plus everything that could not be planned, with reasons."""

    nodes: list[tuple] = field(default_factory=list)
    report: list[ReportEntry] = field(default_factory=list)

    def books(self) -> dict[str, list[tuple]]:
        grouped: dict[str, list[tuple]] = defaultdict(list)
        for node in self.nodes:
            grouped[node[_BOOK]].append(node)
        return dict(grouped)

    def records(self) -> list[PlannedRecord]:
        return [PlannedRecord(**dict(zip(PLAN_COLUMNS, node))) for node in self.nodes]


class PlanResult(BaseModel):
    plan_run: str
    pages_found: int
    books_found: int
    books_added: list[str] = Field(default_factory=list)
    books_replanned: list[str] = Field(default_factory=list)
    books_unchanged: int = 0
    pages_added: int = 0
    report: list[ReportEntry] = Field(default_factory=list)


def _safe_name(name: str) -> str | None:
    """Why a directory entry name cannot be used (non-UTF-8), else None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"name {name.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8"
    return None


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


class _Scanner:
    def __init__(self, images_root: Path, allow_list_root: Path, filters: FilterSettings,
                 checked_books: frozenset[str] = frozenset()):
        self.images_root = str(images_root)
        self.allow_root = str(allow_list_root)
        self.images_real = os.path.realpath(self.images_root)
        self.allow_real = os.path.realpath(self.allow_root)
        self.filters = filters
        # Books planned before: their images were checked then (a re-scan stays one listdir a book).
        self.checked_books = checked_books
        self.result = ScanResult()

    def report(self, path: str, reason: str) -> None:
        self.result.report.append(ReportEntry(path=_printable(path), reason=reason))

    def _dirs(self, path: str, what: str, root_real: str) -> Iterator[os.DirEntry[str]]:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            self.report(path, f"cannot list {what} folder: {exc.strerror or exc}")
            return
        for entry in entries:
            if _hidden(entry.name):
                continue
            bad = _safe_name(entry.name)
            if bad:
                self.report(entry.path, f"{what} {bad}")
                continue
            if entry.is_symlink() and not _inside(entry.path, root_real):
                self.report(entry.path, f"symlink escapes the root {root_real}")
                continue
            if entry.is_dir():
                yield entry
            elif what != "year":
                self.report(entry.path, f"unexpected file where a {what} folder belongs")

    def scan(self) -> ScanResult:
        for root, what in ((self.allow_root, "allow_list_root"), (self.images_root, "images_root")):
            if not os.path.isdir(root):
                raise CorpusRootMissing(f"paths.{what} {_printable(root)} does not exist or is not a folder")
        for state in self._dirs(self.allow_root, "state", self.allow_real):
            if reason := check_name_part(state.name, "state"):
                self.report(state.path, reason)
                continue
            if self.filters.states and state.name not in self.filters.states:
                continue
            for school in self._dirs(state.path, "school", self.allow_real):
                if reason := check_name_part(school.name, "school"):
                    self.report(school.path, reason)
                    continue
                if self.filters.schools and school.name not in self.filters.schools:
                    continue
                for year in self._dirs(school.path, "year", self.allow_real):
                    if not (year.name.isascii() and year.name.isdigit()):
                        self.report(year.path, f"year folder {year.name!r} is not a number")
                        continue
                    book = BookKey(state.name, school.name, int(year.name))
                    if not self.filters.admits(book.state, book.school, book.year):
                        continue
                    self._scan_book(book, year.path)
        return self.result

    def _images(self, book: BookKey) -> dict[int, str]:
        folder = os.path.join(self.images_root, book.state, book.school, str(book.year))
        found: dict[int, str] = {}
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return found
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if not dot or "." + ext.lower() not in IMAGE_EXTENSIONS or not (stem.isascii() and stem.isdigit()):
                continue
            if not entry.is_file(follow_symlinks=False) and entry.is_symlink() \
                    and not _inside(entry.path, self.images_real):
                self.report(entry.path, f"image symlink escapes the root {self.images_real}")
                continue
            page = int(stem)
            # Prefer the canonical (unpadded) name when several files claim one page.
            if page not in found or stem == str(page):
                found[page] = entry.path
        return found

    def _scan_book(self, book: BookKey, folder: str) -> None:
        candidates: dict[int, list[os.DirEntry[str]]] = defaultdict(list)
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            self.report(folder, f"cannot list book folder: {exc.strerror or exc}")
            return
        for entry in entries:
            name = entry.name
            if _hidden(name):
                continue
            stem, dot, ext = name.rpartition(".")
            # Fast path for the million-page case: a plain file named <digits>.json.
            if dot and ext == "json" and stem.isdigit() and stem.isascii() and entry.is_file(follow_symlinks=False):
                candidates[int(stem)].append(entry)
                continue
            if bad := _safe_name(name):
                self.report(entry.path, bad)
            elif entry.is_dir():
                self.report(entry.path, "unexpected folder inside a book's allow-list")
            elif not dot or ext.lower() != "json":
                self.report(entry.path, "not a .json allow-list file")
            elif not (stem.isascii() and stem.isdigit()):
                self.report(entry.path, f"page name {stem!r} is not a number")
            elif entry.is_symlink() and not _inside(entry.path, self.allow_real):
                self.report(entry.path, f"symlink escapes the root {self.allow_real}")
            else:
                candidates[int(stem)].append(entry)

        images = self._images(book)
        pages: dict[int, str] = {}
        for page, found in candidates.items():
            if len(found) > 1:
                found.sort(key=lambda e: e.name)
                names = ", ".join(e.name for e in found)
                canonical = [e for e in found if e.name.rpartition(".")[0] == str(page)]
                if not canonical:
                    for e in found:
                        self.report(e.path, f"duplicate page {page} ({names}); rename one to {page}.json")
                    continue
                for e in found:
                    if e is not canonical[0]:
                        self.report(e.path, f"duplicate page {page} ({names}); {canonical[0].name} is used")
                found = canonical
            entry = found[0]
            if reason := _allow_list_problem(entry):
                self.report(entry.path, reason)
                continue
            if page not in images:
                self.report(entry.path, f"allow-listed page {page} of {book} has no image in the images root")
                continue
            if str(book) not in self.checked_books and (reason := image_problem(images[page])):
                self.report(images[page], reason)
                continue
            pages[page] = entry.path

        ordered = sorted(pages)
        # chain_remaining: pages after this one in its chain, so the longest chains are scheduled first.
        remaining: dict[int, int] = {}
        run = 0
        for page in reversed(ordered):
            run = run + 1 if (page + 1) in remaining else 0
            remaining[page] = run
        book_key = str(book)
        for page in ordered:
            upstream = f"{book_key}:{page - 1}" if (page - 1) in pages else None
            self.result.nodes.append(
                (f"{book_key}:{page}", book_key, book.state, book.school, book.year, page, images[page],
                 pages[page], upstream, remaining[page])
            )


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def image_problem(path: str) -> str | None:
    """Why an image cannot be OCR'd, found cheaply: empty, unreadable, or a header PIL cannot size."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "image file is empty (0 bytes)"
        with Image.open(path) as image:  # reads the header only; pixels are decoded at inference
            width, height = image.size
    except OSError as exc:
        if isinstance(exc, UnidentifiedImageError):
            return "image is not a readable image file (unknown or damaged header)"
        return f"cannot read image: {exc.strerror or exc}"
    except Exception as exc:  # PIL raises others (ValueError, SyntaxError) on damaged headers
        return f"image header cannot be decoded: {type(exc).__name__}: {exc}"
    if width < 1 or height < 1:
        return f"image has no pixels ({width}×{height})"
    return None


def _allow_list_problem(entry: os.DirEntry[str]) -> str | None:
    """Why an allow-list file cannot be used; empty files are a valid 'no labels' entry."""
    try:
        if entry.stat().st_size == 0:
            return None
        with open(entry.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return f"cannot read allow-list file: {exc.strerror or exc}"
    if not data.strip():
        return None
    try:
        json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"allow-list file is not valid JSON: {exc}"
    return None


def scan_corpus(
    images_root: Path, allow_list_root: Path, filters: FilterSettings | None = None,
    checked_books: frozenset[str] = frozenset(),
) -> ScanResult:
    """Walk the allow-list tree once and return nodes (with deps) plus the bad-entry report.

    Images are checked except in `checked_books` (books planned before, checked then).
    """
    return _Scanner(images_root, allow_list_root, filters or FilterSettings(), checked_books).scan()


def build_plan(
    store: RecordStore, images_root: Path, allow_list_root: Path, filters: FilterSettings | None = None
) -> PlanResult:
    """Scan the corpus and add what is new to the store; never touch a started book's records.

    New books are added. An unstarted book whose allow-list changed is re-planned (nothing ran yet).
    A started book whose allow-list changed is reported, not applied.
    """
    existing = store.planned_pages_by_book()
    scan = scan_corpus(images_root, allow_list_root, filters, checked_books=frozenset(existing))
    plan_run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    report = list(scan.report)
    to_add: list[PlannedRecord] = []
    added, replanned, unchanged = [], [], 0
    for book, nodes in scan.books().items():
        pages = {n[_PAGE] for n in nodes}
        if book not in existing:
            added.append(book)
            to_add.extend(nodes)
            continue
        planned, started = existing[book]
        if planned == pages:
            unchanged += 1
        elif not started:
            replanned.append(book)
            to_add.extend(nodes)
        else:
            new, gone = sorted(pages - planned), sorted(planned - pages)
            report.append(
                ReportEntry(
                    path=str(Path(allow_list_root, *book.split(":"))),
                    reason=f"allow-list of started book {book} changed (added pages {new}, removed {gone}); "
                    "not applied — the plan of a started book is immutable",
                )
            )
    store.add_planned(to_add, replace_books=replanned)
    store.add_plan_report(plan_run, [(e.path, e.reason) for e in report])
    return PlanResult(
        plan_run=plan_run, pages_found=len(scan.nodes), books_found=len(scan.books()),
        books_added=added, books_replanned=replanned, books_unchanged=unchanged,
        pages_added=len(to_add), report=report,
    )


def export_plan(store: RecordStore, path: Path) -> int:
    """Write the `{"nodes": {...}, "deps": {...}}` JSON atomically; returns the node count."""
    from ocr_assets.outputs import atomic_write_text

    plan = store.export_plan()
    atomic_write_text(path, json.dumps(plan, indent=2, sort_keys=True))
    return len(plan["nodes"])
