"""Gemini engines: Batch API (`batch` + `calls`, orchestrated by `runner`), real-time and flex tier
(`realtime`) and the client built from settings (`client`).

No Dagster here; `defs/` and the CLI call these domain functions. Import from the submodules: this
package imports nothing itself, so a command that only reads the store never loads the SDK.
"""
