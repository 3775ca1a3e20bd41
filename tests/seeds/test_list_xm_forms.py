"""Seed 001's ``xm list`` forms: ``svirsh list --label`` carries xm's Mem(MiB), VCPUs and
Time(s) columns before the ACM-Label, and ``svirsh list --format sxp`` prints each domain as
xm list --long's s-expression with the ``(security ((acm_label (labelname L) (policyname P))
(ssidref N)))`` subtree, parseable by tools that read xm's output.  On the real libvirt test
driver, through the Service and as the real svirsh process."""

from __future__ import annotations

import re

import pytest

from secured_virt.cli.render import render
from secured_virt.requests import EXIT_USAGE

from .conftest import DEMO_POLICY, IMG, ROOT, ident, run
from .test_cli_real import Cli, conf_file


def parse_sxp(text: str):
    """A small reader for xen.xend.sxp's syntax (atoms, 'quoted', nested lists)."""
    tokens = re.findall(r"\(|\)|'(?:[^'\\]|\\.)*'|[^\s()']+", text)
    pos = 0

    def node():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            out = []
            while tokens[pos] != ")":
                out.append(node())
            pos += 1
            return out
        if tok.startswith("'"):
            return re.sub(r"\\(.)", r"\1", tok[1:-1])
        return tok

    out = []
    while pos < len(tokens):
        out.append(node())
    return out


def child(node: list, key: str):
    return next(c for c in node[1:] if isinstance(c, list) and c and c[0] == key)


def label_running(svc, vm: str, label: str, disk_label: str) -> None:
    """Stop vm, label its disk and it, start it again (a running disk cannot be relabelled)."""
    assert run(svc, ROOT, "destroy", domain=vm).ok
    r = run(svc, ROOT, "setlabel", domain=IMG.format(vm), label=disk_label, resource=True)
    assert r.ok, r.message
    assert run(svc, ROOT, "setlabel", domain=vm, label=label).ok
    r = run(svc, ROOT, "start", domain=vm)
    assert r.ok, r.message


def test_list_label_has_xm_columns_and_sxp_has_the_security_subtree(demo):
    label_running(demo, "alice-web", "dom_AliceCorp", "res_AliceData")
    ssidref = demo.acm.active.ssidref("dom_AliceCorp")
    data = run(demo, ROOT, "list", label=True).data
    out = render("list", {"label": True}, data)
    header, _rule, *rows = out.splitlines()
    assert header.split() == ["Id", "Name", "State", "Mem(MiB)", "VCPUs", "Time(s)", "ACM-Label"]
    web = next(r for r in rows if " alice-web " in r).split()
    assert web[3:6] == ["1024", "2", web[5]] and re.fullmatch(r"\d+\.\d", web[5])
    assert web[6] == "ACM:demo.hosting:dom_AliceCorp"

    r = run(demo, ROOT, "list", format="sxp")
    doms = parse_sxp(render("list", {"format": "sxp"}, r.data))
    web = next(d for d in doms if child(d, "name")[1] == "alice-web")
    assert web[0] == "domain" and child(web, "memory")[1] == "1024"
    assert child(web, "state")[1] == "r-----"
    sec = child(web, "security")[1]
    assert sec[0] == ["acm_label", ["labelname", "dom_AliceCorp"], ["policyname", "demo.hosting"]]
    assert sec[1] == ["ssidref", str(ssidref)]


def test_sxp_leaves_the_label_out_for_who_may_not_see_it(demo):
    """The same rule as list --long: the security subtree needs getlabel on the VM."""
    label_running(demo, "bob-build", "dom_BobCorp", "res_BobData")
    r = run(demo, ident("alice"), "list", all=True, format="sxp")
    assert r.ok, r.message
    text = render("list", {"format": "sxp"}, r.data)
    assert "dom_BobCorp" not in text


def test_unknown_format_is_a_usage_error(demo):
    r = run(demo, ROOT, "list", format="xml")
    assert r.status == EXIT_USAGE and "sxp" in r.message


@pytest.fixture
def cli(svt_env, tmp_path):
    c = Cli(conf_file(svt_env, tmp_path))
    r = c.admin("policy", "load", str(DEMO_POLICY))
    assert r.returncode == 0, r.stderr
    return c


def test_the_real_svirsh_prints_both_forms(cli):
    r = cli.svirsh("list", "--label")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[3:6] == ["Mem(MiB)", "VCPUs", "Time(s)"]
    r = cli.svirsh("list", "--format", "sxp")
    assert r.returncode == 0, r.stderr
    doms = parse_sxp(r.stdout)
    assert doms and all(d[0] == "domain" for d in doms)
    assert all(child(d, "security")[1][-1][0] == "ssidref" for d in doms)
    r = cli.svirsh("list", "--format", "yaml")
    assert r.returncode == 2 and "sxp" in r.stderr
