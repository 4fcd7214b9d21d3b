"""A command group whose help lists its commands ("Scheduled syncs: add, list, ...") names
every one of them: `schedules --help` left out `show` and `preview`, `destinations --help`
left out `check` (registered in gradesync.cli, so the app is imported whole)."""

from __future__ import annotations

import re

import typer

from gradesync.cli import app, destinations, schedules, users


def _listed(group: typer.Typer) -> set[str]:
    said = group.info.help
    assert isinstance(said, str)
    listing = said.split(":", 1)[1].split(".", 1)[0]
    return {w for w in re.split(r"[,\s]+", listing) if w}


def _commands(group: typer.Typer) -> set[str]:
    return {
        c.name or (c.callback.__name__ if c.callback else "") for c in group.registered_commands
    }


def test_each_group_help_lists_all_its_commands() -> None:
    assert app.registered_groups  # every command added, `destinations check` included
    for group in (schedules.app, destinations.app, users.app):
        assert _commands(group) <= _listed(group), group.info.help
