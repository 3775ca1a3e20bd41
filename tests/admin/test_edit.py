"""svirt-admin edit ua|pa driven for real: editor scripts, answers on stdin, files on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from admin_helpers import PY, child_env, mode_of

# alice additionally becomes an Auditor (she gains read access to VMs that are not hers)
GOOD_UA_EXTRA = '    <UserRole role="Auditor"/>\n'


def good_ua(env) -> str:
    text = env.ua.read_text()
    return text.replace(
        '    <UserRole role="WebTeam"/>\n', '    <UserRole role="WebTeam"/>\n' + GOOD_UA_EXTRA, 1
    )


BROKEN_UA = """<?xml version="1.0" ?>
<UserConfiguration>
  <User name="alice">
    <UserRole role="NoSuchRole"/>
  </User>
</UserConfiguration>
"""


def test_good_edit_is_validated_shown_and_installed(admin_env):
    old = admin_env.ua.read_bytes()
    new = good_ua(admin_env)
    admin_env.write_config(editor=admin_env.copy_editor("ed", new))
    r = admin_env.run("edit", "ua", input="y\n")
    assert r.returncode == 0, r.stderr
    # the impact: what alice gains, as scopes
    assert "alice is assigned role Auditor" in r.stdout
    assert (
        "alice gains list, dominfo, domstate on vm bob-build, vm carol-lab, vm shared-dns"
        in r.stdout
    )
    assert "Install? [y/N]" in r.stdout
    assert admin_env.ua.read_text() == new
    assert mode_of(admin_env.ua) == (0, 0, 0o644)
    backup = admin_env.backup("ua")
    assert backup.read_bytes() == old
    assert mode_of(backup) == (0, 0, 0o600)
    assert admin_env.stale_temps() == []
    # the change is audited: decision before, outcome after
    recs = admin_env.audit_records()
    assert [r["type"] for r in recs] == ["decision", "outcome"]
    assert recs[0]["op"] == "rbac-admin" and recs[0]["user"] == "root"
    assert recs[1]["outcome"] == "ok"


def test_bad_edit_then_fixed_on_second_run(admin_env):
    new = good_ua(admin_env)
    bad = admin_env.base / "bad.xml"
    bad.write_text(BROKEN_UA)
    good = admin_env.base / "good.xml"
    good.write_text(new)
    counter = admin_env.base / "runs"
    ed = admin_env.editor(
        "ed2",
        f'n=$(cat "{counter}" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "{counter}"\n'
        f'if [ $n -eq 1 ]; then cat "{bad}" > "$f"; else cat "{good}" > "$f"; fi',
    )
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "ua", input="e\ny\n")
    assert r.returncode == 0, r.stderr
    assert counter.read_text().strip() == "2"
    # the error names the file and line, and says what is wrong
    assert f"{admin_env.ua}:4: user 'alice' is assigned role 'NoSuchRole'" in r.stderr
    assert "What now? (e)dit again, e(x)it without saving" in r.stdout
    assert admin_env.ua.read_text() == new


@pytest.mark.parametrize("answer", ["x\n", ""], ids=["exit", "end-of-input"])
def test_bad_edit_is_never_installed(admin_env, answer):
    old = admin_env.ua.read_bytes()
    admin_env.write_config(editor=admin_env.copy_editor("ed", BROKEN_UA))
    r = admin_env.run("edit", "ua", input=answer)
    assert r.returncode == 1
    assert "nothing was installed" in r.stdout
    assert admin_env.ua.read_bytes() == old
    assert not admin_env.backup("ua").exists()
    assert admin_env.audit_records() == []


def test_unknown_answer_asks_again(admin_env):
    old = admin_env.ua.read_bytes()
    admin_env.write_config(editor=admin_env.copy_editor("ed", BROKEN_UA))
    r = admin_env.run("edit", "ua", input="y\nsave\nx\n")
    assert r.returncode == 1
    assert r.stdout.count("What now?") == 3
    assert r.stdout.count("please answer e or x") == 2
    assert admin_env.ua.read_bytes() == old


def test_visudo_save_anyway_answer_does_not_save(admin_env):
    """visudo's Q installs a broken file; here it only leaves."""
    old = admin_env.ua.read_bytes()
    admin_env.write_config(editor=admin_env.copy_editor("ed", BROKEN_UA))
    r = admin_env.run("edit", "ua", input="Q\n")
    assert r.returncode == 1
    assert "nothing was installed" in r.stdout
    assert admin_env.ua.read_bytes() == old


def test_not_well_formed_xml_is_reported_with_line(admin_env):
    admin_env.write_config(editor=admin_env.copy_editor("ed", "<UserConfiguration>\n<User>\n"))
    r = admin_env.run("edit", "ua", input="x\n")
    assert r.returncode == 1
    assert f"{admin_env.ua}:" in r.stderr and "not well-formed XML" in r.stderr


def test_declined_install_leaves_the_file(admin_env):
    old = admin_env.ua.read_bytes()
    admin_env.write_config(editor=admin_env.copy_editor("ed", good_ua(admin_env)))
    for answer in ("n\n", "\n", ""):
        r = admin_env.run("edit", "ua", input=answer)
        assert r.returncode == 1
        assert "not installed" in r.stdout
        assert admin_env.ua.read_bytes() == old


def test_yes_installs_a_valid_edit_without_asking(admin_env):
    new = good_ua(admin_env)
    admin_env.write_config(editor=admin_env.copy_editor("ed", new))
    r = admin_env.run("edit", "ua", "--yes")
    assert r.returncode == 0, r.stderr
    assert "Install?" not in r.stdout
    assert "alice is assigned role Auditor" in r.stdout
    assert admin_env.ua.read_text() == new


def test_no_changes(admin_env):
    admin_env.write_config(editor="/bin/true")
    r = admin_env.run("edit", "pa")
    assert r.returncode == 0
    assert "no changes" in r.stdout
    assert not admin_env.backup("pa").exists()


def test_editor_failure_installs_nothing(admin_env):
    old = admin_env.pa.read_bytes()
    ed = admin_env.editor("fail", 'echo "<RolePolicyDefinition/>" > "$f"; exit 3')
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "pa", input="y\n")
    assert r.returncode == 1
    assert "editor exited with status 3" in r.stderr
    assert admin_env.pa.read_bytes() == old


def test_impact_of_a_pa_edit_names_who_loses_what(admin_env):
    text = admin_env.pa.read_text()
    new = text.replace('        <operation id="13"/>  <!-- destroy -->\n', "", 1)
    assert new != text
    admin_env.write_config(editor=admin_env.copy_editor("ed", new))
    r = admin_env.run("edit", "pa", input="n\n")
    assert "alice loses destroy on vm alice-db, vm alice-web" in r.stdout
    assert "role WebTeam loses destroy on vm alice-db, vm alice-web" in r.stdout
    assert "bob" not in r.stdout  # BuildTeam's destroy is untouched


def test_edit_validates_against_the_other_file(admin_env):
    """A PA edit that removes a role still assigned in UA is refused: the whole policy counts."""
    text = admin_env.pa.read_text()
    start = text.index('  <Role name="BuildTeam">')
    end = text.index("</Role>", start) + len("</Role>\n")
    admin_env.write_config(editor=admin_env.copy_editor("ed", text[:start] + text[end:]))
    r = admin_env.run("edit", "pa", input="x\n")
    assert r.returncode == 1
    assert "user 'bob' is assigned role 'BuildTeam'" in r.stderr
    assert admin_env.pa.read_text() == text


# -- the lock -----------------------------------------------------------------------------------
def _blocking_editor(env):
    ready, go = env.base / "ready", env.base / "go"
    ed = env.editor(
        "slow",
        f'touch "{ready}"\nwhile [ ! -e "{go}" ]; do sleep 0.05; done\n'
        f'sed -i "s/Auditor\\"/BuildTeam\\"/" "$f"',
    )
    return ed, ready, go


def _wait_for(path, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first editor never started"
        time.sleep(0.05)


def test_second_editor_is_told_who_holds_the_lock(admin_env):
    ed, ready, go = _blocking_editor(admin_env)
    admin_env.write_config(editor=ed)
    first = subprocess.Popen(
        admin_env.argv("edit", "ua"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        _wait_for(ready, first)
        second = admin_env.run("edit", "pa")
        assert second.returncode == 1
        assert f"is being edited by pid {first.pid}, user root" in second.stderr
        assert "try again later" in second.stderr
        # scriptable edits wait for nobody either
        third = admin_env.run("assign", "alice", "Auditor", "--yes")
        assert third.returncode == 1 and f"pid {first.pid}" in third.stderr
        go.touch()
        _out, err = first.communicate("y\n", timeout=60)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert '<UserRole role="BuildTeam"/>' in admin_env.ua.read_text().split("carol")[1]
    # and now the lock is free again
    assert admin_env.run("assign", "alice", "Auditor", "--yes").returncode == 0


def test_lock_dies_with_its_holder(admin_env):
    ed, ready, go = _blocking_editor(admin_env)
    admin_env.write_config(editor=ed)
    old = admin_env.ua.read_bytes()
    first = subprocess.Popen(
        admin_env.argv("edit", "ua"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    _wait_for(ready, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    go.touch()  # let the orphaned editor script finish
    assert admin_env.ua.read_bytes() == old
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr


# -- crashes and failures during install ---------------------------------------------------------
def test_rename_failure_leaves_old_file_and_no_temp(admin_env, monkeypatch, capsys):
    """In-process: the rename onto ua.xml fails; the old file stays, the temp file is gone."""
    from secured_virt.cli import admin

    old = admin_env.ua.read_bytes()
    real_rename = os.rename

    def failing_rename(src, dst, *a, **kw):
        if os.fspath(dst) == "ua.xml":
            raise OSError(5, "Input/output error")
        return real_rename(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", failing_rename)
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115
    rc = admin.main(["--config", str(admin_env.config), "assign", "alice", "Auditor", "--yes"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "could not install" in err and "is unchanged" in err
    assert admin_env.ua.read_bytes() == old
    assert admin_env.stale_temps() == []
    assert mode_of(admin_env.ua) == (0, 0, 0o644)
    assert admin_env.audit_records()[-1]["outcome"].startswith("error:")


def test_second_file_failure_puts_the_first_back(admin_env, monkeypatch, capsys):
    """rm-role --force changes both files; if the second cannot be written, the first returns."""
    from secured_virt.cli import admin

    old_ua, old_pa = admin_env.ua.read_bytes(), admin_env.pa.read_bytes()
    real_rename = os.rename

    def failing_rename(src, dst, *a, **kw):
        if os.fspath(dst) == "pa.xml":
            raise OSError(28, "No space left on device")
        return real_rename(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", failing_rename)
    rc = admin.main(["--config", str(admin_env.config), "rm-role", "BuildTeam", "--force", "--yes"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "was put back as it was" in err
    assert admin_env.ua.read_bytes() == old_ua
    assert admin_env.pa.read_bytes() == old_pa
    assert admin_env.stale_temps() == []


CRASH = """
import os, signal, sys
real = os.rename
def crash(src, dst, *a, **kw):
    if os.fspath(dst) == "ua.xml":   # the temp file is written and fsynced: die right here
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *a, **kw)
os.rename = crash
from secured_virt.cli.admin import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_between_temp_write_and_rename(admin_env):
    old = admin_env.ua.read_bytes()
    r = subprocess.run(
        [PY, "-c", CRASH, "--config", str(admin_env.config), "assign", "alice", "Auditor", "-y"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert r.returncode == -signal.SIGKILL
    assert admin_env.ua.read_bytes() == old  # old or new, never half: here old
    leftovers = admin_env.stale_temps()
    assert len(leftovers) == 1 and leftovers[0].startswith(".ua.xml.tmp-")
    # the next change, under the lock, cleans up what the crash left
    r = admin_env.run("assign", "alice", "Auditor", "--yes")
    assert r.returncode == 0, r.stderr
    assert "left behind by an interrupted install" in r.stdout
    assert admin_env.stale_temps() == []
    assert 'role="Auditor"' in admin_env.ua.read_text()


def test_change_behind_the_locks_back_is_not_overwritten(admin_env):
    """Someone edits ua.xml with plain vi while svirt-admin edit waits: nothing is installed."""
    ed = admin_env.editor(
        "sneaky",
        f'sed -i "s/Auditor\\"/BuildTeam\\"/" "$f"\n'
        f'sed -i "s/hostManager/hostmanager/" "{admin_env.ua}"',
    )
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "ua", input="y\n")
    assert r.returncode == 1
    assert "was changed by someone else" in r.stderr
    assert "your edited version is kept in" in r.stderr
    assert "hostmanager" in admin_env.ua.read_text()
    assert "carol" in admin_env.ua.read_text().split("Auditor")[0]


# -- choosing the editor -------------------------------------------------------------------------
def test_env_editor_ignored_unless_allowed(admin_env):
    cfg_editor = admin_env.copy_editor("cfg-ed", good_ua(admin_env))
    env_text = admin_env.ua.read_text().replace("hostManager", "envManager")
    env_editor = admin_env.copy_editor("env-ed", env_text)
    admin_env.write_config(editor=cfg_editor, allow_env_editor="no")
    for var in ("SUDO_EDITOR", "VISUAL", "EDITOR"):
        r = admin_env.run("edit", "ua", input="n\n", env={var: str(env_editor)})
        assert "alice is assigned role Auditor" in r.stdout, (var, r.stdout, r.stderr)
        assert "envManager" not in r.stdout
    admin_env.write_config(allow_env_editor="yes")
    r = admin_env.run("edit", "ua", input="n\n", env={"EDITOR": str(env_editor)})
    assert "envManager is added to the UA policy" in r.stdout, r.stderr
    # SUDO_EDITOR comes first
    r = admin_env.run(
        "edit", "ua", input="n\n", env={"SUDO_EDITOR": str(cfg_editor), "EDITOR": str(env_editor)}
    )
    assert "alice is assigned role Auditor" in r.stdout


def test_env_editor_with_double_dash_is_refused(admin_env):
    ed = admin_env.copy_editor("ed", good_ua(admin_env))
    admin_env.write_config(allow_env_editor="yes")
    r = admin_env.run("edit", "ua", env={"EDITOR": f"{ed} -- /etc/shadow"})
    assert r.returncode == 4
    assert "contains '--'" in r.stderr


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_editor_writable_by_others_is_refused(admin_env, mode):
    ed = admin_env.copy_editor("ed", good_ua(admin_env))
    os.chmod(ed, mode)
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "ua", input="y\n")
    assert r.returncode == 4
    assert "writable by group or others" in r.stderr
    assert "Auditor" not in admin_env.ua.read_text().split("carol")[0]


def test_editor_not_owned_by_root_is_refused(admin_env, test_users):
    ed = admin_env.copy_editor("ed", good_ua(admin_env))
    os.chown(ed, test_users["svt-alice"].pw_uid, 0)
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "ua")
    assert r.returncode == 4
    assert "not root" in r.stderr


def test_new_file_starts_from_a_skeleton(admin_env):
    """With no UA yet, edit starts from an empty document and creates it root:root 0644."""
    admin_env.ua.unlink()
    ed = admin_env.editor(
        "add-bob",
        'sed -i "s|</UserConfiguration>|  <User name=\\"bob\\"><UserRole role=\\"BuildTeam\\"/>'
        '</User>\\n</UserConfiguration>|" "$f"',
    )
    admin_env.write_config(editor=ed)
    r = admin_env.run("edit", "ua", input="y\n")
    assert r.returncode == 0, r.stderr
    assert "bob is added to the UA policy with role BuildTeam" in r.stdout
    assert mode_of(admin_env.ua) == (0, 0, 0o644)
    assert not admin_env.backup("ua").exists()


def test_private_copy_is_in_a_0700_directory_under_tmp_whatever_tmpdir_says(admin_env):
    seen = admin_env.base / "seen"
    ed = admin_env.editor("peek", f'stat -c "%a %U %n" "$(dirname "$f")" "$f" > "{seen}"')
    admin_env.write_config(editor=ed)
    elsewhere = admin_env.base / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    r = admin_env.run("edit", "ua", env={"TMPDIR": str(elsewhere)})
    assert r.returncode == 0, r.stderr  # the editor changed nothing
    dir_line, file_line = seen.read_text().splitlines()
    mode, owner, path = dir_line.split(" ", 2)
    assert (mode, owner) == ("700", "root") and path.startswith("/tmp/svirt-admin-edit-ua-")
    assert file_line.split(" ")[:2] == ["600", "root"]
    assert file_line.endswith("/ua.xml")
    assert not os.path.exists(path)  # removed afterwards
    assert os.listdir(elsewhere) == []


# -- which editor runs, and never one without a terminal (issue 19) --------------------------------
def test_the_editor_and_why_are_named(admin_env):
    ed = admin_env.copy_editor("cfg-ed", good_ua(admin_env))
    env_ed = admin_env.copy_editor("env-ed", good_ua(admin_env))
    admin_env.write_config(editor=ed, allow_env_editor="no")
    r = admin_env.run("edit", "ua", input="n\n", env={"EDITOR": str(env_ed)})
    line = f"svirt-admin edit: editing {admin_env.ua} with {ed}: the configured editor"
    assert line in r.stdout, r.stdout + r.stderr
    assert "$EDITOR ignored: allow_env_editor = no" in r.stdout
    admin_env.write_config(allow_env_editor="yes")
    r = admin_env.run("edit", "ua", input="n\n", env={"VISUAL": str(env_ed)})
    assert f"with {env_ed}: from $VISUAL (allow_env_editor = yes in {admin_env.config})" in r.stdout


def test_env_editor_works_through_the_launcher(admin_env):
    """The documented way (allow_env_editor = yes, then EDITOR=...) through bin/svirt-admin,
    whose hardened start-up scrubs the environment: the caller's editor really runs."""
    from admin_helpers import REPO

    marker = admin_env.base / "env-editor-ran"
    ed = admin_env.editor("env-ed", f'touch "{marker}"\ncat "{admin_env.base}/new.xml" > "$f"')
    (admin_env.base / "new.xml").write_text(good_ua(admin_env))
    admin_env.write_config(allow_env_editor="yes")  # editor = /bin/true otherwise
    launcher = [PY, "-I", str(REPO / "bin" / "svirt-admin"), "--config", str(admin_env.config)]
    r = subprocess.run(
        [*launcher, "edit", "ua", "--no-tty", "--yes"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "EDITOR": str(ed)},
        timeout=60,
        cwd="/",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert marker.exists()
    assert f"with {ed}: from $EDITOR" in r.stdout
    assert 'role="Auditor"' in admin_env.ua.read_text()


def test_no_editor_starts_without_a_terminal(admin_env):
    marker = admin_env.base / "editor-ran"
    ed = admin_env.editor("ed", f'touch "{marker}"')
    admin_env.write_config(editor=ed)
    before = admin_env.ua.read_bytes()
    r = admin_env.run("edit", "ua", "--tty", input="y\n")  # "--tty": no --no-tty added
    assert r.returncode == 2, r.stdout + r.stderr
    assert "standard input and standard output are not a terminal" in r.stderr
    assert f"the editor ({ed}: the configured editor" in r.stderr
    assert "--no-tty" in r.stderr and "svirt-admin assign" in r.stderr
    assert not marker.exists()
    assert admin_env.ua.read_bytes() == before


def test_the_editor_starts_on_a_terminal(admin_env):
    """On a real terminal (a pty) no flag is needed."""
    import pty

    marker = admin_env.base / "editor-ran"
    ed = admin_env.editor("ed", f'[ -t 0 ] && [ -t 1 ] && touch "{marker}"; true')
    admin_env.write_config(editor=ed)
    primary, secondary = pty.openpty()
    try:
        p = subprocess.Popen(
            admin_env.argv("edit", "ua", "--tty"),
            stdin=secondary,
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=child_env(),
            cwd="/",
        )
        os.close(secondary)
        out = b""
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            try:
                out += os.read(primary, 4096)
            except OSError:
                break
        p.wait(timeout=60)
    finally:
        os.close(primary)
    assert p.returncode == 0, (out, p.stderr.read())
    assert marker.exists()
    assert b"no changes" in out
