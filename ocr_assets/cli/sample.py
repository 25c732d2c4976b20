"""CLI: write a synthetic course-catalog corpus (`sample-corpus`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocr_assets.cli.common import console, err_console, table


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    app.command("sample-corpus", rich_help_panel="Tools")(sample_corpus)


def sample_corpus(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write images/, allow_list/ and ground_truth/ into.")],
    books: Annotated[int, typer.Option(min=1, help="How many books (distinct state/school/year).")] = 8,
    pages: Annotated[int, typer.Option(min=1, help="Pages per book.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same bytes.")] = 0,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="A state to draw books from (repeatable; default CA NY MA IL).")
    ] = None,
    image_format: Annotated[str, typer.Option("--format", help="Image format: jpg, png or tif.")] = "jpg",
    blank_images: Annotated[
        bool, typer.Option("--blank-images", help="Write a tiny placeholder image per page instead of rendering (fast).")
    ] = False,
    no_degrade: Annotated[bool, typer.Option("--no-degrade", help="Clean white pages: no skew, texture or yellowing.")] = False,
    page_width: Annotated[
        int | None, typer.Option(min=300, help="Page width in pixels (height is 1.4 × width; default 1000).")
    ] = None,
    quality: Annotated[int | None, typer.Option(min=1, max=95, help="JPEG quality (default 60).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes rendering books in parallel.")] = 1,
) -> None:
    """Render a synthetic corpus of historical course-catalog pages, with allow-lists and ground truth."""
    # Imported here: the renderer is a large module and every other command would pay for it.
    from ocr_assets.sample_corpus import DEFAULT_PAGE_SIZE, JPEG_QUALITY, generate_corpus

    page_width = page_width or DEFAULT_PAGE_SIZE[0]
    try:
        with console.status("rendering catalog pages…"):
            summary = generate_corpus(
                out,
                books=books,
                pages=pages,
                seed=seed,
                states=state or None,
                image_format=image_format,
                degrade=not no_degrade,
                images="blank" if blank_images else "render",
                page_size=(page_width, round(page_width * 1.4)),
                jpeg_quality=quality or JPEG_QUALITY,
                workers=workers,
            )
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    rows = [
        ("books", len(summary.books)),
        ("pages", f"{summary.pages} ({summary.pages_per_book} per book)"),
        ("allow-listed pages", summary.allow_listed),
        ("courses (all pages)", summary.courses),
        ("courses (allow-listed pages)", summary.allow_listed_courses),
        ("images", summary.images_root),
        ("allow-list", summary.allow_list_root),
        ("ground truth", summary.ground_truth_root),
    ]
    console.print(table(f"sample corpus (seed {seed}, {summary.images} images)", ["", "value"], rows))
