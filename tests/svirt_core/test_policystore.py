"""PolicyStore: the policy in force, swapped only for a new one that loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import rbac
from secured_virt.rolefiles.store import PolicyStore, PolicyUnavailable

ETC = Path(__file__).resolve().parents[2] / "etc"


@pytest.fixture
def files(tmp_path):
    for name in ("ua.xml", "pa.xml"):
        shutil.copy(ETC / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    return tmp_path / "ua.xml", tmp_path / "pa.xml"


def test_a_bad_reload_keeps_the_last_good_policy(files):
    ua, pa = files
    store = PolicyStore(str(ua), str(pa))
    good = store.current()
    text = ua.read_text()
    ua.write_text(
        text.replace('role="WebOperator"/>', 'role="WebOperator" expires="9999-12-31"/>', 1)
    )
    res = store.reload()
    assert not res.ok and res.digest == good.digest
    assert "too far in the future" in res.errors[0] and store.current() is good
    assert store.error == res.errors[0]
    ua.write_text(text)
    assert store.reload().ok and store.error is None


def test_an_unexpected_loader_failure_is_contained(files, monkeypatch):
    ua, pa = files
    store = PolicyStore(str(ua), str(pa))
    good = store.current()

    def broken(*a, **k):  # stands in for a loader bug: not a PolicyError
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(rbac, "load", broken)
    res = store.reload()
    assert not res.ok and store.current() is good
    assert res.errors == (
        f"{ua}, {pa}: cannot load: RecursionError: maximum recursion depth exceeded",
    )


def test_no_policy_at_start_fails_closed(files):
    ua, pa = files
    ua.chmod(0o666)
    store = PolicyStore(str(ua), str(pa))
    with pytest.raises(PolicyUnavailable, match="world writable"):
        store.current()
