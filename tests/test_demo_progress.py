"""Speed and progress of the demo: threads on a busy machine, the whole demo's progress line, a stage's
time left from the recent pace."""

from __future__ import annotations

import pytest

from gloria.cli.demo import choose_threads
from gloria.demo.pipeline import STAGE_SHARE, progress_line
from gloria.demo.stages import STAGES
from gloria.training.callbacks import ETA_WINDOW, seconds_per_step


def test_a_busy_machine_gets_one_thread_and_is_told_so() -> None:
    assert choose_threads(None, 0.3, 2) == (None, None)  # quiet: torch's default
    threads, why = choose_threads(None, 1.8, 2)
    assert threads == 1 and why is not None and "load average 1.8 on 2 cores" in why
    assert choose_threads(4, 9.0, 2) == (4, None)  # the user's choice wins


def test_the_demo_progress_line_covers_every_stage() -> None:
    assert set(STAGE_SHARE) == {name for name, _, _ in STAGES}
    line = progress_line(["synth", "pretrain"], 110.0)
    done = (STAGE_SHARE["synth"] + STAGE_SHARE["pretrain"]) / sum(STAGE_SHARE.values())
    assert f"{100 * done:.0f}%" in line and f"about {110.0 / done * (1 - done):.0f} s left" in line
    assert "left" not in progress_line([name for name, _, _ in STAGES], 600.0)


def test_time_left_follows_the_recent_pace_not_the_first_steps() -> None:
    # 10 fast steps (1 s), then steps of 3 s: the pace over the last window is 3 s per step
    times, t = [], 0.0
    for step in range(1, 200):
        t += 1.0 if step <= 10 else 3.0
        times.append((t, step))
    marks = times[-ETA_WINDOW:]
    now, step = times[-1]
    assert seconds_per_step(marks, now, step, 0.0, 0) == pytest.approx(3.0)
    overall = now / step  # what the average since the start says
    assert overall < 3.0 - 0.05
    # before two marks exist: the average since the start; nothing done yet: unknown
    assert seconds_per_step([], 10.0, 5, 0.0, 0) == 2.0
    assert seconds_per_step([], 10.0, 0, 0.0, 0) is None
