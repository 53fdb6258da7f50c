"""The provenance record every published number carries: commit, dirty flag, torch, threads, load average."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

from gloria import provenance


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def test_commit_and_dirty_flag(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    assert provenance.git_commit(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "untracked.txt").write_text("x")  # untracked files do not make the tree dirty
    assert provenance.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert provenance.git_commit(tmp_path) == {"commit": head, "dirty": True}
    outside = tmp_path / "not_a_repo"
    outside.mkdir()
    (outside / ".git").write_text("gitdir: /nonexistent\n")  # a broken repository reads as no commit
    assert provenance.git_commit(outside) == {"commit": None, "dirty": None}


def test_record_and_atomic_write(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        meta = provenance.start(1, root=tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert meta["torch"] == torch.__version__ and meta["torch_threads"] == 1
    assert len(meta["load_average_start"]) == 3
    assert meta["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(meta["cpu_model"], str) and meta["cpu_model"]
    out = provenance.write(tmp_path / "sub" / "r.json", {"value": 2}, meta)
    data = json.loads(out.read_text())
    assert data["value"] == 2 and data["meta"]["torch_threads"] == 1
    assert len(data["meta"]["load_average_end"]) == 3 and data["meta"]["elapsed_s"] >= 0
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temporary file left


def test_spread() -> None:
    assert provenance.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    assert provenance.spread([4.0, 1.0, 2.0, 3.0])["median"] == 2.5


def test_mean_sd_is_the_sample_mean_and_standard_deviation() -> None:
    import math
    import statistics

    from gloria.provenance import mean_sd

    values = [0.41, 0.375, 0.52, 0.29]
    mean, sd = mean_sd(values)
    assert math.isclose(mean, statistics.mean(values)) and math.isclose(sd, statistics.stdev(values))
    assert mean_sd([0.7]) == (0.7, 0.0)
    nan, zero = mean_sd([])
    assert math.isnan(nan) and zero == 0.0
