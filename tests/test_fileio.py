"""Atomic writes: the target holds the old or the new content, never half of either."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_components.fileio import atomic_path, write_json


def test_write_json_creates_parents_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "result.json"
    write_json(target, {"b": 1, "a": Path("x")})
    assert json.loads(target.read_text()) == {"a": "x", "b": 1}
    assert target.read_text().index('"a"') < target.read_text().index('"b"')  # sorted keys
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_a_failed_write_keeps_the_previous_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
