"""Dagster objects only (resources, partitions, assets, checks, jobs, sensors); `ocr_assets.definitions` assembles them."""
