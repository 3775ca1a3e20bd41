"""Fixtures for the policy tests: the bundled examples and a small XML builder."""

from __future__ import annotations

import pytest

import policy

NS = "http://www.ibm.com"


def build_xml(
    name="t",
    version="1.0",
    *,
    ste=("SystemManagement", "a", "b"),
    chwall=("SystemManagement", "a", "b"),
    conflicts=(("C", ("a", "b")),),
    vms=None,
    res=None,
    bootstrap="SystemManagement",
    from_policy=None,
) -> str:
    """A policy document as text; every argument can be changed to break one thing."""
    if vms is None:
        vms = [("SystemManagement", ste, ("SystemManagement",), None)] + [
            (t, (t,), (t,), None) for t in ste if t != "SystemManagement"
        ]
    if res is None:
        res = [(t, t, None) for t in ste]
    fp = ""
    if from_policy:
        fp = (
            f"<FromPolicy><PolicyName>{from_policy[0]}</PolicyName>"
            f"<Version>{from_policy[1]}</Version></FromPolicy>"
        )

    def types(ts):
        return "".join(f"<Type>{t}</Type>" for t in ts)

    conf = ""
    if conflicts:
        conf = (
            "<ConflictSets>"
            + "".join(f'<Conflict name="{n}">{types(ts)}</Conflict>' for n, ts in conflicts)
            + "</ConflictSets>"
        )

    def frm(f):
        return f' from="{f}"' if f else ""

    vm_xml = "".join(
        f"<VirtualMachineLabel><Name{frm(f)}>{n}</Name>"
        + (f"<SimpleTypeEnforcementTypes>{types(s)}</SimpleTypeEnforcementTypes>" if s else "")
        + (f"<ChineseWallTypes>{types(c)}</ChineseWallTypes>" if c else "")
        + "</VirtualMachineLabel>"
        for n, s, c, f in vms
    )
    res_xml = "".join(
        f"<ResourceLabel><Name{frm(f)}>{n}</Name>"
        f"<SimpleTypeEnforcementTypes><Type>{t}</Type></SimpleTypeEnforcementTypes>"
        "</ResourceLabel>"
        for n, t, f in res
    )
    objects = f"<ObjectLabels>{res_xml}</ObjectLabels>" if res else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<SecurityPolicyDefinition xmlns="{NS}">\n'
        f"<PolicyHeader><PolicyName>{name}</PolicyName><Version>{version}</Version>{fp}"
        "</PolicyHeader>\n"
        f"<SimpleTypeEnforcement><SimpleTypeEnforcementTypes>{types(ste)}"
        "</SimpleTypeEnforcementTypes></SimpleTypeEnforcement>\n"
        f"<ChineseWall><ChineseWallTypes>{types(chwall)}</ChineseWallTypes>{conf}</ChineseWall>\n"
        f'<SecurityLabelTemplate><SubjectLabels bootstrap="{bootstrap}">\n{vm_xml}\n'
        f"</SubjectLabels>{objects}</SecurityLabelTemplate>\n"
        "</SecurityPolicyDefinition>\n"
    )


@pytest.fixture
def make_xml():
    return build_xml


@pytest.fixture(scope="session")
def ex():
    """The bundled example policies by file stem, parsed."""
    return {name: policy.AcmPolicy.from_file(path) for name, path in policy.examples().items()}


@pytest.fixture(scope="session")
def cex(ex):
    """The bundled example policies, compiled."""
    return {name: p.compile() for name, p in ex.items()}
