"""Append a dated section to bench/RESULTS.md: date, machine, command, figures."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def record(title: str, figures: dict[str, object], *, notes: str = "") -> None:
    """Print the figures and append them to RESULTS.md."""
    lines = [
        f"## {title}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- command: `{' '.join(['python'] + [Path(sys.argv[0]).as_posix()] + sys.argv[1:])}`",
    ]
    lines += [f"- {name}: {value}" for name, value in figures.items()]
    if notes:
        lines.append(f"- notes: {notes}")
    text = "\n".join(lines) + "\n\n"
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is appended by a script in `bench/`.\n\n")
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(text)
