"""Package data: results.schema.json, the JSON Schema of results.json (generated from the
pydantic models of mlbench.summary by `python -m mlbench.summary`; `mlbench schema` prints it).
Imports nothing."""
