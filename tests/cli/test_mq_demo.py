"""``distsys demo mq``: a consumer process killed mid-work, and nothing lost."""

from __future__ import annotations

import importlib.util
import re

import pytest
from click.testing import CliRunner

from distsys.cli import _demo, main
from distsys.cli._mq_demo import MqDemoResult, explain, mq_demo, summary_table
from tests.cli.test_pipeline_command import PIPED, TERMINAL, render, row

needs_sqlite = pytest.mark.skipif(
    importlib.util.find_spec("distsys.mq._sqlite") is None,
    reason="the demo's processes share a sqlite:// queue, which has not landed",
)
SMALL = ["demo", "mq", "--messages", "30", "--kill-after", "6", "--ack-wait", "0.3"]


def test_is_a_demo_scenario() -> None:
    assert mq_demo in _demo.SCENARIOS
    assert _demo.demo.commands["mq"] is mq_demo


@needs_sqlite
def test_a_killed_consumer_loses_nothing() -> None:
    result = CliRunner().invoke(main, SMALL, env=PIPED)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "\x1b[" not in out  # plain lines when not on a terminal
    assert "victim killed with SIGKILL after handling" in out
    assert "survivor drained and exited with code 0" in out
    assert row(out, "jobs published") == 30
    assert row(out, "lost") == 0
    assert row(out, "dead-lettered") == 1
    assert row(out, "handled at least once") == 29  # all but the poison job
    twice, redelivered = row(out, "handled twice or more"), row(out, "redeliveries handled")
    assert twice <= redelivered
    assert "Nothing was lost: all 30 jobs were handled or dead-lettered." in out
    poison = re.search(r"The poison job (p\d+-\d+) was dead-lettered after 3 deliveries", out)
    assert poison is not None, out
    assert "ValueError: poison: cannot parse the order" in out


@needs_sqlite
def test_live_view_on_a_terminal_ends_with_the_summary() -> None:
    result = CliRunner().invoke(main, SMALL, env=TERMINAL)
    assert result.exit_code == 0, result.output
    assert "distsys demo mq" in result.output  # the live panel was drawn
    assert "mq summary" in result.output


@pytest.mark.parametrize(
    ("option", "value"),
    [("--messages", "1"), ("--ack-wait", "0"), ("--producers", "0"), ("--kill-after", "0")],
)
def test_refuses_invalid_options_naming_them(option: str, value: str) -> None:
    result = CliRunner().invoke(main, ["demo", "mq", option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output


def make(**changes: object) -> MqDemoResult:
    fields: dict[str, object] = {
        "published": ("p0-0", "p0-1", "p0-2", "p0-3"),
        "poison": "p0-3",
        "handled": {"p0-0": 1, "p0-1": 2, "p0-2": 1},
        "redelivered": 2,
        "by_worker": {"victim": 2, "survivor": 3},
        "dead": {"p0-3": ("ValueError: bad", "3")},
        "victim_killed_after": 2,
        "survivor_exit": 0,
        "elapsed": 1.5,
    }
    fields.update(changes)
    return MqDemoResult(**fields)  # type: ignore[arg-type]


def test_the_summary_accounts_for_every_job() -> None:
    text = render(summary_table(make(), 1.0))
    assert row(text, "jobs published") == 4
    assert row(text, "handled twice or more") == 1
    assert row(text, "lost") == 0
    assert "killed after 2" in text
    assert "(exit 0)" in text


def test_explain_says_what_happened() -> None:
    text = explain(make(), 1.0)
    assert "Nothing was lost: all 4 jobs were handled or dead-lettered." in text
    assert "handled 2 redeliveries: 1 the victim had not got to, and 1 it had already" in text
    assert "So 1 job(s) were handled twice" in text
    assert "The poison job p0-3 was dead-lettered after 3 deliveries (ValueError: bad)." in text
    lost = explain(make(handled={"p0-0": 1}, redelivered=0, victim_killed_after=None), 1.0)
    assert "2 job(s) not accounted for: p0-1, p0-2." in lost
    assert make(handled={}).lost == ["p0-0", "p0-1", "p0-2"]
    assert not MqDemoResult().complete
