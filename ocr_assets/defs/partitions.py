"""Partitions: one dynamic partition per book (`state:school:year`); pages are records, not partitions."""

import dagster as dg

# Added by corpus_plan and book_discovery_sensor from the plan; never removed automatically.
books = dg.DynamicPartitionsDefinition(name="books")


def add_missing_books(instance: dg.DagsterInstance, keys: list[str]) -> list[str]:
    """Add the books the instance does not know yet (idempotent); returns the ones added."""
    known = set(instance.get_dynamic_partitions(books.name))
    new = sorted(set(keys) - known)
    if new:
        instance.add_dynamic_partitions(books.name, new)
    return new
