"""The model cache: a conversion that loses the race to another process keeps the winner's checkpoint."""

from __future__ import annotations

import pytest

from deployments.inference.model_store import _publish


def _checkpoint(path, text: str):
    path.mkdir()
    (path / "config.json").write_text(text)
    return path


def test_the_first_conversion_is_published(tmp_path):
    out = tmp_path / "model"
    _publish(_checkpoint(tmp_path / ".convert-a", "a"), out)
    assert (out / "config.json").read_text() == "a" and not (tmp_path / ".convert-a").exists()


def test_a_second_conversion_keeps_the_first_ones_checkpoint(tmp_path):
    """Two processes converting on a fresh cache (two replicas, two test sessions): the one that finishes second
    finds the directory taken and keeps it instead of failing."""
    out = _checkpoint(tmp_path / "model", "first")
    _publish(_checkpoint(tmp_path / ".convert-b", "second"), out)
    assert (out / "config.json").read_text() == "first"


def test_a_taken_directory_without_a_checkpoint_is_an_error(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stray.txt").write_text("not a checkpoint")
    with pytest.raises(OSError):
        _publish(_checkpoint(tmp_path / ".convert-c", "c"), out)
