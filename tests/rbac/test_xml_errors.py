"""Bad UA/PA documents: every problem fails closed with file, line and what to do."""

from __future__ import annotations

import pytest
from rbac_helpers import OPS, compile_policy, errors_of, pa_doc, role, ua_doc, user

import rbac

GOOD_UA = ua_doc(user("alice", "web"))
GOOD_PA = pa_doc(role("web", ["web1"], [6]))


def load_error(ua: bytes = GOOD_UA, pa: bytes = GOOD_PA) -> rbac.PolicyError:
    with pytest.raises(rbac.PolicyError) as ei:
        rbac.loads(ua, pa, OPS)
    return ei.value


def test_malformed_xml_names_the_line():
    pa = (
        b'<?xml version="1.0"?>\n<RolePolicyDefinition>\n'
        b'  <Role name="web">\n  </Rol>\n</RolePolicyDefinition>\n'
    )
    e = load_error(pa=pa)
    assert e.file == "pa.xml" and e.line == 4
    assert str(e).startswith("pa.xml:4: not well-formed XML: Opening and ending tag mismatch")


def test_empty_and_garbage_documents():
    assert "not well-formed XML" in str(load_error(ua=b""))
    assert "not well-formed XML" in str(load_error(ua=b"\x00\xff garbage"))


def test_xxe_is_refused_and_never_read():
    ua = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        b'<UserConfiguration><User name="&e;"/></UserConfiguration>\n'
    )
    e = load_error(ua=ua)
    assert str(e) == (
        "ua.xml:2: document type declarations (<!DOCTYPE ...>) and entities are not allowed "
        "in policy files; remove the DOCTYPE"
    )
    assert "root:" not in str(e)


def test_billion_laughs_is_refused():
    lol = [b'<!ENTITY lol0 "lol">']
    for i in range(1, 10):
        lol.append(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">'.encode())
    pa = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n'
        + b"\n".join(lol)
        + b'\n]>\n<RolePolicyDefinition><Role name="&lol9;"/></RolePolicyDefinition>\n'
    )
    e = load_error(pa=pa)
    assert e.line == 2 and "DOCTYPE" in e.message


def test_entity_bomb_hidden_from_the_byte_scan_fails_closed_and_fast():
    lol = ['<!ENTITY lol0 "lol">']
    lol += [f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)]
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE lolz [\n'
        + "\n".join(lol)
        + '\n]>\n<RolePolicyDefinition><Role name="&lol9;"/></RolePolicyDefinition>\n'
    )
    e = load_error(pa=text.encode("utf-16"))
    assert e.file == "pa.xml" and e.line
    assert "not well-formed XML" in e.message or "DOCTYPE" in e.message


def test_doctype_hidden_from_the_byte_scan_is_still_refused():
    # UTF-16 defeats a byte search for "<!DOCTYPE"; the parsed tree's DTD is checked too
    text = '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE x>\n<UserConfiguration/>\n'
    e = load_error(ua=text.encode("utf-16"))
    assert "document type declarations are not allowed" in str(e)


def test_doctype_mentioned_in_a_comment_is_fine():
    ua = b'<?xml version="1.0"?>\n<!-- never put a <!DOCTYPE> here -->\n<UserConfiguration/>\n'
    assert rbac.loads(ua, GOOD_PA, OPS).users == ()


def test_schema_errors_name_file_and_line():
    pa = pa_doc(
        '<Role name="web">\n<ManageVM type="some"/>\n'
        '<ControlOperation><Accept><operation id="6"/></Accept></ControlOperation></Role>'
    )
    e = load_error(pa=pa)
    assert e.line == 4
    assert str(e).startswith(
        "pa.xml:4: Element 'ManageVM', attribute 'type': [facet 'enumeration']"
    )
    ua = ua_doc('<User name="a">\n<UserRole role="web" expire="2027-01-01"/>\n</User>')
    e = load_error(ua=ua)
    assert str(e) == (
        "ua.xml:4: Element 'UserRole', attribute 'expire': The attribute 'expire' is not allowed."
    )


def test_wrong_root_element():
    e = load_error(ua=GOOD_PA, pa=GOOD_UA)
    assert sorted(errors_of(e)) == [
        "pa.xml:2: this is a UA file (<UserConfiguration>), but a PA file "
        "(<RolePolicyDefinition>) is expected here; were the UA and PA files swapped?",
        "ua.xml:2: this is a PA file (<RolePolicyDefinition>), but a UA file "
        "(<UserConfiguration>) is expected here; were the UA and PA files swapped?",
    ]
    e = load_error(ua=b"<?xml version='1.0'?>\n<Users/>")
    assert errors_of(e) == [
        "ua.xml:2: the root element is <Users>, but a UA file starts with <UserConfiguration>"
    ]


def test_errors_of_both_files_are_reported_together():
    e = load_error(ua=b"<UserConfiguration>", pa=pa_doc("<Bogus/>"))
    assert {x.file for x in e.errors} == {"ua.xml", "pa.xml"}
    assert len(str(e).splitlines()) == len(e.errors) == 2


def test_unknown_operation_id_and_name():
    pa = pa_doc(role("web", ["web1"], [99, "strat", "shutdown", 0]))
    e = load_error(pa=pa)
    assert errors_of(e) == [
        "pa.xml:3: operation id 99 is not in the catalogue (1-63)",
        "pa.xml:3: operation name 'strat' is not in the catalogue; did you mean 'start'?",
        "pa.xml:3: operation id 0 is not in the catalogue (1-63)",
    ]


def test_operation_needs_exactly_one_of_id_and_name():
    pa = pa_doc(
        '<Role name="web"><ManageVM type="all"/><ControlOperation><Accept>\n'
        '<operation id="6" name="start"/>\n<operation/>\n'
        "</Accept></ControlOperation></Role>"
    )
    assert errors_of(load_error(pa=pa)) == [
        'pa.xml:4: <operation> needs exactly one of id="..." or name="..." (got both)',
        'pa.xml:5: <operation> needs exactly one of id="..." or name="..." (got neither)',
    ]


def test_an_id_given_as_a_name_is_refused():
    pa = pa_doc(role("web", ["web1"], ["start"]).replace('name="start"', 'name="16"'))
    assert errors_of(load_error(pa=pa)) == [
        'pa.xml:3: <operation name="16"> gives an id as a name; write id="16"'
    ]


def test_operation_id_must_be_a_number():
    e = load_error(pa=pa_doc(role("web", ["web1"], [6]).replace('id="6"', 'id="six"')))
    assert e.line == 3 and "attribute 'id'" in e.message


def test_unknown_role_in_ua():
    e = load_error(ua=ua_doc(user("alice", "Web")))
    assert errors_of(e) == [
        "ua.xml:3: user 'alice' is assigned role 'Web', which pa.xml does not define; "
        "did you mean 'web'?"
    ]


def test_duplicates():
    e = load_error(ua=ua_doc(user("a", "web") + "\n" + user("a", "web")))
    assert errors_of(e) == [
        "ua.xml:4: user 'a' is defined twice (first at ua.xml:3); "
        "list all of a user's roles in one <User> element"
    ]
    e = load_error(ua=ua_doc(user("a", "web", "web")))
    assert errors_of(e) == [
        "ua.xml:3: role 'web' is assigned to user 'a' twice (first at ua.xml:3)"
    ]
    e = load_error(pa=pa_doc(role("web") + "\n" + role("web")))
    assert errors_of(e) == ["pa.xml:4: role 'web' is defined twice (first at pa.xml:3)"]


@pytest.mark.parametrize(
    ("manage", "message"),
    [
        (
            '<ManageVM type="all"><VM name="x"/></ManageVM>',
            'ManageVM type="all" takes no <VM> or <Label> children',
        ),
        (
            '<ManageVM type="owned"><Label name="x"/></ManageVM>',
            'ManageVM type="owned" takes no <VM>',
        ),
        (
            '<ManageVM type="individual"/>',
            'ManageVM type="individual" needs at least one <VM name="..."/>',
        ),
        (
            '<ManageVM type="individual"><VM pattern="x*"/></ManageVM>',
            'takes <VM name="..."/>, not pattern= (for patterns use type="pattern")',
        ),
        (
            '<ManageVM type="pattern"><VM name="x"/></ManageVM>',
            'takes <VM pattern="..."/>, not name= (for names use type="individual")',
        ),
        ('<ManageVM type="individual"><VM/></ManageVM>', "this <VM> has no name"),
        ('<ManageVM type="pattern"><VM pattern="web-[a-"/></ManageVM>', "never closed"),
        ('<ManageVM type="pattern"><VM pattern="[!]"/></ManageVM>', "never closed"),
        ('<ManageVM type="pattern"><VM pattern="vm-[z-a]"/></ManageVM>', "backwards range 'z-a'"),
        ('<ManageVM type="pattern"/>', 'needs at least one <VM pattern="..."/>'),
        (
            '<ManageVM type="label"><VM name="x"/></ManageVM>',
            'takes <Label name="..."/> children, not <VM>',
        ),
        ('<ManageVM type="label"/>', 'needs at least one <Label name="..."/>'),
        (
            '<ManageVM type="individual"><Label name="x"/></ManageVM>',
            'takes <VM name="..."/> children, not <Label>',
        ),
    ],
)
def test_manage_vm_children_must_fit_the_type(manage, message):
    pa = pa_doc(
        f'<Role name="web">\n{manage}\n'
        '<ControlOperation><Accept><operation id="6"/></Accept></ControlOperation></Role>'
    )
    e = load_error(pa=pa)
    assert e.line == 4 and message in e.message, str(e)


def test_control_operation_without_manage_vm_is_a_schema_error():
    pa = pa_doc(
        '<Role name="web">\n'
        '<ControlOperation><Accept><operation id="6"/></Accept></ControlOperation>\n</Role>'
    )
    e = load_error(pa=pa)
    assert e.line == 4 and "ControlOperation" in e.message


@pytest.mark.parametrize(
    "name", ["al ice", "al\u00a0ice", "al\u200bice", "alice\u202e", "al\u3000ice"]
)
def test_names_with_white_space_or_invisible_characters_are_refused(name):
    # no-break space, zero-width space, right-to-left override, ideographic space: each would
    # make two names look the same (or one look like another) in a listing
    e = load_error(ua=ua_doc(f'<User name="{name}"/>'))
    assert e.line == 3 and "attribute 'name'" in e.message


def test_names_in_other_scripts_are_fine():
    pol = rbac.loads(ua_doc(user("zoë", "web") + user("ユーザー", "web")), GOOD_PA, OPS)
    assert pol.decide("zoë", 6, "web1") and pol.decide("ユーザー", 6, "web1")


def test_many_problems_at_once():
    ua = ua_doc(
        "\n".join(
            [
                user("a", "nosuch"),
                user("b", "web", expires={"web": "soon"}),
                '<StaticSeparation name="s" cardinality="5">'
                '<Role name="web"/><Role name="x"/></StaticSeparation>',
            ]
        )
    )
    pa = pa_doc(role("web", ["web1"], [6, 77]))
    e = load_error(ua=ua, pa=pa)
    assert [(x.file, x.line) for x in e.errors] == [
        ("pa.xml", 3),
        ("ua.xml", 3),
        ("ua.xml", 4),
        ("ua.xml", 5),
        ("ua.xml", 5),
    ]
    assert str(e).count("\n") == 4


def test_a_comment_anywhere_is_fine():
    pa = pa_doc(
        '<!-- c --><Role name="web"><!-- c --><ManageVM type="individual"><!-- c -->'
        '<VM name="web1"/></ManageVM><!-- c --><ControlOperation><!-- c --><Accept><!-- c -->'
        '<operation id="6"/></Accept></ControlOperation></Role>'
    )
    assert rbac.loads(GOOD_UA, pa, OPS).decide("alice", 6, "web1")


def test_builder_errors_are_collected():
    b = rbac.PolicyBuilder({6: "start"})
    b.add_role("r").grant("r", 7, rbac.AnyObject()).grant("ghost", 6, rbac.AnyObject())
    b.assign("u", "nobody").inherit("r", "nothing").grant("r", 6, "not a selector")
    with pytest.raises(rbac.PolicyError) as ei:
        b.build()
    msgs = [x.message for x in ei.value.errors]
    assert "operation id 7 is not in the catalogue (6)" in msgs
    assert "grant to undefined role 'ghost', which PA does not define" in msgs
    assert "user 'u' is assigned role 'nobody', which PA does not define" in msgs
    assert "role 'r' inherits undefined role 'nothing', which PA does not define" in msgs
    assert "grant to role 'r': 'not a selector' is not a selector" in msgs


def test_compile_policy_helper_uses_the_same_path():
    with pytest.raises(rbac.PolicyError, match=r"pa\.xml:3: operation id 64"):
        compile_policy(user("a", "web"), role("web", ["x"], [64]))


@pytest.mark.parametrize(
    "item",
    [b'<User name="' + b"x" * 11_000_000 + b'"/>', b"<!-- " + b"x" * 11_000_000 + b" -->"],
)
def test_a_giant_item_is_explained_not_left_to_libxml2_jargon(item):
    e = load_error(ua=ua_doc(item.decode()))
    assert e.file == "ua.xml" and e.line == 3
    assert "larger than the 10 MB an item may have" in e.message
    assert "XML_PARSE_HUGE" not in e.message
