"""Gemini engines: Batch API (`batch` + `calls`, orchestrated by `runner`), real-time and flex tier
(`realtime`), the client built from settings (`client`), and the CLI's SDK helper process (`helper`).

No Dagster here; `defs/` and the CLI call these domain functions. Import from the submodules: this
package imports nothing itself, so the SDK helper can load `calls` without the store or the runner.
"""
