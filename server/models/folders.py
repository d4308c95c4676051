"""One stored model is one folder: npz files of plain arrays and a `model.json`, written
under a temporary name and renamed into place, so that an id names a complete model or
nothing. Ids are 32 lower-case hex digits, checked before they touch a path."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import uuid

import numpy as np

_ID = re.compile(r"[0-9a-f]{32}")


def valid_id(model_id: str) -> bool:
    return bool(_ID.fullmatch(model_id or ""))


def store(root: pathlib.Path, arrays: dict[str, dict[str, np.ndarray]], description: dict) -> str:
    """Write `arrays` (file name -> its arrays) and `description` as a new model under
    `root`; return its id."""
    root.mkdir(parents=True, exist_ok=True)
    model_id = uuid.uuid4().hex
    staging = root / f".{model_id}.partial"
    staging.mkdir()
    try:
        for name, contents in arrays.items():
            with open(staging / name, "wb") as f:
                np.savez(f, **{key: np.asarray(value) for key, value in contents.items()})
        (staging / "model.json").write_text(json.dumps(description, indent=1))
        os.rename(staging, root / model_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model_id
