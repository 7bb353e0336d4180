"""The user's own data (`models[].data`, an .npz), checked at config time.

Owns: the file is a regular, readable .npz of plain arrays (no pickles, and the message never
suggests allowing them); it holds x_train, y_train, x_eval, y_eval; x and y agree in length;
no split is empty; a sample has the model's input shape; labels are integers in range. A dtype
other than the model's (float64 features, say) is not an error: the workers cast it, and the
returned note says so, so "fp32" is never measured in fp64 unnoticed.
Uses numpy only (no ML framework).
"""
from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from functools import lru_cache

KEYS = ("x_train", "y_train", "x_eval", "y_eval")


@dataclass(frozen=True)
class DataInfo:
    train_rows: int
    eval_rows: int
    note: str | None


def check(path: str, spec: dict) -> DataInfo:
    """ValueError (one sentence) if `path` cannot feed a model of `spec`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"data file {path!r} not found") from None
    except OSError as exc:
        raise ValueError(f"data file {path!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"data file {path!r} is not a regular file")
    import json
    return _check(path, st.st_size, st.st_mtime_ns, json.dumps(spec, sort_keys=True))


@lru_cache(maxsize=64)
def _check(path: str, size: int, mtime_ns: int, spec_json: str) -> DataInfo:
    import json

    import numpy as np

    from . import catalog
    spec = json.loads(spec_json)
    s = catalog.specs()
    shape, dtype = s.input_shape(spec)
    classes = s.num_classes(spec)
    bad = f"data file {path!r}"
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{bad} is not an .npz archive of arrays (write one with "
                         "numpy.savez(path, x_train=..., y_train=..., x_eval=..., "
                         "y_eval=...))") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{bad} holds a single array; expected an .npz with "
                         f"{', '.join(KEYS)}")
    with npz:
        missing = [k for k in KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"{bad} lacks {', '.join(missing)} (it must hold "
                             f"{', '.join(KEYS)})")
        arrays = {}
        for k in KEYS:
            try:
                arrays[k] = npz[k]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError):
                raise ValueError(f"{bad}: {k} is not a plain numeric array (object arrays and "
                                 "damaged members are not read)") from None
    notes = []
    for split in ("train", "eval"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 0 or y.ndim == 0:
            raise ValueError(f"{bad}: x_{split} and y_{split} must be arrays with one row per "
                             "sample, not scalars")
        if len(x) == 0:
            raise ValueError(f"{bad}: the {split} split is empty (x_{split} has no rows)")
        if len(x) != len(y):
            raise ValueError(f"{bad}: y_{split} has {len(y)} rows but x_{split} has {len(x)}; "
                             "they must be equal")
        if tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"{bad}: a sample of x_{split} has shape {tuple(x.shape[1:])}; "
                             f"this model takes {tuple(shape)}")
        if x.dtype.kind not in "iuf":
            raise ValueError(f"{bad}: x_{split} ({x.dtype}) must be numeric")
        if y.dtype.kind not in "iu":
            raise ValueError(f"{bad}: y_{split} ({y.dtype}) must hold integer class labels")
        if dtype.startswith("int") and x.dtype.kind not in "iu":
            raise ValueError(f"{bad}: x_{split} must hold integer token ids, not {x.dtype}")
        want_y = (len(x), *((shape[0],) if dtype.startswith("int") else ()))
        if tuple(y.shape) != want_y:
            raise ValueError(f"{bad}: y_{split} has shape {tuple(y.shape)}; this model takes "
                             f"{want_y}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise ValueError(f"{bad}: y_{split} holds labels {lo}..{hi}; labels must be "
                             f"0..{classes - 1} (the model has {classes} classes)")
        if dtype.startswith("int"):
            if int(x.min()) < 0 or int(x.max()) >= classes:
                raise ValueError(f"{bad}: x_{split} holds token ids {int(x.min())}.."
                                 f"{int(x.max())}; ids must be 0..{classes - 1}")
        if x.dtype != np.dtype(dtype):
            notes.append(f"x_{split} {x.dtype} -> {dtype}")
        if y.dtype != np.int32:
            notes.append(f"y_{split} {y.dtype} -> int32")
    note = (f"data {path}: cast {', '.join(notes)} (the dtype every framework reads; the "
            "precision setting then applies as for synthetic data)") if notes else None
    return DataInfo(len(arrays["x_train"]), len(arrays["x_eval"]), note)
