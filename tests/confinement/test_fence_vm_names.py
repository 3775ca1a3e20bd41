"""Issue 14, item 17: a user could name a VM ``Domain-0`` (shown with dom0's label, skipped by
the ACM sync), and right-to-left, invisible and homoglyph names spoofed ``list``.

Now the host object's name (``Domain-0`` and the configured ``host_object``) is reserved for
everyone, root included, and VM names may not hold what the UA/PA schemas keep out of user
names (controls, format characters such as bidi controls and zero-width characters,
separators other than the plain space), nor right-to-left text, characters displayed as
nothing, compatibility forms, or letters of two scripts.  ``<name>`` is read as libvirt reads
it (all its text, nothing stripped).  Through the use-case layer on the libvirt test driver.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib
from fence_helpers import (
    ROOT,
    audit_records,
    ident,
    run,
    service,
    svt_env,  # noqa: F401 - fixture
)

from secured_virt.confinement import names
from secured_virt.requests import EXIT_OK, EXIT_USAGE

UA = "<UserConfiguration><User name='alice'><UserRole role='Owner'/></User></UserConfiguration>"
PA = (
    "<RolePolicyDefinition><Role name='Owner'><ManageVM type='owned'/><ControlOperation>"
    "<Accept><operation name='define'/><operation name='create'/></Accept>"
    "</ControlOperation></Role></RolePolicyDefinition>"
)


@pytest.fixture
def svc(svt_env):  # noqa: F811
    return service(svt_env, UA, PA, host_object="host-zero")


def xml_named(raw_name: str) -> str:
    return (
        f"<domain type='test'><name>{raw_name}</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )


def names_listed(svc) -> list[str]:
    return [d["name"] for d in run(svc, ROOT, "list", all=True).data["domains"]]


RESERVED = ["Domain-0", "domain-0", "DOMAIN-0", "\uff24omain-0", "host-zero", "HOST-ZERO"]
SPOOFING = [
    "alice\u202eber-bew",  # RIGHT-TO-LEFT OVERRIDE: shows as "aliceweb-reb"
    "\u2067alice\u2069",  # RIGHT-TO-LEFT ISOLATE ... POP DIRECTIONAL ISOLATE
    "alice\u200fweb",  # RIGHT-TO-LEFT MARK
    "\u05d0lice-web",  # a Hebrew letter: right-to-left text
    "alice\u200bweb",  # ZERO WIDTH SPACE
    "alice\u2060web",  # WORD JOINER
    "alice\ufeffweb",  # ZERO WIDTH NO-BREAK SPACE
    "alice\u034fweb",  # COMBINING GRAPHEME JOINER
    "alice\ufe0fweb",  # VARIATION SELECTOR-16
    "alice\u3164web",  # HANGUL FILLER
    "alice\u2028web",  # LINE SEPARATOR
    "alice\u00a0web",  # NO-BREAK SPACE
    "alice\u3000web",  # IDEOGRAPHIC SPACE
    "alice\x85web",  # NEXT LINE (a control character XML lets through)
    "\u0430lice-web",  # a Cyrillic a among Latin letters
    "\uff41lice-web",  # FULLWIDTH a
    "alice-we\u0301b",  # a decomposed accent (not NFC/NFKC)
    "\U000e0061lice",  # a tag character (format)
    "\u0441\u043e\u0441\u043e",  # Cyrillic letters that all look Latin: reads "coco"
    "\u039f\u03a1\u0391-01",  # Greek capitals that read "OPA-01"
    "\u13aa\u13f4\u13df",  # Cherokee letters that read "ABC"
]


@pytest.mark.parametrize("name", RESERVED)
@pytest.mark.parametrize("who", ["alice", "root"])
def test_the_host_object_name_is_reserved_for_everyone(svc, name, who):
    caller = ROOT if who == "root" else ident("alice")
    r = run(svc, caller, "define", xml=xml_named(name), file="vm.xml")
    assert r.status == EXIT_USAGE, r.message
    assert "host object" in r.message
    assert name not in names_listed(svc)


@pytest.mark.parametrize("command", ["define", "create"])
@pytest.mark.parametrize("name", SPOOFING, ids=[ascii(n) for n in SPOOFING])
def test_names_that_do_not_show_what_they_are_are_refused(svc, name, command):
    before = len(audit_records(svc))
    r = run(svc, ident("alice"), command, xml=xml_named(name), file="vm.xml")
    assert r.status == EXIT_USAGE, r.message
    assert "VM name" in r.message
    assert len(audit_records(svc)) == before  # a usage error: nothing to decide
    assert name not in names_listed(svc)


@pytest.mark.parametrize(
    "raw",
    [" vm-x", "vm-x ", "\nvm-x\n", "vm<!-- x -->-x", "vm<b/>-x"],
    ids=["lead", "trail", "newlines", "comment", "child"],
)
def test_the_name_element_is_read_as_libvirt_reads_it(svc, raw):
    r = run(svc, ident("alice"), "define", xml=xml_named(raw), file="vm.xml")
    assert r.status == EXIT_USAGE, r.message
    assert not [n for n in names_listed(svc) if "vm" in n]


@pytest.mark.parametrize(
    "name",
    [
        "web-alice",
        "web server 1",
        "db_01.prod",
        "Ünïcode-vm",
        "サーバー1",
        "Ωμέγα",
        "日本のサーバー",
        "\u0441\u0435\u0440\u0432\u0435\u0440",  # Russian "server": its \u0432 shows Cyrillic
    ],
)
def test_ordinary_names_stay_allowed(svc, name):
    r = run(svc, ident("alice"), "define", xml=xml_named(name), file="vm.xml")
    assert r.status == EXIT_OK, r.message
    assert name in names_listed(svc)


def test_the_rule_itself_explains_itself():
    with pytest.raises(names.VmNameError, match=r"U\+202E .*right-to-left|U\+202E .*format"):
        names.check_vm_name("a\u202eb")
    with pytest.raises(names.VmNameError, match="CYRILLIC, LATIN"):
        names.check_vm_name("\u0430lice")
    with pytest.raises(names.VmNameError, match=r"CYRILLIC letters .* reads as 'coco'"):
        names.check_vm_name("\u0441\u043e\u0441\u043e")
    assert names.check_vm_name("Domain-1") == "Domain-1"
