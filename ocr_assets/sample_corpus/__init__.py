"""A synthetic corpus of historical course-catalog scans, with allow-lists and ground truth.

`generate_corpus` renders catalog pages (title page, front matter, course listings in one or
two columns, an index) with Pillow and writes the three trees the platform reads:

```
out/images/{state}/{school}/{year}/{page}.jpg           the page scans (every page)
out/allow_list/{state}/{school}/{year}/{page}.json      first-pass labels (some pages left out)
out/ground_truth/{state}/{school}/{year}/{page}.json    the truth as an `OcrPageResult`
```

The ground truth's text blocks are exactly the strings drawn (a paragraph's wrapped lines
joined by newlines), in reading order, with pixel boxes in the final (skewed) image. Courses
flow across pages the way a printed catalog's do: a page may open in the middle of a department
whose heading is on an earlier page, which is what the pipeline's page-to-page context is for.

Everything is deterministic for a seed: one `random.Random` per book, seeded from the seed and
the book key, and fixed encoder settings, so a run writes the same bytes every time (on the
same fonts) whatever the number of worker processes.

The package: `vocabulary` (the words), `typeset` (fonts and the column flow), `contents` (what a
book says), `book` (how it is laid out page by page), `render` (drawing and encoding) and `writer`
(`generate_corpus`).
"""

from ocr_assets.sample_corpus.render import JPEG_QUALITY
from ocr_assets.sample_corpus.writer import DEFAULT_PAGE_SIZE, DEFAULT_STATES, CorpusSummary, ImageMode, generate_corpus

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_STATES",
    "JPEG_QUALITY",
    "CorpusSummary",
    "ImageMode",
    "generate_corpus",
]
