"""Every command's --help shows an example; shell completion comes from click for `trainnet`."""

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from conftest import ROOT
from trainnet.cli import main

# Commands whose examples their modules' owners are still adding; strict=False, so that this
# passes now and an example added turns the entry into an XPASS: remove it then.
PENDING: dict[str, str] = {}


def commands(group: click.Group = main, path: tuple = ()):
    """(path, command) for the group and every command and subgroup below it."""
    yield path, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


def _cases():
    for path, command in commands():
        name = " ".join(path)
        marks = ([pytest.mark.xfail(strict=False, reason=f"example added by the owner of "
                                    f"cli/{PENDING[name]}")] if name in PENDING else [])
        yield pytest.param(path, id=name or "trainnet", marks=marks)


@pytest.mark.parametrize("path", list(_cases()))
def test_help_shows_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    example = result.output[result.output.index("Example"):].splitlines()[1:]
    assert example and all(line.startswith("    ") for line in example if line.strip())
    assert any(line.split()[:1] == ["trainnet"] or "trainnet " in line for line in example)


def test_every_pending_command_exists():
    """The list above names only real commands (a renamed one would xfail for ever)."""
    names = {" ".join(path) for path, _ in commands()}
    assert set(PENDING) <= names


def complete(env: dict) -> subprocess.CompletedProcess:
    """The `trainnet` console script's entry point with ``env``, named `trainnet` as the script
    is (click builds the variable's name, _TRAINNET_COMPLETE, from the program's)."""
    script = "import sys; sys.argv[0] = 'trainnet'; from trainnet.launch import run; run()"
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", script], env=full, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o nosort -F _trainnet_completion trainnet"),
                                          ("zsh", "#compdef trainnet"),
                                          ("fish", "complete --no-files --command trainnet")])
def test_completion_script_is_produced(shell, marker):
    proc = complete({"_TRAINNET_COMPLETE": f"{shell}_source"})
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout and "_TRAINNET_COMPLETE" in proc.stdout


def test_completion_completes_commands_and_options():
    proc = complete({"_TRAINNET_COMPLETE": "bash_complete", "COMP_WORDS": "trainnet zoo sh",
                     "COMP_CWORD": "2"})
    assert proc.returncode == 0 and proc.stdout.split() == ["plain,show"], proc.stderr
    proc = complete({"_TRAINNET_COMPLETE": "bash_complete", "COMP_WORDS": "trainnet classify --chan",
                     "COMP_CWORD": "2"})
    assert proc.stdout.split() == ["plain,--channel-order"], proc.stderr
