"""policyedit: XML-level edits keep root's layout, and mean exactly what they say.

The layout tests compare text; the property test drives random grant/revoke sequences and
checks, after every step, that the document still loads and that each role's own permissions
(through rbac's review function) equal a plain set model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rbac
from secured_virt.access.operations import CATALOGUE
from secured_virt.rolefiles.edit import (
    EditError,
    PolicyDoc,
    add_role,
    assign,
    deassign,
    grant,
    parse_op,
    parse_scope,
    revoke,
    rm_role,
)
from secured_virt.rolefiles.impact import Scope

REPO = Path(__file__).resolve().parents[2]
ALL_IDS = frozenset(CATALOGUE.by_id)


def doc(text: str, kind: str) -> PolicyDoc:
    return PolicyDoc(text.encode(), kind, f"{kind}.xml")


@pytest.mark.parametrize(
    "path",
    sorted(str(p.relative_to(REPO)) for p in (REPO / "etc").rglob("*.xml") if "ua" in p.name
           or "pa" in p.name),
)  # fmt: skip
def test_unchanged_documents_round_trip_byte_for_byte(path):
    data = (REPO / path).read_bytes()
    kind = "ua" if "ua" in Path(path).name else "pa"
    if b"<UserConfiguration" not in data and b"<RolePolicyDefinition" not in data:
        pytest.skip("not a UA/PA file")
    assert PolicyDoc(data, kind, path).to_bytes() == data


def test_prolog_epilog_and_encoding_survive():
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n\n<!-- head -->\n<!-- second -->\n'
        '<UserConfiguration>\n\t<User name="zoë">\n\t\t<UserRole role="R"/>\n\t</User>\n'
        "</UserConfiguration>\n<!-- tail -->\n"
    )
    d = doc(text, "ua")
    assert d.to_bytes().decode() == text
    assign(d, "zoë", "S")
    assert d.to_bytes().decode() == text.replace(
        '\t\t<UserRole role="R"/>\n', '\t\t<UserRole role="R"/>\n\t\t<UserRole role="S"/>\n'
    )


def test_new_user_goes_after_the_last_user_before_separation_sets():
    text = (
        "<UserConfiguration>\n  <User name=\"a\">\n    <UserRole role=\"R\"/>\n  </User>\n"
        "  <StaticSeparation name=\"s\">\n    <Role name=\"R\"/>\n    <Role name=\"S\"/>\n"
        "  </StaticSeparation>\n</UserConfiguration>\n"
    )  # fmt: skip
    d = doc(text, "ua")
    assign(d, "b", "S", "2030-01-01")
    assert d.to_bytes().decode() == text.replace(
        "  </User>\n",
        '  </User>\n  <User name="b">\n    <UserRole role="S" expires="2030-01-01"/>\n  </User>\n',
    )


def test_first_user_in_an_empty_file():
    d = PolicyDoc.skeleton("ua", "ua.xml")
    assign(d, "a", "R")
    assert (
        d.to_bytes()
        .decode()
        .endswith(
            '<UserConfiguration>\n  <User name="a">\n    <UserRole role="R"/>\n  </User>\n'
            "</UserConfiguration>\n"
        )
    )


def test_deassign_last_role_removes_the_user_but_keeps_other_comments():
    text = (
        "<UserConfiguration>\n  <!-- the team -->\n  <User name=\"a\">\n"
        "    <UserRole role=\"R\"/>  <!-- until the audit -->\n  </User>\n"
        "  <User name=\"b\">\n    <UserRole role=\"R\"/>\n  </User>\n</UserConfiguration>\n"
    )  # fmt: skip
    d = doc(text, "ua")
    deassign(d, "a", "R")
    assert d.to_bytes().decode() == (
        "<UserConfiguration>\n  <!-- the team -->\n"
        '  <User name="b">\n    <UserRole role="R"/>\n  </User>\n</UserConfiguration>\n'
    )
    with pytest.raises(EditError, match=r"not in ua\.xml"):
        deassign(d, "a", "R")


def test_grant_into_an_empty_role_and_a_self_closing_one():
    d = doc('<RolePolicyDefinition>\n  <Role name="R"/>\n</RolePolicyDefinition>\n', "pa")
    grant(d, "R", parse_op("start"), parse_scope("vm:x"))
    assert d.to_bytes().decode() == (
        '<RolePolicyDefinition>\n  <Role name="R">\n'
        '    <ManageVM type="individual">\n      <VM name="x"/>\n    </ManageVM>\n'
        "    <ControlOperation>\n      <Accept>\n"
        '        <operation name="start"/>\n'
        "      </Accept>\n    </ControlOperation>\n  </Role>\n</RolePolicyDefinition>\n"
    )


def test_four_space_files_get_four_space_additions():
    d = doc(
        '<RolePolicyDefinition>\n    <Role name="R">\n        <Inherits role="S"/>\n'
        '    </Role>\n    <Role name="S"/>\n</RolePolicyDefinition>\n',
        "pa",
    )
    add_role(d, "T", ["S"], authenticate=True)
    assert (
        '    <Role name="T" authenticate="true">\n        <Inherits role="S"/>\n    </Role>\n'
        "</RolePolicyDefinition>"
    ) in d.to_bytes().decode()


def test_rm_role_force_cleans_every_reference():
    ua = doc(
        "<UserConfiguration>\n"
        '  <User name="a">\n    <UserRole role="X"/>\n    <UserRole role="Y"/>\n  </User>\n'
        '  <User name="b">\n    <UserRole role="X"/>\n  </User>\n'
        '  <StaticSeparation name="two">\n    <Role name="X"/>\n    <Role name="Y"/>\n'
        "  </StaticSeparation>\n"
        '  <DynamicSeparation name="three" cardinality="2">\n    <Role name="X"/>\n'
        '    <Role name="Y"/>\n    <Role name="Z"/>\n  </DynamicSeparation>\n'
        "</UserConfiguration>\n",
        "ua",
    )
    pa = doc(
        '<RolePolicyDefinition>\n  <Role name="X"/>\n  <Role name="Y">\n'
        '    <Inherits role="X"/>\n  </Role>\n  <Role name="Z"/>\n</RolePolicyDefinition>\n',
        "pa",
    )
    with pytest.raises(EditError, match="assigned to a, b; inherited by Y; named in static"):
        rm_role(pa, ua, "X")
    rm_role(pa, ua, "X", force=True)
    text_ua, text_pa = ua.to_bytes().decode(), pa.to_bytes().decode()
    assert "X" not in text_ua and "X" not in text_pa
    assert "StaticSeparation" not in text_ua  # one role left: the set constrains nothing
    assert '<DynamicSeparation name="three" cardinality="2">\n    <Role name="Y"/>\n' in text_ua
    assert '<User name="b">' not in text_ua
    rbac.loads(ua.to_bytes(), pa.to_bytes(), CATALOGUE.names)  # still a valid policy


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("vm:web-1", Scope("vm", "web-1")),
        ("pattern:web-*", Scope("pattern", "web-*")),
        ("label:blue:ish", Scope("label", "blue:ish")),
        ("all", Scope("all")),
        ("owned", Scope("owned")),
        ("host", Scope("vm", "Domain-0")),
    ],
)
def test_parse_scope(text, scope):
    assert parse_scope(text) == scope
    if text != "host":
        assert scope.spec() == text


@pytest.mark.parametrize("text", ["web-1", "vm:", "vm: x", "name:x", "", "all:x", "vm:a\nb"])
def test_parse_scope_refuses(text):
    with pytest.raises(ValueError, match="bad VM scope"):
        parse_scope(text)


def test_parse_op_keeps_the_form_given():
    assert (parse_op("6").attr, parse_op("6").value) == ("id", "6")
    assert (parse_op("start").attr, parse_op("start").value, parse_op("start").id) == (
        "name",
        "start",
        6,
    )
    assert parse_op("*").is_all
    with pytest.raises(ValueError, match="did you mean 'destroy'"):
        parse_op("destory")


def test_refusing_malicious_documents():
    with pytest.raises(rbac.PolicyError, match="DOCTYPE"):
        doc(
            '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/shadow">]>\n'
            "<UserConfiguration>&e;</UserConfiguration>",
            "ua",
        )
    with pytest.raises(EditError, match="root element is <RolePolicyDefinition>"):
        doc("<RolePolicyDefinition/>", "ua")


# -- property: random grant/revoke sequences mean what the model says -----------------------------
BASE_PA = """<?xml version="1.0"?>
<!-- roles for the property test -->
<RolePolicyDefinition>
  <Role name="R1">
    <ManageVM type="individual">
      <VM name="a"/>
      <VM name="b"/>
    </ManageVM>
    <ControlOperation>
      <Accept>
        <operation id="2"/>   <!-- list -->
        <operation id="6"/>   <!-- start -->
      </Accept>
    </ControlOperation>
  </Role>
  <Role name="R2">
    <!-- everything on the w-* machines -->
    <ManageVM type="pattern">
      <VM pattern="w-*"/>
    </ManageVM>
    <ControlOperation>
      <Accept>
        <operation id="*"/>
      </Accept>
    </ControlOperation>
  </Role>
</RolePolicyDefinition>
"""
BASE_MODEL = {
    "R1": {(2, Scope("vm", "a")), (6, Scope("vm", "a")), (2, Scope("vm", "b")),
           (6, Scope("vm", "b"))},
    "R2": {(o, Scope("pattern", "w-*")) for o in ALL_IDS},
}  # fmt: skip
EMPTY_UA = b"<UserConfiguration/>"

scopes = st.sampled_from(["vm:a", "vm:b", "vm:c", "pattern:w-*", "label:blue", "all", "owned"])
ops = st.sampled_from(["2", "list", "6", "start", "13", "destroy", "*"])
steps = st.lists(
    st.tuples(st.sampled_from(["grant", "revoke"]), st.sampled_from(["R1", "R2"]), ops, scopes),
    max_size=12,
)


def own_permissions(pol, role) -> set:
    from secured_virt.rolefiles.impact import scope_of

    return {
        (p.operation, sc)
        for p in pol.role_permissions(role)
        if p.role == role
        for sc in scope_of(p.selector)
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_edits_match_the_model(seq):
    d = doc(BASE_PA, "pa")
    model = {r: set(v) for r, v in BASE_MODEL.items()}
    for action, role, op_text, scope_text in seq:
        op, scope = parse_op(op_text), parse_scope(scope_text)
        wanted = ALL_IDS if op.is_all else {op.id}
        if action == "grant":
            grant(d, role, op, scope)
            model[role] |= {(o, scope) for o in wanted}
        else:
            held = {(o, s) for o, s in model[role] if s == scope and o in wanted}
            if op.is_all:
                held = {(o, s) for o, s in model[role] if s == scope}
            if not held:
                with pytest.raises(EditError):
                    revoke(d, role, op, scope)
                continue
            revoke(d, role, op, scope)
            model[role] -= held
        data = d.to_bytes()
        pol = rbac.loads(EMPTY_UA, data, CATALOGUE.names)
        for r in ("R1", "R2"):
            assert own_permissions(pol, r) == model[r], (action, role, op_text, scope_text)
        d = PolicyDoc(data, "pa", "pa.xml")  # the written text is what the next step edits
    text = d.to_bytes().decode()
    assert "<!-- roles for the property test -->" in text
    assert "<!-- everything on the w-* machines -->" in text


def test_roles_differing_ignores_comments_and_layout():
    old = (REPO / "etc" / "demo" / "pa.xml").read_bytes()
    d = PolicyDoc(old, "pa", "pa.xml")
    grant(d, "BuildTeam", parse_op("reboot"), parse_scope("vm:bob-build"))
    add_role(d, "New")
    relaid = old.replace(b"<!-- list -->", b"").replace(b"\n    <", b"\n<")
    from secured_virt.rolefiles.edit import roles_differing

    assert roles_differing(old, relaid) == set()
    assert roles_differing(old, d.to_bytes()) == {"BuildTeam", "New"}
    assert roles_differing(d.to_bytes(), old) == {"BuildTeam", "New"}
    assert roles_differing(None, old) == {"WebTeam", "BuildTeam", "Auditor", "HostOSManager"}
    assert roles_differing(old, b"<RolePolicyDefinition>") is None
