"""Entry point of the ``gloria`` command: builds the sub-command parser from one module per command.

Each command module defines ``register(subparsers) -> None`` which adds its parser and sets
``func=run`` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

# command name -> module under gloria.cli (each module registers exactly that command)
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "prepare": "prepare",
    "validate-data": "validate_data",
    "train": "train",
    "zero-shot": "zero_shot",
    "zero-shot-labels": "zero_shot_labels",
    "retrieve": "retrieve",
    "embed": "embed",
    "attend": "attend",
    "ground": "ground",
    "benchmark": "benchmark",
    "convert": "convert",
    "export": "export",
    "demo": "demo",
}

log = logging.getLogger("gloria")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gloria",
        description="GLoRIA for chest X-rays: data, training, zero-shot, retrieval, grounding.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS.values():
        module = importlib.import_module(f"gloria.cli.{module_name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_reporting_errors(args.func, args, debug=args.debug)


def error_message(err: BaseException) -> str:
    """One line for the user: the message (which names the file, row, key or value), with the kind of error
    where the message alone would not say it."""
    text = str(err).strip() or repr(err)
    if "Original Traceback" in text:  # raised in a DataLoader worker: keep the original error's last line
        text = text.splitlines()[-1].strip()
    if isinstance(err, ValueError | FileNotFoundError | RuntimeError):
        return text
    return f"{type(err).__name__}: {text}"


def run_reporting_errors(
    func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, *, debug: bool
) -> int:
    """Run a command; an error is logged as one line and gives exit code 1 (``--debug``: the traceback).
    Ctrl-C gives 130."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        log.error("interrupted")
        return 130
    except Exception as err:
        if debug:
            raise
        log.error("%s", error_message(err))
        log.info("(run with --debug to see the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
