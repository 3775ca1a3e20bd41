"""svirsh's argv handling: virsh names, '--' for names that look like options, usage errors."""

import pytest

from secured_virt.cli.commands import COMMANDS, UsageError, parse_command
from secured_virt.cli.svirsh import main, parse_globals


def test_globals_stop_at_command_word():
    g, cmd, rest = parse_globals(["--as", "alice", "--json", "start", "--paused", "vm1"])
    assert (g.as_user, g.json, cmd, rest) == ("alice", True, "start", ["--paused", "vm1"])


def test_connect_equals_form():
    g, cmd, rest = parse_globals(["--connect=test:///default", "list"])
    assert g.connect == "test:///default" and cmd == "list" and rest == []


def test_names_are_data_after_double_dash():
    cmd, args = parse_command("start", ["--", "--help"])
    assert cmd.op == "start" and args["domain"] == "--help"


def test_unknown_command_is_usage_error():
    with pytest.raises(UsageError, match="unknown command 'frobnicate'"):
        parse_command("frobnicate", [])


def test_missing_argument_is_usage_error():
    with pytest.raises(UsageError, match="required"):
        parse_command("start", [])


def test_unknown_global_option_exits_2(capsys):
    assert main(["--frob", "list"]) == 2
    assert "unknown option '--frob'" in capsys.readouterr().err


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out
    assert "exit codes" in out


def test_command_help_has_example(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["start", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "svirsh start alice-web" in out and "operation 'start'" in out


def test_every_command_names_a_catalogue_operation():
    from secured_virt.operations import CATALOGUE

    for cmd in COMMANDS.values():
        assert CATALOGUE.get(cmd.op).name == cmd.op


def test_operations_listing(capsys):
    assert main(["operations"]) == 0
    out = capsys.readouterr().out
    assert " 16  policy-show" in out and "  6  start" in out
