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
    from secured_virt.access.operations import CATALOGUE

    for cmd in COMMANDS.values():
        assert CATALOGUE.get(cmd.op).name == cmd.op


def test_operations_listing(capsys):
    assert main(["operations"]) == 0
    out = capsys.readouterr().out
    assert " 16  policy-show" in out and "  6  start" in out


# -- the fast path must agree with argparse wherever it answers ------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from secured_virt.cli.commands import command_parser, fast_parse  # noqa: E402

TOKENS = st.sampled_from(
    [
        "vm1",
        "--all",
        "--json",
        "--live",
        "--config",
        "--",
        "--help",
        "-x",
        "--mac",
        "52:54:00:00:00:01",
        "--mac=aa",
        "--type",
        "res",
        "--paused",
        "512M",
        "--a",
        "-",
        "x y",
    ]
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(COMMANDS)), argv=st.lists(TOKENS, max_size=6))
def test_fast_parse_agrees_with_argparse(name, argv):
    cmd = COMMANDS[name]
    fast = fast_parse(cmd, argv)
    if fast is None:
        return  # argparse decides (help, errors, abbreviations)
    try:
        slow = vars(command_parser(cmd).parse_args(argv))
    except (UsageError, SystemExit) as exc:  # pragma: no cover - a disagreement
        raise AssertionError(f"fast path accepted {argv!r} that argparse refuses: {exc}") from None
    assert fast == slow


def test_client_start_up_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys; import secured_virt.cli.svirsh, secured_virt.client, "
        "secured_virt.cli.render, secured_virt.hardening; bad = [m for m in ('argparse', "
        "'dataclasses', 'libvirt', 'lxml', 'rbac', 'policy', 'inspect', 're', 'contextlib') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, "
            f"{str(__import__('pathlib').Path(__file__).parents[2])!r}); {code}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "[]"


def test_every_command_help_shows_an_example(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert "example:\n  svirsh " + name in out, name
