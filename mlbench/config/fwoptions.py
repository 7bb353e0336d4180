"""The options each framework's worker accepts (`framework_settings.<fw>.options`), with types.

The parent cannot import the workers' frameworks, so each framework's entry of the framework
table (mlbench/config/catalog.py REGISTRY, `options`) says what its worker takes, and the config is
checked against it here: a typo (`compiel: true`) or a wrong type is a config-time error naming the
key, not a failed cell an hour into a sweep. Keep in step with the OPTIONS of each worker
(tests/test_bad_input.py checks that every option here is one the worker's source names).
Must not import any ML framework.
"""
from __future__ import annotations

from . import catalog

COMPILE_MODES = catalog.COMPILE_MODES

# framework -> {option: catalog.Option}, read from the framework table; None: not checked (the
# test-only dummy worker takes free-form fault knobs)
TABLE: dict[str, dict[str, catalog.Option] | None] = {
    name: fw.options for name, fw in catalog.REGISTRY.items()}


def problems(framework: str, options: dict) -> list[tuple[str, str]]:
    """[(option, what is wrong)] for `options` given to `framework`; empty when all is well."""
    allowed = TABLE.get(framework)
    if allowed is None:
        return []
    out = []
    for key, value in options.items():
        if key not in allowed:
            import difflib
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(allowed) if allowed else "none (it takes no options)"
            out.append((key, f"unknown {framework} option {key!r}{hint}; allowed: {known}"))
        elif not allowed[key].check(value):
            out.append((key, f"{framework} option {key!r} must be {allowed[key].allowed}"))
    return out
