"""The command line's conventions: ``ddpm --version``, whole-sentence command summaries in ``ddpm --help``."""
from __future__ import annotations

import argparse
import re

import pytest

from ddpm.cli import build_parser, command_summary, main, package_version


def _summaries() -> dict[str, str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help for a in sub._choices_actions}


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"ddpm {package_version()}"
    assert re.fullmatch(r"ddpm \d+\.\d+(\.\d+)?\S*", out), out


def test_every_help_summary_is_a_whole_sentence():
    summaries = _summaries()
    assert {"train", "sweep", "report", "eval"} <= set(summaries)
    for name, text in summaries.items():
        assert text and text.endswith("."), (name, text)
        assert not text.rstrip(".").rstrip().endswith(("e.g", ",")), (name, text)
        assert not text.endswith("e.g."), (name, text)
        assert "\n" not in text, (name, text)


@pytest.mark.parametrize("doc, want", [
    ("Start or resume a study, e.g.\n    ddpm sweep x.yaml", "Start or resume a study."),
    ("Show every trial: state, params.", "Show every trial: state, params."),
    ("Train a model\nfrom a file.\n\nMore text.", "Train a model from a file."),
    ("List the studies", "List the studies."),
    ("Run it, for example:\n  ddpm x", "Run it."),
])
def test_command_summary(doc, want):
    assert command_summary(doc) == want
