"""``distsys demo``: runs every scenario in order, or the one named."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from distsys.cli import _demo, main


def test_every_scenario_is_a_subcommand() -> None:
    assert _demo.SCENARIOS
    for scenario in _demo.SCENARIOS:
        assert _demo.demo.commands[scenario.name or ""] is scenario


def test_without_a_name_runs_every_scenario_in_order_with_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[tuple[str, int]] = []

    def scenario(name: str) -> click.Command:
        @click.command(name)
        @click.option("--size", type=int, default=len(name))
        def command(size: int) -> None:
            ran.append((name, size))

        return command

    monkeypatch.setattr(_demo, "SCENARIOS", (scenario("zeta"), scenario("alpha")))
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert ran == [("zeta", 4), ("alpha", 5)]  # SCENARIOS order, not alphabetical


def test_help_lists_the_scenarios() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    assert "pipeline" in result.output


def test_an_unknown_scenario_is_refused() -> None:
    result = CliRunner().invoke(main, ["demo", "nope"])
    assert result.exit_code == 2
    assert "No such command 'nope'" in result.output
