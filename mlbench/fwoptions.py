"""The options each framework's worker accepts (`framework_settings.<fw>.options`), with types.

The parent cannot import the workers' frameworks, so the table lives here and the config is
checked against it: a typo (`compiel: true`) or a wrong type is a config-time error naming the
key, not a failed cell an hour into a sweep. Keep in step with the OPTIONS of each worker
(tests/test_bad_input.py checks that every option here is one the worker's source names).
Must not import any ML framework.
"""
from __future__ import annotations

from typing import Any

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# framework -> {option: (description of the allowed values, check)}; None: not checked (the
# test-only dummy worker takes free-form fault knobs)
TABLE: dict[str, dict[str, tuple[str, Any]] | None] = {
    "pytorch": {
        "compile": (f"true, false or one of {', '.join(COMPILE_MODES)}",
                    lambda v: isinstance(v, bool) or v in COMPILE_MODES),
        "channels_last": ("true or false", lambda v: isinstance(v, bool)),
    },
    "tensorflow": {"jit_compile": ("true or false", lambda v: isinstance(v, bool))},
    "jax": {"donate": ("true or false", lambda v: isinstance(v, bool))},
    "numpy": {},
    "keras-jax": {}, "keras-torch": {}, "keras-tensorflow": {},
    "dummy": None,
}


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
        elif not allowed[key][1](value):
            out.append((key, f"{framework} option {key!r} must be {allowed[key][0]}"))
    return out
