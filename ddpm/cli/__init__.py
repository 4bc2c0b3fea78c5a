"""The ``ddpm`` command line: a registry of command classes (optuna's CLI style).

Each command is a class with ``add_arguments`` and ``take_action``; its docstring is its help text.
Command modules in this package register themselves with ``@register_command``; ``main`` imports
every module here, so adding a command is one new file. A two-word name (``eval train-classifier``)
is a command of its own, reached by its two words.

Process-wide settings of third-party libraries (Optuna's log level, matplotlib's backend) are made
here, in ``main``, never when a library module is imported.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import math
import os
import pkgutil
import re
import sys
from typing import Any, Callable, Optional

from ddpm.errors import ConfigError, DDPMError
from ddpm.registry import Registry

COMMANDS: Registry[type["Command"]] = Registry("command", stamp_name=True)

# `--omega -1,0,0.5` must read as a value, not an option: argparse only takes plain negative numbers
# as values, so every subcommand's matcher is widened to comma-separated lists of numbers.
_NEGATIVE_LIST = re.compile(r"^-\d*\.?\d+([eE][-+]?\d+)?(,[-+]?\d*\.?\d*([eE][-+]?\d+)?)*$")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``ddpm <cmd>: error: <what>`` (the usage text stays in ``--help``)."""

    def error(self, message: str):  # type: ignore[override]
        msg = message.replace("\n", " ")
        self.exit(2, f"{self.prog}: error: {msg} (see {self.prog} --help)\n")


def number(low: Optional[float] = None, high: Optional[float] = None, integer: bool = False,
           low_open: bool = False):
    """An argparse ``type=``: a finite number in [low, high] (``(low, high]`` with ``low_open``).

    Integers accept integral spellings such as ``1e3``; NaN, infinities and out-of-range values are a
    one-line error naming the flag (argparse adds it), the value and what is allowed."""
    kind = "an integer" if integer else "a number"
    bounds = []
    show = (lambda v: str(int(v))) if integer else (lambda v: f"{v:g}")
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {show(low)}")
    if high is not None:
        bounds.append(f"<= {show(high)}")
    allowed = f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}"

    def parse(text: str) -> float | int:
        try:
            value: float | int = int(text) if integer else float(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r}: expected {allowed}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: not a finite number; expected {allowed}")
        if integer:
            if not float(value).is_integer():
                raise argparse.ArgumentTypeError(f"{text!r}: expected {allowed}")
            value = int(value)
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {allowed}")
        return value

    parse.__name__ = kind
    return parse


# torch's allocation failures: CPU ("can't allocate memory"), CUDA (torch.OutOfMemoryError: "out of memory")
_OOM = ("can't allocate memory", "out of memory")


register_command = COMMANDS.register


class Command:
    name = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def take_action(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def _load_commands() -> None:
    for mod in pkgutil.iter_modules(__path__):  # type: ignore[name-defined]
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def _join_command(argv: list[str]) -> list[str]:
    """``eval train-classifier ...`` -> ``["eval train-classifier", ...]`` when that two-word command exists."""
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return [f"{argv[0]} {argv[1]}", *argv[2:]]
    return argv


def configure_libraries() -> None:
    """The CLI's process-wide library settings: Optuna logs errors only (ddpm prints its own per-trial
    lines), matplotlib draws off-screen (reports are PNG bytes; no display is needed)."""
    os.environ.setdefault("MPLBACKEND", "Agg")      # read when matplotlib is first imported
    try:
        import optuna
    except ImportError:  # train, sample, eval and bench run without it (the GPU machine has none)
        return
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _comma_list(text: str, flag: str, cast: Callable[[str], Any], expected: str, one: str) -> list[Any]:
    """``text`` split at commas and each piece cast, else a one-line ConfigError: ``expected`` names what
    the pieces should be, ``one`` what at least one of them is."""
    try:
        values = [cast(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated {expected}") from None
    if not values:
        raise ConfigError(f"{flag} {text!r}: give at least one {one}")
    return values


def parse_floats(text: str, flag: str) -> list[float]:
    """``--omega 0,0.5,2`` -> [0.0, 0.5, 2.0]: finite numbers, at least one, else a one-line ConfigError."""
    values = _comma_list(text, flag, float, "numbers, e.g. 0,0.5,2", "number")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ConfigError(f"{flag} {text!r}: {bad[0]} is not a finite number; give finite weights, e.g. 0,0.5,2")
    return values


def parse_ints(text: str, flag: str) -> list[int]:
    """``--labels 3,7`` -> [3, 7] (their range is the model's to check), else a one-line ConfigError."""
    return _comma_list(text, flag, int, "class indices", "class index")


def command_summary(doc: str) -> str:
    """The first sentence of a command's docstring, for ``ddpm --help``: its lines up to the first that ends
    with a full stop or a colon, without a trailing "e.g." (examples follow it), ending with a full stop."""
    lines: list[str] = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
        if line.rstrip().endswith((".", ":")):
            break
    text = re.sub(r"[,;:]?\s*(e\.g\.|for example)?[,:]?$", "", " ".join(lines)).rstrip(" .,;:")
    return f"{text}." if text else ""


def package_version() -> str:
    """The installed distribution's version (``ddpm-sweeps``), else ``ddpm.__version__`` (a source tree)."""
    from importlib import metadata

    try:
        return metadata.version("ddpm-sweeps")
    except metadata.PackageNotFoundError:
        from ddpm import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = _Parser(prog="ddpm", description="Class-conditional DDPM training, sampling, "
                                     "evaluation and Optuna sweeps tracked in W&B.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    parser.commands = {}  # type: ignore[attr-defined]
    for name in sorted(COMMANDS):
        cls = COMMANDS[name]
        doc = (cls.__doc__ or "").strip()
        p = sub.add_parser(name, help=command_summary(doc) or None, description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p._negative_number_matcher = _NEGATIVE_LIST  # type: ignore[attr-defined]
        parser.commands[name] = p  # type: ignore[attr-defined]
        cmd = cls()
        cmd.add_arguments(p)
        p.set_defaults(_cmd=cmd)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(_join_command(list(sys.argv[1:] if argv is None else argv)))
    if extra:  # reported by the command's parser: `ddpm train: error: unrecognized arguments: ...`
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")  # type: ignore[attr-defined]
    configure_libraries()
    try:
        return int(args._cmd.take_action(args) or 0)
    except DDPMError as e:
        msg = str(e).replace("\n", " ")
        print(f"ddpm {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"ddpm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ddpm trials x | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")
        return 141
    except OSError as e:  # a file where a folder is expected, no permission, disk full, ...
        print(f"ddpm {args.command}: error: {os_error_text(e)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:  # a model/batch/T the machine cannot hold; other errors stay loud
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not isinstance(e, MemoryError) and not any(w in text.lower() for w in _OOM):
            raise
        print(f"ddpm {args.command}: error: out of memory ({text[:200]}); lower model.num_feat, "
              f"train.batch_size, diffusion.T or --n", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()


def os_error_text(e: OSError) -> str:
    """``<path>: <strerror>`` (both paths of a rename) on one line, for any OSError."""
    reason = e.strerror or (errno.errorcode.get(e.errno, "") if e.errno else "") or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    text = f"{' -> '.join(paths)}: {reason}" if paths else reason
    return text.replace("\n", " ")


def entry() -> None:  # console_scripts entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
