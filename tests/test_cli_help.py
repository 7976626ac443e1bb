"""Every command's ``--help``: a one-line description first, examples in the epilog that name
the command and parse with its own parser, and no reStructuredText double backticks anywhere
in the help text (descriptions, epilogs, argument and subcommand help)."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from bench.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


ROOT = build_parser()
PARSERS = dict(_parsers(ROOT))
COMMANDS = [p for p in PARSERS if p]


def _examples(epilog: str) -> list[str]:
    """The command lines of an epilog: lines starting with "groundbench ", a trailing
    backslash joining the next line, an explanation after two or more spaces or a pipe cut."""
    lines, joined = [], ""
    for raw in epilog.splitlines():
        text = raw.strip()
        if joined:
            joined += " " + text
        elif text.startswith("groundbench "):
            joined = text
        else:
            continue
        if joined.endswith("\\"):
            joined = joined[:-1].rstrip()
            continue
        lines.append(re.split(r"\s{2,}|\s\|\s", joined)[0])
        joined = ""
    return lines


def test_every_command_is_walked():
    top = {p[0] for p in COMMANDS}
    assert {"run", "score", "merge", "leaderboard", "report", "methods", "metrics", "data", "perf"} <= top
    assert {("data", "list"), ("data", "fetch"), ("data", "verify")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_has_a_one_line_description_and_examples_of_the_command(path):
    parser = PARSERS[path]
    assert parser.description and parser.description.strip(), f"groundbench {' '.join(path)}: no description"
    first = parser.description.strip().splitlines()[0]
    assert first.endswith(".") and len(first) <= 100, f"first line is not a one-line summary: {first!r}"
    assert parser.formatter_class is argparse.RawDescriptionHelpFormatter  # the examples keep their lines
    assert parser.epilog and "Example" in parser.epilog
    command = "groundbench " + " ".join(path)
    examples = _examples(parser.epilog)
    assert any(e == command or e.startswith(command + " ") for e in examples), (
        f"no example line starts with {command!r}: {parser.epilog}"
    )


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "groundbench")
def test_examples_parse_with_the_parser(path):
    for line in _examples(PARSERS[path].epilog or ""):
        argv = shlex.split(line)[1:]
        if "--help" in argv:
            continue
        args = ROOT.parse_args(argv)  # an unknown option or a missing argument exits: a failure
        assert getattr(args, "func", None) is not None, line


@pytest.mark.parametrize("path", [()] + COMMANDS, ids=lambda p: " ".join(p) or "groundbench")
def test_no_restructuredtext_backticks_in_help(path):
    parser = PARSERS[path]
    texts = [parser.description or "", parser.epilog or "", parser.format_help()]
    for action in parser._actions:
        texts.append(action.help or "")
        if isinstance(action, argparse._SubParsersAction):
            texts += [choice.help or "" for choice in action._choices_actions]
    for text in texts:
        assert "``" not in text, f"groundbench {' '.join(path)}: reStructuredText backticks in {text!r}"


def test_quiet_is_offered_by_run_score_and_merge():
    for name in ("run", "score", "merge"):
        assert "--quiet" in PARSERS[(name,)].format_help(), name
