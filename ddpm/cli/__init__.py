"""The ``ddpm`` command line: a registry of command classes (optuna's CLI style).

Each command is a class with ``add_arguments`` and ``take_action``; its docstring is its help text.
Command modules in this package register themselves with ``@register_command``; ``main`` imports
every module here, so adding a command is one new file.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
from typing import Optional

from ddpm.errors import DDPMError

COMMANDS: dict[str, type["Command"]] = {}

# `--omega -1,0,0.5` must read as a value, not an option: argparse only takes plain negative numbers
# as values, so every subcommand's matcher is widened to comma-separated lists of numbers.
_NEGATIVE_LIST = re.compile(r"^-\d*\.?\d+([eE][-+]?\d+)?(,[-+]?\d*\.?\d*([eE][-+]?\d+)?)*$")


def register_command(name: str):
    def deco(cls: type["Command"]) -> type["Command"]:
        cls.name = name
        COMMANDS[name] = cls
        return cls
    return deco


class Command:
    name = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def take_action(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def _load_commands() -> None:
    for mod in pkgutil.iter_modules(__path__):  # type: ignore[name-defined]
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(prog="ddpm", description="Class-conditional DDPM training, sampling, "
                                     "evaluation and Optuna sweeps tracked in W&B.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in sorted(COMMANDS):
        cls = COMMANDS[name]
        doc = (cls.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc.splitlines()[0] if doc else None, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p._negative_number_matcher = _NEGATIVE_LIST  # type: ignore[attr-defined]
        cmd = cls()
        cmd.add_arguments(p)
        p.set_defaults(_cmd=cmd)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._cmd.take_action(args) or 0)
    except DDPMError as e:
        msg = str(e).replace("\n", " ")
        print(f"ddpm {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"ddpm {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout.flush()


def entry() -> None:  # console_scripts entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
