"""The results stage: the typed attempt record, the append-only store, and the tables and summaries
derived from it (aggregate, frames, summary)."""
