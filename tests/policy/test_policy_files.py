"""Malformed and hostile policy files: each refusal says what, where (file:line) and why."""

from __future__ import annotations

import os

import pytest

import policy
from policy import PolicyFileError, Xserr


def _err(text, source="p.xml", **kw) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as ei:
        policy.AcmPolicy.from_xml(text, source=source, **kw)
    return ei.value


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_builder_policy_is_valid(make_xml):
    p = policy.AcmPolicy.from_xml(make_xml(), source="ok.xml")
    assert p.name == "t" and p.bootstrap == "SystemManagement"


def test_xxe_external_entity_is_refused_and_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    text = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>\n'
        '<SecurityPolicyDefinition xmlns="http://www.ibm.com"><PolicyHeader>'
        "<PolicyName>&e;</PolicyName><Version>1.0</Version></PolicyHeader>"
        "</SecurityPolicyDefinition>"
    )
    e = _err(text, "xxe.xml")
    assert e.xserr == Xserr.BAD_XML
    assert e.line == 2
    assert "DOCTYPE" in e.message and "TOP-SECRET" not in str(e)


def test_entity_bomb_is_refused():
    ents = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)]
    text = (
        f'<?xml version="1.0"?>\n<!DOCTYPE x [{"".join(ents)}]>\n'
        '<SecurityPolicyDefinition xmlns="http://www.ibm.com">&l9;</SecurityPolicyDefinition>'
    )
    e = _err(text, "bomb.xml")
    assert e.xserr == Xserr.BAD_XML and "not allowed" in e.message and e.line == 2
    # the same bomb in UTF-16 gets past the byte scan; the parser must still not expand it
    with pytest.raises(PolicyFileError):
        policy.AcmPolicy.from_xml(text.replace("?>", ' encoding="UTF-16"?>', 1).encode("utf-16"))


def test_doctype_hidden_by_utf16_is_still_refused():
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        '<!DOCTYPE x [<!ENTITY e "boom">]>\n'
        '<SecurityPolicyDefinition xmlns="http://www.ibm.com"><PolicyHeader>'
        "<PolicyName>&e;</PolicyName><Version>1.0</Version></PolicyHeader>"
        "</SecurityPolicyDefinition>"
    )
    with pytest.raises(PolicyFileError) as ei:
        policy.AcmPolicy.from_xml(text.encode("utf-16"), source="u16.xml")
    assert ei.value.xserr == Xserr.BAD_XML
    assert "DOCTYPE" in ei.value.message or "entity" in ei.value.message.lower()


def test_size_limit(make_xml):
    big = make_xml().replace("<Version>", "<!--" + "x" * 5000 + "--><Version>")
    e = _err(big, "big.xml", max_bytes=4096)
    assert "limit" in e.message and e.xserr == Xserr.BAD_XML


def test_malformed_xml_reports_line():
    e = _err("<?xml version='1.0'?>\n<SecurityPolicyDefinition>\n<PolicyHeader>\n</Oops>\n")
    assert e.line == 4 and e.message.startswith("malformed XML")
    assert str(e).startswith("p.xml:4: malformed XML")


@pytest.mark.parametrize(
    "root,expect",
    [
        ('<Policy xmlns="http://www.ibm.com"/>', "document element is <Policy>"),
        ('<SecurityPolicyDefinition xmlns="http://evil.example"/>', "'http://evil.example'"),
        ("<SecurityPolicyDefinition/>", "no namespace"),
    ],
)
def test_wrong_root_or_namespace(root, expect):
    e = _err('<?xml version="1.0"?>\n' + root)
    assert expect in e.message and e.line == 2 and e.xserr == Xserr.BAD_XML


def test_schema_violation_names_the_element_and_line(make_xml):
    text = make_xml().replace("<Version>1.0</Version>", "<Version>one</Version>")
    e = _err(text)
    assert "policy schema" in e.message and "Version" in e.message
    assert e.line == _line_of(text, "<Version>one")
    assert "{http://www.ibm.com}" not in e.message


def test_label_using_undefined_type(make_xml):
    text = make_xml(
        vms=[
            ("SystemManagement", ("SystemManagement",), ("SystemManagement",), None),
            ("x", ("nosuch",), ("a",), None),
        ]
    )
    e = _err(text, "u.xml")
    assert e.xserr == Xserr.BAD_LABEL
    assert "'nosuch'" in e.message and "not defined" in e.message
    assert str(e).startswith(f"u.xml:{e.line}:")


def test_bootstrap_that_is_no_vm_label(make_xml):
    e = _err(make_xml(bootstrap="Nobody"))
    assert e.xserr == Xserr.POLICY_INCONSISTENT
    assert "bootstrap='Nobody' is not one of the VM labels" in e.message


def test_bootstrap_unlabeled_refused(make_xml):
    vms = [("__UNLABELED__", ("a",), ("a",), None), ("SystemManagement", ("a",), ("a",), None)]
    e = _err(make_xml(bootstrap="__UNLABELED__", vms=vms))
    assert e.xserr == Xserr.POLICY_INCONSISTENT


@pytest.mark.parametrize(
    "kwargs,xserr,fragment",
    [
        ({"name": "bad:name"}, Xserr.BAD_POLICY_NAME, "contains ':'"),
        ({"name": "../../etc"}, Xserr.BAD_POLICY_NAME, "dot-separated"),
        ({"name": "a..b"}, Xserr.BAD_POLICY_NAME, "dot-separated"),
    ],
)
def test_bad_policy_names(make_xml, kwargs, xserr, fragment):
    e = _err(make_xml(**kwargs))
    assert e.xserr == xserr and fragment in e.message


@pytest.mark.parametrize("bad", ["a:b", "a b", "a,b", "a=b"])
def test_bad_label_names(make_xml, bad):
    vms = [("SystemManagement", ("a",), ("a",), None), (bad, ("a",), ("a",), None)]
    text = make_xml(vms=vms)
    e = _err(text)
    assert e.xserr == Xserr.BAD_LABEL and repr(bad) in e.message
    assert e.line == _line_of(text, f"<Name>{bad}</Name>")


def test_colon_in_resource_label(make_xml):
    e = _err(make_xml(res=[("disk:1", "a", None)]))
    assert e.xserr == Xserr.BAD_LABEL and "':'" in e.message


def test_reserved_label_names(make_xml):
    vms = [("SystemManagement", ("a",), ("a",), None), ("__INACCESSIBLE__", ("a",), ("a",), None)]
    assert "reserved" in _err(make_xml(vms=vms)).message


def test_duplicates_are_all_reported(make_xml):
    text = make_xml(
        ste=("SystemManagement", "a", "a"),
        res=[("r", "a", None), ("r", "a", None)],
        vms=[("SystemManagement", ("a",), ("a",), None), ("SystemManagement", ("a",), (), None)],
    )
    e = _err(text)
    codes = {p.xserr for p in e.problems}
    assert codes == {Xserr.POLICY_HAS_DUPLICATES}
    assert len(e.problems) == 3
    assert len(str(e).splitlines()) == 3


def test_conflict_set_with_undefined_type(make_xml):
    e = _err(make_xml(conflicts=[("C", ("a", "zz"))]))
    assert e.xserr == Xserr.BAD_CONFLICTSET and "'zz'" in e.message


def test_label_from_mutually_conflicting_types(make_xml):
    vms = [
        ("SystemManagement", ("a",), ("SystemManagement",), None),
        ("ab", ("a",), ("a", "b"), None),
    ]
    e = _err(make_xml(vms=vms))
    assert e.xserr == Xserr.BAD_CONFLICTSET and "in conflict with each other" in e.message


def test_resource_label_with_two_types_fails_schema(make_xml):
    text = make_xml().replace(
        "<ResourceLabel><Name>a</Name><SimpleTypeEnforcementTypes><Type>a</Type>",
        "<ResourceLabel><Name>a</Name><SimpleTypeEnforcementTypes><Type>a</Type><Type>b</Type>",
    )
    e = _err(text)
    assert e.xserr == Xserr.BAD_XML and "schema" in e.message


def test_missing_conflict_name_fails_schema(make_xml):
    e = _err(make_xml().replace('<Conflict name="C">', "<Conflict>"))
    assert e.xserr == Xserr.BAD_XML and "name" in e.message


def test_no_subject_labels(make_xml):
    text = make_xml()
    start = text.index("<SubjectLabels")
    end = text.index("</SubjectLabels>") + len("</SubjectLabels>")
    e = _err(text[:start] + text[end:])
    assert e.xserr == Xserr.POLICY_INCONSISTENT and "bootstrap" in e.message


def test_from_file_errors(tmp_path):
    with pytest.raises(PolicyFileError) as ei:
        policy.AcmPolicy.from_file(tmp_path / "missing.xml")
    assert ei.value.xserr == Xserr.FILE_ERROR and "missing.xml" in str(ei.value)
    with pytest.raises(PolicyFileError, match="not a regular file"):
        policy.AcmPolicy.from_file(tmp_path)
    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    with pytest.raises(PolicyFileError, match="not a regular file"):
        policy.AcmPolicy.from_file(fifo)  # must not hang waiting for a writer


def test_from_file_reports_the_path(tmp_path, make_xml):
    f = tmp_path / "x-security_policy.xml"
    f.write_text(make_xml(bootstrap="ghost"))
    with pytest.raises(PolicyFileError) as ei:
        policy.AcmPolicy.from_file(f)
    assert str(ei.value).startswith(f"{f}:")


def test_writer_round_trip(ex):
    for p in ex.values():
        again = policy.AcmPolicy.from_xml(p.to_xml(), source="again.xml")
        assert again == p
        assert again.compile().vm_order == p.compile().vm_order


def test_evolve_validates(ex):
    p = ex["xm-test"]
    with pytest.raises(PolicyFileError, match="bootstrap"):
        p.evolve(bootstrap="nobody")
    q = p.evolve(header=policy.PolicyHeader("xm-test", "2.0"))
    assert q.version == "2.0" and q.vm_labels == p.vm_labels


def test_from_parts_builds_a_valid_policy():
    p = policy.AcmPolicy.from_parts(
        policy.PolicyHeader("gen", "1.0"),
        ste_types=["SystemManagement", "x"],
        chwall_types=["SystemManagement", "x"],
        vm_labels=[
            policy.VmLabel("SystemManagement", ("SystemManagement", "x"), ("SystemManagement",)),
            policy.VmLabel("x", ("x",), ("x",)),
        ],
        resource_labels=[policy.ResourceLabel("rx", "x")],
        bootstrap="SystemManagement",
    )
    assert p.compile().ssidref("x") == 0x00020002
