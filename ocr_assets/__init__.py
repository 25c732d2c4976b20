"""ocr_assets: OCR scanned historical course catalogs into validated JSON with Dagster."""

__version__ = "0.1.0"
