"""The command line: every listed command registers and answers --help; bad use exits non-zero."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gloria.cli.main import COMMANDS, build_parser, main


def test_every_command_registers() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"gloria {command}" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_user_errors_are_logged_not_raised(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["train", "-c", str(missing), "--train"]) != 0
    assert "nope.yaml" in caplog.text


def test_python_dash_m_gloria() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gloria", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out and "zero-shot" in out


def test_help_imports_neither_torch_nor_the_data_stack() -> None:
    """``gloria --help`` builds every command's parser; the heavy imports wait for a command's ``run``
    (start-up time: bench/bench_cli.py)."""
    heavy = ("torch", "numpy", "pandas", "lightning", "transformers")
    code = (
        "import sys\nfrom gloria.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        f"    pass\nprint('IMPORTED', [m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "usage: gloria" in out
    assert out.splitlines()[-1] == "IMPORTED []", out.splitlines()[-1]
