"""The xl backend: exact argv lists, safe config files, parsing results (xl itself is faked).

``subprocess.run`` is replaced inside the xl backend only (xl_run.run_xl, behind
XlBackend._run, is the one caller); every test then checks, through the ``xl`` fixture, that
each call used the absolute xl path, no shell, stdin from /dev/null, a timeout and an
environment holding only PATH.  Config files are real files in a temporary /etc/xen copy.
"""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from secured_virt.backends import BackendError, NoSuchDomain, open_backend
from secured_virt.backends import xl_backend as xl_backend_module
from secured_virt.backends.xl_backend import XL_ENV, XlBackend, migrate_host
from secured_virt.backends.xl_cfg import XlConfig

from .conftest import SVIRT_NS
from .xlfake import XL, XL_DATA, FakeXl, data

SCRUBBED_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@pytest.fixture
def fake(mocker):
    fake = FakeXl()
    mocker.patch("secured_virt.backends.xl_run.subprocess.run", side_effect=fake)
    yield fake
    for argv, kw in fake.calls:
        assert argv[0] == XL
        assert kw.get("shell", False) is False
        assert kw["env"] == SCRUBBED_ENV
        assert kw["stdin"] is subprocess.DEVNULL
        assert kw["timeout"] > 0
        assert kw["check"] is False


@pytest.fixture
def etc(tmp_path):
    """A copy of the recorded /etc/xen, root-owned (as the tests run) and 0644/0755."""
    etc = tmp_path / "etc-xen"
    shutil.copytree(XL_DATA / "etc-xen", etc)
    os.chmod(etc, 0o755)
    for f in etc.iterdir():
        os.chmod(f, 0o644)
    (etc / "auto").mkdir(mode=0o755)
    return etc


@pytest.fixture
def xl(fake, etc, tmp_path):
    run = tmp_path / "run"
    return XlBackend(xl_path=XL, xl_config_dir=str(etc), xl_transient_dir=str(run))


def cfg_of(etc, name) -> XlConfig:
    return XlConfig((etc / f"{name}.cfg").read_text())


# -- listing ----------------------------------------------------------------------------------
def test_list_running_domains(xl, fake):
    doms = {d.name: d for d in xl.list_domains()}
    assert fake.argvs == [["list"], ["list", "-l"]]
    assert list(doms) == ["Domain-0", "web-01", "db.prod", "build-2", "crashy-4"]
    dom0 = doms["Domain-0"]
    assert dom0.id == 0 and dom0.persistent and dom0.uuid == "00000000-0000-0000-0000-000000000000"
    web = doms["web-01"]
    assert (web.state, web.id, web.mem_kib, web.max_mem_kib, web.vcpus) == (
        "idle",
        3,
        1024 * 1024,
        1024 * 1024,
        2,
    )
    assert web.uuid == "6f1c2f9a-8a3d-4c5e-9b7f-2d1e0a4b5c6d"
    assert web.cpu_time_ns == 88_400_000_000
    assert web.persistent and not web.autostart and web.os_type == "linux"
    assert doms["db.prod"].state == "paused" and doms["db.prod"].os_type == "hvm"
    build = doms["build-2"]
    assert (build.vcpus, build.mem_kib, build.max_mem_kib, build.os_type) == (
        2,
        2 * 1024 * 1024,
        3 * 1024 * 1024,
        "xenpvh",
    )
    crashy = doms["crashy-4"]
    assert crashy.state == "crashed" and crashy.persistent is False


def test_list_with_inactive_adds_only_real_domain_configs(xl):
    doms = xl.list_domains(include_inactive=True)
    assert [d.name for d in doms][-1] == "lab-3"
    lab = doms[-1]
    assert (lab.id, lab.state, lab.persistent, lab.mem_kib, lab.os_type) == (
        None,
        "shut off",
        True,
        512 * 1024,
        "hvm",
    )
    names = {d.name for d in doms}
    assert not names & {"xl", "xlexample", "example.hvm", "mismatch", "something-else"}


def test_list_skips_a_config_others_could_write(xl, etc):
    os.chmod(etc / "lab-3.cfg", 0o666)
    assert "lab-3" not in {d.name for d in xl.list_domains(include_inactive=True)}
    with pytest.raises(BackendError, match="writable by group or others"):
        xl.lookup("lab-3")


def test_lookup_running(xl, fake):
    info = xl.lookup("build-2")
    assert fake.argvs == [["list", "--", "build-2"], ["list", "-l", "--", "build-2"]]
    assert info.state == "running" and info.id == 7 and info.vcpus == 2
    assert info.uuid == "a3c9e8f1-5b2d-4e6a-8c7f-1d0e9b8a7c63"


def test_lookup_defined_but_not_running(xl, fake):
    info = xl.lookup("lab-3")
    assert fake.argvs == [["list", "--", "lab-3"]]
    assert info.state == "shut off" and info.id is None
    assert info.uuid == "c0ffee00-1234-4abc-8def-0123456789ab"


def test_lookup_missing(xl):
    with pytest.raises(NoSuchDomain, match="domain 'ghost' not found"):
        xl.lookup("ghost")


@pytest.mark.parametrize(
    "bad", ["7", "-a", "--all", ".hidden", "a/b", "../etc/passwd", "a b", "x\n", "", None, "a" * 65]
)
def test_bad_names_never_reach_xl(xl, fake, bad):
    for call in (
        lambda: xl.lookup(bad),
        lambda: xl.start(bad),
        lambda: xl.destroy(bad),
        lambda: xl.shutdown(bad),
        lambda: xl.setmem(bad, 1024),
        lambda: xl.get_metadata(bad, SVIRT_NS),
    ):
        with pytest.raises(BackendError) as ei:
            call()
        assert ei.value.code == "invalid-arg"
    assert fake.calls == []


def test_names_with_dots_and_dashes_are_fine(xl, fake):
    fake.on("pause", "--", "db.prod")
    xl.suspend("db.prod")
    assert fake.argvs == [["pause", "--", "db.prod"]]


# -- life cycle -------------------------------------------------------------------------------
def test_start_creates_from_the_config_file(xl, fake, etc):
    fake.on("create", "--", str(etc / "lab-3.cfg"))
    xl.start("lab-3")
    assert fake.argvs == [["domid", "--", "lab-3"], ["create", "--", str(etc / "lab-3.cfg")]]
    assert fake.calls[-1][1]["timeout"] == xl.long_timeout


def test_start_running_domain_is_refused(xl, fake):
    with pytest.raises(BackendError, match="domain 'web-01' is already running"):
        xl.start("web-01")
    assert fake.argvs == [["domid", "--", "web-01"]]


def test_start_without_config(xl, fake):
    with pytest.raises(NoSuchDomain):
        xl.start("ghost")
    with pytest.raises(BackendError, match="crashy-4' has no config file"):
        xl.start("crashy-4")


@pytest.mark.parametrize(
    ("method", "argv"),
    [
        ("shutdown", ["shutdown", "-F", "--", "web-01"]),
        ("reboot", ["reboot", "-F", "--", "web-01"]),
        ("reset", ["trigger", "--", "web-01", "reset"]),
        ("destroy", ["destroy", "--", "web-01"]),
        ("suspend", ["pause", "--", "web-01"]),
        ("resume", ["unpause", "--", "web-01"]),
    ],
)
def test_life_cycle_argv(xl, fake, method, argv):
    fake.on(*argv)
    getattr(xl, method)("web-01")
    assert fake.argvs == [argv]


def test_operation_on_defined_but_stopped_domain(xl, fake):
    fake.on(
        "pause", "--", "lab-3", rc=1, err=data("err-invalid-domain.txt").replace("ghost", "lab-3")
    )
    with pytest.raises(BackendError) as ei:
        xl.suspend("lab-3")
    assert ei.value.code == "operation-failed" and str(ei.value) == "domain 'lab-3' is not running"


def test_operation_on_unknown_domain(xl, fake):
    fake.on("destroy", "--", "ghost", rc=1, err=data("err-invalid-domain.txt"))
    with pytest.raises(NoSuchDomain, match="domain 'ghost' not found"):
        xl.destroy("ghost")


def test_libxl_failure_is_one_clear_line(xl, fake):
    fake.on("destroy", "--", "db.prod", rc=1, err=data("err-destroy-failed.txt"))
    with pytest.raises(BackendError) as ei:
        xl.destroy("db.prod")
    assert str(ei.value) == "cannot destroy domain 'db.prod': Non-existant domain"


def test_no_hypervisor_is_a_connection_error(xl, fake):
    fake.on("list", rc=1, err=data("err-no-xen.txt"))
    with pytest.raises(BackendError) as ei:
        xl.list_domains()
    assert ei.value.code == "connection" and "Xen dom0" in str(ei.value)


def test_missing_xl_binary(tmp_path):
    backend = XlBackend(xl_path=str(tmp_path / "no-xl"), xl_config_dir=str(tmp_path))
    with pytest.raises(BackendError) as ei:
        backend.list_domains()
    assert ei.value.code == "connection" and "no such file" in str(ei.value)


def test_timeout(xl, mocker):
    mocker.patch(
        "secured_virt.backends.xl_run.subprocess.run",
        side_effect=subprocess.TimeoutExpired(["xl"], 60),
    )
    with pytest.raises(BackendError) as ei:
        xl.shutdown("web-01")
    assert ei.value.code == "timeout" and "`xl shutdown`" in str(ei.value)


def test_relative_xl_path_is_refused(tmp_path):
    with pytest.raises(BackendError, match="absolute"):
        XlBackend(xl_path="xl", xl_config_dir=str(tmp_path))


def test_run_really_uses_argv_and_scrubbed_env(tmp_path, monkeypatch):
    """Without the fake: a script standing in for xl prints its argv and environment."""
    script = tmp_path / "xl"
    script.write_text('#!/bin/sh\nfor a in "$@"; do echo "ARG:$a"; done\nenv\n')
    script.chmod(0o755)
    monkeypatch.setenv("LD_PRELOAD", "/tmp/evil.so")
    monkeypatch.setenv("XL_EVIL", "1")
    backend = XlBackend(xl_path=str(script), xl_config_dir=str(tmp_path))
    r = backend._run(["pause", "--", "we$(id)ird;name"])
    args = [ln[4:] for ln in r.stdout.splitlines() if ln.startswith("ARG:")]
    assert args == ["pause", "--", "we$(id)ird;name"]
    env = dict(
        ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln and not ln.startswith("ARG:")
    )
    env.pop("PWD", None)
    env.pop("SHLVL", None)
    env.pop("_", None)
    assert env == XL_ENV


_SPAWNERS = {
    "subprocess": {"run", "Popen", "call", "check_call", "check_output", "getoutput"},
    "os": {"system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp"},
}


def _spawn_calls(path) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in _SPAWNERS:
            calls += [f"from {node.module} import {a.name}" for a in node.names]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            mod, attr = node.func.value.id, node.func.attr
            if attr in _SPAWNERS.get(mod, ()) or (
                mod == "os" and attr.startswith(("exec", "spawn"))
            ):
                calls.append(f"{mod}.{attr}")
    return calls


def test_only_xl_run_starts_processes():
    """The rules above hold for every xl call only while xl_run is the one module spawning."""
    backends = Path(xl_backend_module.__file__).parent
    found = {p.name: _spawn_calls(p) for p in sorted(backends.glob("xl_*.py"))}
    assert found.pop("xl_run.py") == ["subprocess.run"]
    assert {name: calls for name, calls in found.items() if calls} == {}


# -- save / restore ---------------------------------------------------------------------------
def test_save_argv(xl, fake, tmp_path):
    image = tmp_path / "web-01.save"
    shutil.copy(XL_DATA / "web-01.save", image)  # what xl would have written
    fake.on("save", "--", "web-01", str(image))
    xl.save("web-01", str(image))  # then the label is stamped in (tests/seeds/test_xl_travel)
    assert [a for a in fake.argvs if a[0] == "save"] == [["save", "--", "web-01", str(image)]]


def test_save_relative_path_refused(xl, fake):
    with pytest.raises(BackendError, match="absolute"):
        xl.save("web-01", "web-01.save")
    assert fake.calls == []


def test_restore(xl, fake, tmp_path):
    image = tmp_path / "web-01.save"
    shutil.copy(XL_DATA / "web-01.save", image)
    fake.running.pop("web-01")
    fake.on("restore", "--", str(image))
    assert xl.restore(str(image)) == "web-01"
    assert fake.argvs == [["domid", "--", "web-01"], ["restore", "--", str(image)]]


def test_restore_of_running_domain_refused(xl, fake):
    with pytest.raises(BackendError, match="domain 'web-01' is already running"):
        xl.restore(str(XL_DATA / "web-01.save"))
    assert fake.argvs == [["domid", "--", "web-01"]]


def test_saved_image_xml_has_name_uuid_and_label_from_config(xl, fake):
    root = etree.fromstring(xl.saved_image_xml(str(XL_DATA / "web-01.save")).encode())
    assert root.findtext("name") == "web-01"
    assert root.findtext("uuid") == "6f1c2f9a-8a3d-4c5e-9b7f-2d1e0a4b5c6d"
    vm = root.find(f"metadata/{{{SVIRT_NS}}}vm")
    assert vm.findtext(f"{{{SVIRT_NS}}}owner") == "alice"
    assert vm.find(f"{{{SVIRT_NS}}}label").get("name") == "dom_Fun"
    assert fake.calls == []


def test_saved_image_xml_rejects_non_images(xl, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(BackendError, match="not an xl save image"):
        xl.saved_image_xml(str(junk))


# -- define / undefine / create / dumpxml -----------------------------------------------------
NEW_XML = f"""<domain type='xen'>
  <name>erin-1</name>
  <metadata><svirt:vm xmlns:svirt="{SVIRT_NS}"><svirt:owner>erin</svirt:owner>
    <svirt:label policy="example.client_v1" name="dom_Fun"/></svirt:vm></metadata>
  <memory unit='MiB'>768</memory>
  <vcpu>2</vcpu>
  <os><type>hvm</type></os>
  <on_crash>preserve</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/xen/images/erin-1.qcow2'/><target dev='xvda'/></disk>
    <interface type='bridge'><mac address='00:16:3e:00:00:e1'/><source bridge='xenbr0'/>
      <model type='e1000'/></interface>
  </devices>
</domain>"""


def test_define_writes_a_config_file(xl, fake, etc):
    assert xl.define(NEW_XML) == "erin-1"
    path = etc / "erin-1.cfg"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()
    cfg = XlConfig(path.read_text())
    assert cfg.get("name") == "erin-1" and cfg.get("type") == "hvm"
    assert cfg.get("memory") == 768 and cfg.get("vcpus") == 2
    assert cfg.get("disk") == [
        "format=qcow2,vdev=xvda,access=rw,target=/var/lib/xen/images/erin-1.qcow2"
    ]
    assert cfg.get("vif") == ["mac=00:16:3e:00:00:e1,bridge=xenbr0,model=e1000"]
    assert cfg.get("on_crash") == "preserve"
    assert cfg.get("svirt_owner") == "erin"
    assert cfg.get("access_control") == ["policy=example.client_v1,label=dom_Fun"]
    assert len(cfg.get("uuid")) == 36  # generated when the XML has none
    assert [p.name for p in etc.iterdir() if p.name.endswith(".tmp")] == []
    assert fake.calls == []


def test_define_existing_keeps_unmanaged_settings(xl, etc):
    xml = xl.dumpxml("db.prod", inactive=True).replace(
        '<currentMemory unit="KiB">4194304<', '<currentMemory unit="KiB">2097152<'
    )
    xl.define(xml)
    text = (etc / "db.prod.cfg").read_text()
    assert text.startswith("# Production database")
    assert 'serial = "pty"' in text and "vnc = 0" in text
    cfg = XlConfig(text)
    assert cfg.get("memory") == 2048 and cfg.get("maxmem") == 4096
    assert "builder" not in cfg and cfg.get("type") == "hvm"


def test_define_refuses_native_config_and_unsafe_xml(xl, etc):
    with pytest.raises(BackendError, match="takes a libvirt-style domain XML"):
        xl.define('name = "x"\nmemory = 128\n')
    with pytest.raises(BackendError, match="invalid Xen domain name"):
        xl.define(NEW_XML.replace("<name>erin-1</name>", "<name>../../evil</name>"))
    with pytest.raises(BackendError, match="pass-through"):
        xl.define(NEW_XML.replace("<devices>", "<devices><hostdev/>"))
    assert not (etc / "erin-1.cfg").exists()


def test_define_refuses_untrusted_directory(xl, etc):
    os.chmod(etc, 0o777)
    try:
        with pytest.raises(BackendError, match="writable by group or others"):
            xl.define(NEW_XML)
    finally:
        os.chmod(etc, 0o755)


def test_undefine_removes_config_and_autostart(xl, etc):
    xl.set_autostart("lab-3", True)
    xl.undefine("lab-3")
    assert not (etc / "lab-3.cfg").exists()
    assert not os.path.lexists(etc / "auto" / "lab-3.cfg")
    with pytest.raises(NoSuchDomain):
        xl.undefine("lab-3")


def test_undefine_transient_says_so(xl):
    with pytest.raises(BackendError, match="transient"):
        xl.undefine("crashy-4")


def test_create_runs_a_transient_config(xl, fake, tmp_path):
    path = tmp_path / "run" / "erin-1.cfg"
    fake.on("create", "--", str(path))
    assert xl.create(NEW_XML) == "erin-1"
    assert fake.argvs == [["domid", "--", "erin-1"], ["create", "--", str(path)]]
    assert XlConfig(path.read_text()).get("svirt_owner") == "erin"
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700


def test_create_failure_leaves_no_transient_config(xl, fake, tmp_path):
    path = tmp_path / "run" / "erin-1.cfg"
    fake.on("create", "--", str(path), rc=1, err=data("err-create-exists.txt"))
    with pytest.raises(BackendError) as ei:
        xl.create(NEW_XML)
    assert (
        str(ei.value)
        == "cannot create domain 'erin-1': Domain with name \"web-01\" already exists."
    )
    assert not path.exists()


def test_dumpxml_running_from_xl_and_metadata_from_config(xl, fake):
    root = etree.fromstring(xl.dumpxml("web-01").encode())
    assert fake.argvs == [["domid", "--", "web-01"], ["list", "-l", "--", "web-01"]]
    assert root.get("id") == "3" and root.get("type") == "xen"
    assert root.findtext("os/type") == "linux"
    assert root.find("devices/disk/source").get("dev") == "/dev/vg0/web-01"
    assert root.find(f"metadata/{{{SVIRT_NS}}}vm/{{{SVIRT_NS}}}label").get("name") == "dom_Fun"


def test_dumpxml_inactive_from_config(xl):
    root = etree.fromstring(xl.dumpxml("lab-3").encode())
    assert root.get("id") is None
    assert root.find("devices/disk/source").get("file") == (
        "/var/lib/xen/images/lab-3,with,commas.qcow2"
    )
    assert root.find(f"metadata/{{{SVIRT_NS}}}vm").findtext(f"{{{SVIRT_NS}}}owner") == "carol"


def test_dumpxml_missing(xl):
    with pytest.raises(NoSuchDomain):
        xl.dumpxml("ghost")


# -- resources --------------------------------------------------------------------------------
def test_setmem_live(xl, fake):
    fake.on("mem-set", "--", "web-01", "512m")
    xl.setmem("web-01", 512 * 1024)
    assert fake.argvs == [["mem-set", "--", "web-01", "512m"]]


def test_setmem_live_odd_size_in_kib(xl, fake):
    fake.on("mem-set", "--", "web-01", "524289k")
    xl.setmem("web-01", 524289)
    assert fake.argvs == [["mem-set", "--", "web-01", "524289k"]]


def test_setmem_live_and_config(xl, fake, etc):
    fake.on("mem-set", "--", "web-01", "768m")
    xl.setmem("web-01", 768 * 1024, live=True, config=True)
    assert fake.argvs == [["mem-set", "--", "web-01", "768m"]]
    assert cfg_of(etc, "web-01").get("memory") == 768


def test_setmem_current_on_stopped_domain_edits_config(xl, fake, etc):
    xl.setmem("lab-3", 1024 * 1024, live=False, config=False)
    assert fake.argvs == [["domid", "--", "lab-3"]]
    assert cfg_of(etc, "lab-3").get("memory") == 1024


def test_setmem_config_checks(xl, etc):
    with pytest.raises(BackendError, match="not a whole number of MiB"):
        xl.setmem("lab-3", 1000, live=False, config=True)
    with pytest.raises(BackendError, match="above its maximum"):
        xl.setmem("build-2", 4096 * 1024, live=False, config=True)
    assert cfg_of(etc, "build-2").get("memory") == 2048


def test_setmaxmem(xl, fake, etc):
    xl.setmaxmem("lab-3", 2048 * 1024)
    assert cfg_of(etc, "lab-3").get("maxmem") == 2048
    fake.on("mem-max", "--", "web-01", "2048m")
    xl.setmaxmem("web-01", 2048 * 1024, config=False)
    assert fake.argvs == [["mem-max", "--", "web-01", "2048m"]]


def test_setvcpus(xl, fake, etc):
    fake.on("vcpu-set", "--", "build-2", "3")
    xl.setvcpus("build-2", 3)
    assert fake.argvs == [["vcpu-set", "--", "build-2", "3"]]
    xl.setvcpus("build-2", 4, live=False, config=True)
    assert cfg_of(etc, "build-2").get("vcpus") == 4
    with pytest.raises(BackendError, match="its maximum is 4"):
        xl.setvcpus("build-2", 5, live=False, config=True)


@pytest.mark.parametrize("bad", [0, -1, "512", 2.5, True])
def test_bad_sizes(xl, fake, bad):
    with pytest.raises(BackendError) as ei:
        xl.setmem("web-01", bad)
    assert ei.value.code == "invalid-arg"
    assert fake.calls == []


# -- devices ----------------------------------------------------------------------------------
def test_attach_disk_live_argv(xl, fake):
    spec = "format=raw,vdev=xvdb,access=rw,target=/var/lib/xen/images/extra.img"
    fake.on("block-attach", "--", "web-01", spec)
    xl.attach_disk("web-01", "/var/lib/xen/images/extra.img", "xvdb")
    assert fake.argvs == [["block-attach", "--", "web-01", spec]]


def test_attach_block_readonly_disk_argv(xl, fake):
    spec = "format=raw,vdev=xvdc,access=ro,backendtype=phy,target=/dev/vg0/shared"
    fake.on("block-attach", "--", "web-01", spec)
    xl.attach_disk("web-01", "/dev/vg0/shared", "xvdc", type="block", mode="readonly")
    assert fake.argvs[-1] == ["block-attach", "--", "web-01", spec]


def test_attach_disk_config(xl, fake, etc):
    xl.attach_disk("lab-3", "/srv/data,1.img", "xvdb", subdriver="qcow2", live=False, config=True)
    assert cfg_of(etc, "lab-3").get("disk")[-1] == (
        "format=qcow2,vdev=xvdb,access=rw,target=/srv/data,1.img"
    )
    assert "/srv/data,1.img" in xl.disk_sources("lab-3")
    with pytest.raises(BackendError, match="target xvdb already exists"):
        xl.attach_disk("lab-3", "/srv/other.img", "xvdb", live=False, config=True)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"target": "xvdb,target=/etc/shadow"}, "invalid-arg"),
        ({"mode": "shareable"}, "unsupported"),
        ({"type": "network"}, "invalid-arg"),
        ({"subdriver": "raw,access=rw"}, "invalid-arg"),
        ({"source": "/a\nb"}, "invalid-arg"),
    ],
)
def test_attach_disk_refusals(xl, fake, kwargs, code):
    args = {"source": "/srv/x.img", "target": "xvdb", **kwargs}
    source, target = args.pop("source"), args.pop("target")
    with pytest.raises(BackendError) as ei:
        xl.attach_disk("web-01", source, target, **args)
    assert ei.value.code == code
    assert fake.calls == []


def test_detach_disk(xl, fake, etc):
    fake.on("block-detach", "--", "web-01", "xvda")
    xl.detach_disk("web-01", "xvda")
    assert fake.argvs == [["block-detach", "--", "web-01", "xvda"]]
    xl.detach_disk("db.prod", "xvdb", live=False, config=True)
    assert [d.split(",")[1] for d in cfg_of(etc, "db.prod").get("disk")] == ["vdev=xvda"]
    with pytest.raises(BackendError, match="has no disk with target 'xvdz'"):
        xl.detach_disk("db.prod", "xvdz", live=False, config=True)


def test_attach_interface(xl, fake, etc):
    fake.on(
        "network-attach", "--", "web-01", "mac=00:16:3e:00:00:02", "bridge=xenbr1", "model=e1000"
    )
    xl.attach_interface("web-01", "bridge", "xenbr1", mac="00:16:3E:00:00:02", model="e1000")
    assert fake.argvs == [
        ["network-attach", "--", "web-01", "mac=00:16:3e:00:00:02", "bridge=xenbr1", "model=e1000"]
    ]
    xl.attach_interface("lab-3", "bridge", "xenbr1", live=False, config=True)
    assert cfg_of(etc, "lab-3").get("vif") == ["bridge=xenbr0", "bridge=xenbr1"]
    assert xl.interface_sources("lab-3") == [("bridge", "xenbr0"), ("bridge", "xenbr1")]


def test_attach_interface_refusals(xl, fake):
    with pytest.raises(BackendError) as ei:
        xl.attach_interface("web-01", "network", "default")
    assert ei.value.code == "unsupported" and "bridge" in str(ei.value)
    with pytest.raises(BackendError, match="invalid bridge name"):
        xl.attach_interface("web-01", "bridge", "br0,script=/tmp/evil")
    assert fake.calls == []


def test_detach_interface_live_finds_the_only_mac(xl, fake):
    fake.on("network-detach", "--", "web-01", "00:16:3e:5a:10:01")
    xl.detach_interface("web-01", "bridge")
    assert fake.argvs == [
        ["list", "-l", "--", "web-01"],
        ["network-detach", "--", "web-01", "00:16:3e:5a:10:01"],
    ]


def test_detach_interface_ambiguous_needs_mac(xl, fake):
    with pytest.raises(BackendError, match="2 bridge interfaces: give the MAC"):
        xl.detach_interface("build-2", "bridge")
    fake.on("network-detach", "--", "build-2", "00:16:3e:5a:30:02")
    xl.detach_interface("build-2", "bridge", mac="00:16:3e:5a:30:02")
    assert fake.argvs[-1] == ["network-detach", "--", "build-2", "00:16:3e:5a:30:02"]


def test_detach_interface_config(xl, etc):
    xl.detach_interface("build-2", "bridge", mac="00:16:3e:5a:30:01", live=False, config=True)
    assert cfg_of(etc, "build-2").get("vif") == ["mac=00:16:3e:5a:30:02,bridge=xenbr0"]


def test_sources_running_and_stopped(xl):
    assert xl.disk_sources("db.prod") == [
        "/var/lib/xen/images/db.prod.qcow2",
        "/dev/vg0/db-data",
    ]
    assert xl.interface_sources("db.prod") == [("bridge", "xenbr1")]
    assert xl.disk_sources("lab-3") == ["/var/lib/xen/images/lab-3,with,commas.qcow2"]


# -- migration --------------------------------------------------------------------------------
def _rune(host: str) -> str:
    """The transport to secured-virt's receiver (xl_migrate; tests/seeds/test_xl_migrate_labels)."""
    return (
        f"exec /usr/bin/ssh -o BatchMode=yes -- {host} '/usr/local/sbin/svirt-xl-receive "
        "--name=web-01 --uuid=6f1c2f9a-8a3d-4c5e-9b7f-2d1e0a4b5c6d --owner=alice "
        "--label-policy=example.client_v1 --label=dom_Fun --disk=phy:/dev/vg0/web-01'"
    )


def test_migrate_argv_and_progress(xl, fake):
    fake.on("migrate", "-s", "", "--", "web-01", _rune("xen2.example.org"))
    calls = []
    xl.migrate(
        "web-01",
        "xen+ssh://xen2.example.org/",
        live=True,
        progress=lambda d, t: calls.append((d, t)),
    )
    (i,) = [i for i, a in enumerate(fake.argvs) if a[0] == "migrate"]  # then `xl list`s
    assert fake.argvs[i] == ["migrate", "-s", "", "--", "web-01", _rune("xen2.example.org")]
    assert fake.calls[i][1]["timeout"] == xl.long_timeout
    assert calls == [(0, 1024 * 1024 * 1024), (1024 * 1024 * 1024, 1024 * 1024 * 1024)]


def test_migrate_undefine_source(xl, fake, etc):
    fake.on("migrate", "-s", "", "--", "web-01", _rune("10.0.0.2"))
    xl.migrate("web-01", "10.0.0.2", undefine_source=True)
    assert not (etc / "web-01.cfg").exists()


@pytest.mark.parametrize(
    "dest",
    [
        "host; rm -rf /",
        "$(id)",
        "`id`",
        "-oProxyCommand=sh",
        "root@host",
        "ssh://root@host/",
        "xen+ssh://host:2222/",
        "host name",
        "host\nxl destroy web-01",
        "",
        "xen+ssh://host/system?no_verify=1",
    ],
)
def test_migrate_hosts_that_a_shell_could_misread_are_refused(xl, fake, dest):
    with pytest.raises(BackendError) as ei:
        xl.migrate("web-01", dest)
    assert ei.value.code == "invalid-arg"
    assert fake.calls == []


@pytest.mark.parametrize(
    ("dest", "host"),
    [
        ("xen2", "xen2"),
        ("xen+ssh://xen2.lan/system", "xen2.lan"),
        ("ssh://192.168.1.9", "192.168.1.9"),
    ],
)
def test_migrate_host_forms(dest, host):
    assert migrate_host(dest) == host


def test_migrate_persistent_is_unsupported(xl, fake):
    with pytest.raises(BackendError) as ei:
        xl.migrate("web-01", "xen2", persistent=True)
    assert ei.value.code == "unsupported"
    assert fake.calls == []


# -- autostart, snapshots, console, host ------------------------------------------------------
def test_autostart_symlink(xl, etc):
    assert xl.get_autostart("web-01") is False
    xl.set_autostart("web-01", True)
    link = etc / "auto" / "web-01.cfg"
    assert link.is_symlink() and os.readlink(link) == str(etc / "web-01.cfg")
    assert xl.get_autostart("web-01") is True
    assert {d.name: d.autostart for d in xl.list_domains()}["web-01"] is True
    xl.set_autostart("web-01", False)
    assert not os.path.lexists(link)


def test_autostart_needs_a_config(xl):
    with pytest.raises(BackendError, match="no config file"):
        xl.set_autostart("crashy-4", True)
    with pytest.raises(NoSuchDomain):
        xl.get_autostart("ghost")


def test_snapshots_are_unsupported(xl, fake):
    for call in (
        lambda: xl.snapshot_create_as("web-01", "s1"),
        lambda: xl.snapshot_list("web-01"),
        lambda: xl.snapshot_revert("web-01", "s1"),
        lambda: xl.snapshot_delete("web-01", "s1"),
    ):
        with pytest.raises(BackendError) as ei:
            call()
        assert ei.value.code == "unsupported" and "xl has no snapshots" in str(ei.value)
    assert fake.calls == []


def test_console_is_left_to_xl_console(xl, fake):
    assert xl.console_argv("web-01") == [XL, "console", "--", "web-01"]
    with pytest.raises(BackendError) as ei:
        xl.open_console("web-01")
    assert ei.value.code == "unsupported"
    assert f"{XL} console -- web-01" in str(ei.value)


def test_hostinfo(xl, fake):
    info = xl.hostinfo()
    assert fake.argvs == [["info"]]
    assert info["backend"] == "xl" and info["hypervisor"] == "Xen"
    assert info["hypervisor_version"] == "4.17.3-pre" and info["hostname"] == "xenhost1"
    assert (info["cpus"], info["sockets"], info["cores"], info["threads"]) == (8, 1, 4, 2)
    assert info["memory_kib"] == 32636 * 1024 and info["mhz"] == 2394


def test_open_backend_xl(etc):
    b = open_backend("xl", None, xl_path="/opt/xen/bin/xl", xl_config_dir=str(etc))
    assert isinstance(b, XlBackend) and b.name == "xl"
    assert b.xl_path == "/opt/xen/bin/xl" and b.config_dir == etc
    b.close()
    b = open_backend("xl", None, xl_path=None, xl_config_dir=None)
    assert b.xl_path == "/usr/sbin/xl" and str(b.config_dir) == "/etc/xen"


# -- metadata (owner and ACM label in the config file) ----------------------------------------
def read_meta(fragment):
    root = etree.fromstring(fragment.encode())
    lab = root.find(f"{{{SVIRT_NS}}}label")
    return (
        root.findtext(f"{{{SVIRT_NS}}}owner"),
        (lab.get("policy"), lab.get("name")) if lab is not None else None,
    )


def test_get_metadata_from_config(xl):
    assert read_meta(xl.get_metadata("web-01", SVIRT_NS)) == (
        "alice",
        ("example.client_v1", "dom_Fun"),
    )
    assert read_meta(xl.get_metadata("build-2", SVIRT_NS)) == ("bob", None)
    assert xl.get_metadata("crashy-4", SVIRT_NS) is None  # running, no config
    assert xl.get_metadata("web-01", "urn:other") is None
    with pytest.raises(NoSuchDomain):
        xl.get_metadata("ghost", SVIRT_NS)


def test_set_metadata_writes_access_control_line(xl, etc):
    frag = (
        f'<svirt:vm xmlns:svirt="{SVIRT_NS}"><svirt:owner>carol</svirt:owner>'
        '<svirt:label policy="example.client_v1" name="dom_Lab"/></svirt:vm>'
    )
    xl.set_metadata("lab-3", frag, "svirt", SVIRT_NS)
    text = (etc / "lab-3.cfg").read_text()
    assert 'access_control = ["policy=example.client_v1,label=dom_Lab"]\n' in text
    assert text.startswith("# Carol's lab machine")
    assert read_meta(xl.get_metadata("lab-3", SVIRT_NS)) == (
        "carol",
        ("example.client_v1", "dom_Lab"),
    )


def test_set_metadata_none_removes_both_lines(xl, etc):
    xl.set_metadata("web-01", None, "svirt", SVIRT_NS)
    cfg = cfg_of(etc, "web-01")
    assert "access_control" not in cfg and "svirt_owner" not in cfg
    assert xl.get_metadata("web-01", SVIRT_NS) is None


def test_set_metadata_unqualified_fragment(xl):
    xl.set_metadata("lab-3", "<vm><owner>dave</owner></vm>", "svirt", SVIRT_NS)
    assert read_meta(xl.get_metadata("lab-3", SVIRT_NS)) == ("dave", None)


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ('<vm><label policy="p,label=x" name="l"/></vm>', "invalid ACM policy name"),
        ('<vm><label policy="p" name="l\']"/></vm>', "invalid ACM label name"),
        ("<vm><owner>bad owner</owner></vm>", "invalid owner name"),
        ("<vm><extra/></vm>", "only <owner> and <label>"),
        ("<other/>", "expected secured-virt's <vm>"),
        ("<vm>", "not well-formed"),
    ],
)
def test_set_metadata_validates(xl, etc, fragment, message):
    before = (etc / "lab-3.cfg").read_text()
    with pytest.raises(BackendError, match=message):
        xl.set_metadata("lab-3", fragment, "svirt", SVIRT_NS)
    assert (etc / "lab-3.cfg").read_text() == before


def test_set_metadata_other_namespace_unsupported(xl):
    with pytest.raises(BackendError) as ei:
        xl.set_metadata("lab-3", "<x/>", "x", "urn:other")
    assert ei.value.code == "unsupported"


def test_set_metadata_on_transient_running_domain(xl, fake, tmp_path):
    fake.on("create", "--", str(tmp_path / "run" / "erin-1.cfg"))
    xl.create(NEW_XML)
    fake.running["erin-1"] = 12
    xl.set_metadata("erin-1", "<vm><owner>frank</owner></vm>", "svirt", SVIRT_NS)
    assert read_meta(xl.get_metadata("erin-1", SVIRT_NS)) == ("frank", None)
    fake.on("destroy", "--", "erin-1")
    xl.destroy("erin-1")
    assert not (tmp_path / "run" / "erin-1.cfg").exists()


# -- config file safety -----------------------------------------------------------------------
def test_symlinked_config_is_refused(xl, etc, tmp_path):
    target = tmp_path / "elsewhere.cfg"
    target.write_text('name = "evil"\nmemory = 64\n')
    (etc / "evil.cfg").symlink_to(target)
    with pytest.raises(BackendError, match="symbolic link"):
        xl.lookup("evil")


def test_config_owned_by_someone_else_is_refused(xl, etc):
    os.chown(etc / "lab-3.cfg", 65534, 65534)
    with pytest.raises(BackendError, match="owned by uid 65534, not root"):
        xl.start("lab-3")


def test_broken_config_names_file_and_line(xl, etc):
    (etc / "lab-3.cfg").write_text('name = "lab-3"\nmemory = = 5\n')
    with pytest.raises(BackendError) as ei:
        xl.lookup("lab-3")
    assert f"{etc}/lab-3.cfg:2:" in str(ei.value)


def test_failing_progress_callback_does_not_undo_a_migration(xl, fake, etc):
    fake.on("migrate", "-s", "", "--", "web-01", _rune("xen2"))

    def broken(done, total):
        raise OSError("client went away")

    xl.migrate("web-01", "xen2", undefine_source=True, progress=broken)
    assert ["migrate", "-s", "", "--", "web-01", _rune("xen2")] in fake.argvs
    assert not (etc / "web-01.cfg").exists()


@pytest.mark.parametrize("option", ["xl_config_dir", "xl_transient_dir"])
def test_directories_that_xl_create_would_misread_are_refused(option):
    # `xl create -- /etc/xen=x/a.cfg` would take the operand for a config setting
    with pytest.raises(BackendError, match="without '='"):
        XlBackend(**{option: "/etc/xen=x"})
    with pytest.raises(BackendError, match="absolute"):
        XlBackend(**{option: "relative/dir"})


# -- pinning ----------------------------------------------------------------------------------
def test_pinned_verifies_the_uuid_before_acting(xl, fake, mocker):
    """xl addresses domains by name, so the pin is a UUID check when the block starts."""
    from secured_virt.backends.base import DomainChanged

    checked = xl.lookup("web-01").uuid
    with xl.pinned("web-01", checked):
        pass
    with (
        pytest.raises(DomainChanged, match="no longer the VM with UUID 1234"),
        xl.pinned("web-01", "1234"),
    ):
        pytest.fail("the block must not run when the UUID differs")
    # gone entirely (neither running nor defined): as with libvirt's pins the block runs,
    # since restore brings the checked image's domain into being under that name on a host
    # that never saw it (tests/seeds/test_xl_labels_travel.py); anything else addressing
    # the name fails "no such domain"
    mocker.patch.object(xl, "lookup", side_effect=NoSuchDomain("web-01"))
    with xl.pinned("web-01", checked):
        pass
