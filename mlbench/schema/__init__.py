"""Package data: results.schema.json, the JSON Schema of results.json (generated from the
pydantic models of mlbench.results.summary by `python -m mlbench.results.summary`; `mlbench schema`
prints it). Imports nothing."""
