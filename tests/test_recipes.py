"""The training recipes are the bundled model's record of how it was made: every option they give the project's
commands must be one those commands take (a renamed flag would leave a recipe that no longer runs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

RECIPES = sorted((Path(__file__).resolve().parents[1] / "ccstereo/train/recipes").glob("*.sh"))
COMMANDS = {"ccs-train": "ccstereo.train.cli", "ccs-synth": "ccstereo.synth.cli", "ccs-export": "ccstereo.export.cli"}


def _options_of(module: str) -> set[str]:
    import importlib

    command = typer.main.get_command(importlib.import_module(module).app)
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


def _calls(text: str) -> list[tuple[str, list[str]]]:
    """(command, its --options) for each call of a project command, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    joined = re.sub(r"\$\(printf -- '(--[\w-]+) %s ' [^)]*\)", r"\1", joined)  # one option per file
    calls = []
    for line in joined.splitlines():
        code = line.split("#", 1)[0]
        for name in COMMANDS:
            for match in re.finditer(rf"(?<![\w-]){name}\s+([^;&|]*)", code):
                text = match.group(1)
                for array in re.findall(r"\$\{(\w+)\[@\]\}", text):  # "${extra[@]}": each array of that name
                    text += " " + " ".join(_assigned(joined, array))
                words = shlex.split(text.replace('"', ""), posix=True)
                calls.append((name, [w.split("=", 1)[0] for w in words if w.startswith("--")]))
    return calls


def _assigned(text: str, array: str) -> list[str]:
    """The words of every ``array=(...)`` assignment of that name (a case statement may give one per branch)."""
    return [m.group(1) for m in re.finditer(rf"(?<!\w){array}=\(([^)]*)\)", text)]


def _assert_known_options(file: str, calls: list[tuple[str, list[str]]]) -> None:
    for name, options in calls:
        unknown = sorted(set(options) - _options_of(COMMANDS[name]))
        assert not unknown, f"{file}: {name} has no {unknown}"


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_every_option_a_recipe_gives_exists(recipe):
    calls = _calls(recipe.read_text())
    assert {name for name, _ in calls} >= {"ccs-train", "ccs-export"}, calls
    _assert_known_options(recipe.name, calls)


PARTS = sorted((Path(__file__).resolve().parents[1] / "ccstereo/train/recipes").glob("*.bash"))


@pytest.mark.parametrize("part", PARTS, ids=[p.name for p in PARTS])
def test_every_option_a_sourced_recipe_part_gives_exists(part):
    calls = _calls(part.read_text())
    assert calls, f"{part.name} calls no project command"
    _assert_known_options(part.name, calls)
    users = [r.name for r in RECIPES if part.name in r.read_text()]
    assert users, f"no recipe sources {part.name}"
