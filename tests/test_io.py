"""Atomic writes: complete under the final name, or nothing."""

import json

import pytest

from jacscope._io import atomic_path, read_json, write_json_atomic


def test_write_json_atomic_round_trip(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "a.json", {"x": [1, 2.5], "y": "z"})
    assert read_json(path) == {"x": [1, 2.5], "y": "z"}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_failed_write_leaves_old_content_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("interrupted")
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    with pytest.raises(ValueError):
        write_json_atomic(path, {"bad": float("nan")})
    assert read_json(path) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
