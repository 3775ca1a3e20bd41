"""What a non-root user may put in a domain definition: nothing that names a host file, host
device or host socket (libvirt runs as root and hands what it names to QEMU, swtpm, virtlogd...).

Each refused case marks the element that must be refused with ``<!--refused-->``; the error
must name that element and its line.  Root (``privileged=True``) may still use all of them.
"""

import re

import pytest

from secured_virt.confinement import vmmeta

MARK = "<!--refused-->"


def domain(devices: str = "", *, os: str = "", top: str = "") -> str:
    return (
        "<domain type='kvm'>\n<name>web1</name>\n<memory>1048576</memory>\n"
        f"<os>\n<type>hvm</type>\n{os}</os>\n{top}<devices>\n{devices}\n</devices>\n</domain>"
    )


QEMU_NS = "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"

# (where the fragment goes, fragment, element refused, part of the reason)
REFUSED = [
    # TPM: the host's TPM, an outside emulator's socket, a state path of the user's choosing
    (
        "devices",
        f"<tpm model='tpm-tis'>\n{MARK}<backend type='passthrough'>\n"
        "<device path='/dev/tpm0'/>\n</backend>\n</tpm>",
        "backend",
        "host's own TPM",
    ),
    (
        "devices",
        f"<tpm model='tpm-crb'>\n{MARK}<backend type='external'>\n"
        "<source type='unix' mode='connect' path='/run/other/swtpm.sock'/>\n</backend>\n</tpm>",
        "backend",
        "TPM emulator",
    ),
    (
        "devices",
        f"<tpm model='tpm-crb'>\n<backend type='emulator' version='2.0'>\n"
        f"{MARK}<source type='dir' path='/etc'/>\n</backend>\n</tpm>",
        "source",
        "TPM's state",
    ),
    # input devices of the host: a keylogger
    (
        "devices",
        f"{MARK}<input type='passthrough' bus='virtio'>\n"
        "<source evdev='/dev/input/event1'/>\n</input>",
        "input",
        "host input device",
    ),
    (
        "devices",
        f"{MARK}<input type='evdev'>\n<source dev='/dev/input/event0' grab='all'/>\n</input>",
        "input",
        "host input device",
    ),
    # a host file as guest memory
    (
        "devices",
        "<memory model='nvdimm'>\n<source>\n"
        f"{MARK}<path>/etc/shadow</path>\n</source>\n"
        "<target><size unit='KiB'>524288</size><node>0</node></target>\n</memory>",
        "path",
        "guest memory",
    ),
    (
        "devices",
        "<memory model='virtio-pmem' access='shared'>\n<source>\n"
        f"{MARK}<path>/dev/sda</path>\n</source>\n"
        "<target><size unit='KiB'>524288</size></target>\n</memory>",
        "path",
        "guest memory",
    ),
    # network backends that are host devices or host sockets
    *[
        (
            "devices",
            f"{MARK}<interface type='{itype}'>\n{source}\n</interface>",
            "interface",
            why,
        )
        for itype, source, why in [
            ("vhostuser", "<source type='unix' path='/run/x.sock' mode='server'/>", "vhost-user"),
            ("vdpa", "<source dev='/dev/vhost-vdpa-0'/>", "vDPA"),
            ("hostdev", "<source><address type='pci' bus='0x06' slot='0x02'/></source>", "pass"),
            ("direct", "<source dev='eth0' mode='bridge'/>", "macvtap"),
            ("user", "<ip family='ipv4' address='10.0.2.0' prefix='24'/>", "loopback"),
            ("server", "<source address='127.0.0.1' port='5558'/>", "QEMU socket networking"),
            ("client", "<source address='127.0.0.1' port='6379'/>", "QEMU socket networking"),
            ("mcast", "<source address='230.0.0.1' port='5558'/>", "QEMU socket networking"),
            ("udp", "<source address='127.0.0.1' port='11115'/>", "QEMU socket networking"),
            ("ethernet", "<target dev='tap0' managed='no'/>", "set up by script"),
        ]
    ],
    (
        "devices",
        "<interface type='network'>\n<source network='default'/>\n"
        f"{MARK}<backend tap='/dev/sda' vhost='/dev/vhost-net'/>\n</interface>",
        "backend",
        "host device node",
    ),
    (
        "devices",
        "<interface type='network'>\n<source network='default'/>\n"
        f"{MARK}<rom bar='on' file='/etc/shadow'/>\n</interface>",
        "rom",
        "the guest can read",
    ),
    (
        "devices",
        "<interface type='bridge'>\n<source bridge='br0'/>\n"
        f"{MARK}<downscript path='/tmp/evil'/>\n</interface>",
        "downscript",
        "host script",
    ),
    (
        "devices",
        "<interface type='bridge'>\n<source bridge='br0'/>\n"
        f"{MARK}<backenddomain name='bobs-vm'/>\n</interface>",
        "backenddomain",
        "another domain",
    ),
    # graphics on host sockets, host displays, host device nodes
    (
        "devices",
        f"{MARK}<graphics type='vnc' socket='/etc/cron.d/vnc'/>",
        "graphics",
        "unix socket",
    ),
    (
        "devices",
        f"<graphics type='spice'>\n{MARK}<listen type='socket' socket='/run/x/spice'/>\n"
        "</graphics>",
        "listen",
        "unix socket",
    ),
    (
        "devices",
        f"{MARK}<graphics type='sdl' display=':0' xauth='/root/.Xauthority'/>",
        "graphics",
        "display",
    ),
    (
        "devices",
        f"{MARK}<graphics type='dbus' address='unix:path=/run/dbus/system_bus_socket'/>",
        "graphics",
        "D-Bus",
    ),
    (
        "devices",
        f"<graphics type='egl-headless'>\n{MARK}<gl rendernode='/dev/sda'/>\n</graphics>",
        "gl",
        "device node",
    ),
    (
        "devices",
        "<video>\n<model type='virtio'>\n"
        f"{MARK}<acceleration accel3d='yes' rendernode='/dev/dri/renderD128'/>\n</model>\n"
        "<driver name='vhostuser'/>\n</video>",
        "acceleration",
        "device node",
    ),
    # entropy from host files other than the random devices, or from host sockets
    (
        "devices",
        f"<rng model='virtio'>\n{MARK}<backend model='random'>/etc/shadow</backend>\n</rng>",
        "backend",
        "entropy source",
    ),
    (
        "devices",
        f"<rng model='virtio'>\n{MARK}<backend model='egd' type='unix'>\n"
        "<source mode='connect' path='/run/other.sock'/>\n</backend>\n</rng>",
        "backend",
        "unix on the host",
    ),
    (
        "devices",
        f"<rng model='virtio'>\n{MARK}<backend model='egd' type='tcp'>\n"
        "<source mode='connect' host='127.0.0.1' service='6379'/>\n</backend>\n</rng>",
        "backend",
        "network socket",
    ),
    # sound from or to the host
    ("devices", f"{MARK}<audio id='1' type='file' path='/etc/motd'/>", "audio", "host file"),
    (
        "devices",
        f"{MARK}<audio id='1' type='alsa'>\n<input dev='hw:0'/>\n</audio>",
        "audio",
        "sound devices",
    ),
    (
        "devices",
        f"{MARK}<audio id='1' type='pulseaudio' serverName='/run/pulse'/>",
        "audio",
        "sound",
    ),
    # character devices: host sockets and a log file virtlogd opens as root
    (
        "devices",
        f"{MARK}<serial type='tcp'>\n<source mode='connect' host='127.0.0.1' service='25'/>\n"
        "</serial>",
        "serial",
        "network socket",
    ),
    (
        "devices",
        f"{MARK}<channel type='udp'>\n<source mode='connect' host='127.0.0.1' service='53'/>\n"
        "<target type='guestfwd' address='10.0.2.1' port='4600'/>\n</channel>",
        "channel",
        "network socket",
    ),
    (
        "devices",
        f"{MARK}<console type='nmdm'>\n<source master='/dev/nmdm0A'/>\n</console>",
        "console",
        "null-modem",
    ),
    (
        "devices",
        f"{MARK}<parallel type='file'>\n<source path='/etc/passwd'/>\n</parallel>",
        "parallel",
        "a file on the host as its source",
    ),
    (
        "devices",
        f"<serial type='pty'>\n{MARK}<log file='/etc/cron.d/evil' append='on'/>\n</serial>",
        "log",
        "virtlogd",
    ),
    (
        "devices",
        f"{MARK}<serial xmlns:x='urn:x' x:type='file'>\n<source path='/etc/cron.d/x'/>\n</serial>",
        "serial",
        "namespaced attribute",
    ),
    # already refused before; kept here so that stays true
    ("devices", f"{MARK}<smartcard mode='host'/>", "smartcard", "smartcard"),
    ("devices", f"{MARK}<redirdev bus='usb' type='spicevmc'/>", "redirdev", "USB"),
    ("devices", f"{MARK}<shmem name='x'><server path='/tmp/s'/></shmem>", "shmem", "shared memory"),
    # other host files: leases, pstore, a qcow2 data file named in the XML, PR helper sockets
    (
        "devices",
        f"{MARK}<lease>\n<lockspace>a</lockspace><key>k</key>\n"
        "<target path='/etc/shadow' offset='0'/>\n</lease>",
        "lease",
        "lease",
    ),
    (
        "devices",
        f"{MARK}<pstore backend='acpi-erst'>\n<path>/etc/shadow</path>\n"
        "<size unit='KiB'>8</size>\n</pstore>",
        "pstore",
        "persistent store",
    ),
    (
        "devices",
        "<disk type='file' device='disk'>\n<driver name='qemu' type='qcow2'/>\n"
        "<source file='/var/lib/libvirt/images/a.qcow2'>\n"
        f"{MARK}<dataStore type='file'>\n<format type='raw'/>\n<source file='/etc/shadow'/>\n"
        "</dataStore>\n</source>\n<target dev='vda' bus='virtio'/>\n</disk>",
        "dataStore",
        "disk rule does not see",
    ),
    (
        "devices",
        "<disk type='block' device='lun'>\n<source dev='/var/lib/libvirt/images/lun'>\n"
        f"<reservations managed='no'>\n{MARK}<source type='unix' path='/run/pr.sock' "
        "mode='client'/>\n</reservations>\n</source>\n<target dev='sda' bus='scsi'/>\n</disk>",
        "source",
        "persistent reservations",
    ),
    # <os>: host ACPI tables, the host's SMBIOS data, a shim
    ("os", f"<acpi>\n{MARK}<table type='slic'>/etc/shadow</table>\n</acpi>\n", "table", "ACPI"),
    ("os", f"{MARK}<smbios mode='host'/>\n", "smbios", "SMBIOS"),
    ("os", f"{MARK}<shim>/boot/efi/shimx64.efi</shim>\n", "shim", "host file"),
    # domain level: a host bootloader, host files for fw_cfg, a cgroup, raw hypervisor options
    ("top", f"{MARK}<bootloader>/usr/bin/pygrub</bootloader>\n", "bootloader", "host program"),
    (
        "top",
        f"{MARK}<bootloader_args>--output=/etc/x</bootloader_args>\n",
        "bootloader_args",
        "root",
    ),
    (
        "top",
        "<sysinfo type='fwcfg'>\n"
        f"{MARK}<entry name='opt/com.example/x' file='/etc/shadow'/>\n</sysinfo>\n",
        "entry",
        "the guest can read",
    ),
    (
        "top",
        f"<resource>\n{MARK}<partition>/machine/other</partition>\n</resource>\n",
        "partition",
        "cgroup",
    ),
    (
        "top",
        f"{MARK}<qemu:override {QEMU_NS}>\n<qemu:device alias='ua-net'>\n<qemu:frontend>\n"
        "<qemu:property name='romfile' type='string' value='/etc/shadow'/>\n"
        "</qemu:frontend>\n</qemu:device>\n</qemu:override>\n",
        "override",
        "raw QEMU device properties",
    ),
    (
        "top",
        f"{MARK}<xen:commandline xmlns:xen='http://libvirt.org/schemas/domain/xen/1.0'>\n"
        "<xen:arg value='-chardev'/>\n</xen:commandline>\n",
        "commandline",
        "device-model arguments",
    ),
    (
        "top",
        f"{MARK}<lxc:namespace xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'>\n"
        "<lxc:sharenet type='netns' value='red'/>\n</lxc:namespace>\n",
        "namespace",
        "host namespaces",
    ),
    (
        "top",
        "<launchSecurity type='tdx'>\n<policy>0x10000000</policy>\n"
        f"{MARK}<quoteGenerationService path='/run/other.sock'/>\n</launchSecurity>\n",
        "quoteGenerationService",
        "socket",
    ),
]

# harmless variants that must keep working for users
ALLOWED = [
    ("devices", "<tpm model='tpm-crb'>\n<backend type='emulator' version='2.0'/>\n</tpm>"),
    (
        "devices",
        "<input type='tablet' bus='usb'/>\n<input type='mouse'/>\n<input type='keyboard'/>",
    ),
    ("devices", "<rng model='virtio'>\n<backend model='random'>/dev/urandom</backend>\n</rng>"),
    ("devices", "<rng model='virtio'>\n<backend model='random'/>\n</rng>"),
    ("devices", "<rng model='virtio'>\n<backend model='builtin'/>\n</rng>"),
    (
        "devices",
        "<graphics type='vnc' port='-1' autoport='yes'>\n"
        "<listen type='address' address='127.0.0.1'/>\n</graphics>",
    ),
    ("devices", "<graphics type='spice' autoport='yes'>\n<listen type='socket'/>\n</graphics>"),
    (
        "devices",
        "<interface type='network'>\n<source network='default'/>\n"
        "<model type='virtio'/>\n<mac address='52:54:00:00:00:01'/>\n</interface>",
    ),
    ("devices", "<interface type='bridge'>\n<source bridge='xenbr0'/>\n</interface>"),
    (
        "devices",
        "<channel type='spicevmc'>\n<target type='virtio' name='com.redhat.spice.0'/>\n</channel>"
        "\n<channel type='qemu-vdagent'>\n<target type='virtio'/>\n</channel>",
    ),
    ("devices", "<serial type='pty'>\n<target port='0'/>\n</serial>\n<console type='pty'/>"),
    ("devices", "<audio id='1' type='spice'/>\n<sound model='ich9'><audio id='1'/></sound>"),
    (
        "devices",
        "<memory model='dimm'>\n<source><pagesize unit='KiB'>2048</pagesize></source>\n"
        "<target><size unit='KiB'>524288</size><node>0</node></target>\n</memory>",
    ),
    ("devices", "<vsock model='virtio'><cid auto='yes'/></vsock>\n<watchdog model='i6300esb'/>"),
    (
        "top",
        "<memoryBacking><hugepages/><source type='file'/></memoryBacking>\n"
        "<sysinfo type='fwcfg'><entry name='opt/com.example/x'>value</entry></sysinfo>\n",
    ),
    ("os", "<smbios mode='sysinfo'/>\n<cmdline>console=ttyS0</cmdline>\n"),
    (
        "top",
        "<metadata><app:cfg xmlns:app='urn:app' file='/etc/shadow'/></metadata>\n",
    ),
]


def _place(where: str, fragment: str) -> str:
    return domain(**{where: fragment})


def _ids(cases):
    return [
        f"{c[0]}:{re.sub(r'[^a-z0-9]+', '-', c[1].replace(MARK, '').lower())[:40]}" for c in cases
    ]


@pytest.mark.parametrize("where,fragment,element,why", REFUSED, ids=_ids(REFUSED))
def test_host_paths_devices_and_sockets_refused_for_users(where, fragment, element, why):
    xml = _place(where, fragment)
    line = xml[: xml.index(MARK)].count("\n") + 1
    with pytest.raises(vmmeta.DomainXmlError) as err:
        vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)
    msg = str(err.value)
    assert re.fullmatch(
        rf"line {line}: <{element}> \(.+\) is only allowed in definitions made by root", msg
    ), msg
    assert why in msg


@pytest.mark.parametrize("where,fragment,element,why", REFUSED, ids=_ids(REFUSED))
def test_root_may_use_them(where, fragment, element, why):
    name, _xml = vmmeta.prepare_user_domain_xml(_place(where, fragment), None, privileged=True)
    assert name == "web1"


@pytest.mark.parametrize("where,fragment", ALLOWED, ids=_ids(ALLOWED))
def test_harmless_variants_stay_allowed_for_users(where, fragment):
    name, xml = vmmeta.prepare_user_domain_xml(_place(where, fragment), "alice", privileged=False)
    assert name == "web1"
    assert vmmeta.from_domain_xml(xml)[2] == vmmeta.VmMeta(owner="alice")


def test_all_harmless_variants_together():
    parts: dict[str, str] = {"devices": "", "os": "", "top": ""}
    for where, fragment in ALLOWED:
        parts[where] += fragment + "\n"
    xml = domain(parts["devices"], os=parts["os"], top=parts["top"])
    assert vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)[0] == "web1"


def test_unknown_backend_types_are_refused_with_the_allowed_ones_named():
    xml = domain("<interface type='newfangled'><source x='y'/></interface>")
    with pytest.raises(vmmeta.DomainXmlError, match=r"type='newfangled'; users may choose network"):
        vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)


def test_a_foreign_namespace_does_not_hide_an_element():
    xml = domain(
        "<x:interface xmlns:x='urn:x' type='network'><x:rom file='/etc/shadow'/></x:interface>"
    )
    with pytest.raises(vmmeta.DomainXmlError, match=r"<rom> \(a host file as the device's ROM"):
        vmmeta.prepare_user_domain_xml(xml, "alice", privileged=False)
