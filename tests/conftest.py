"""Shared fixtures: the known-answer vectors of shared/SPEC.md."""

import json
import os
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_CANDIDATES = [
    Path(os.environ.get("HOMESTREAM_VECTORS", "")),
    _HERE.parent.parent / "shared" / "vectors.json",
    _HERE / "vectors.json",
]


def _load_vectors():
    for path in _CANDIDATES:
        if path.name and path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError("vectors.json not found (expected ../shared/vectors.json or tests/vectors.json)")


@pytest.fixture(scope="session")
def vectors():
    data = _load_vectors()
    return {key.split(" ")[0]: value for key, value in data.items()}
