#!/bin/sh
# secured-virt's host install, run by `make install` / `make uninstall` (variables from the
# Makefile: PREFIX DESTDIR BINDIR SBINDIR MANDIR DOCDIR BASHCOMPDIR SYSCONFDIR PAMDIR UNITDIR
# HOST_PYTHON SRC).
#
#   install            build a wheel of $SRC and install it, with its dependencies, into a venv at
#                      $PREFIX; link the programs, install man pages, completion, docs, systemd
#                      units; install /etc files only where none exist yet (an admin's files are
#                      never overwritten: the shipped versions are in $PREFIX/share/secured-virt/etc)
#                      create the network front-ends' system users (svirt-xenapi, svirt-web)
#                      if missing: the front-ends themselves stay off until turned on
#   uninstall          remove what `install` installed (listed in $PREFIX/share/secured-virt/
#                      installed-files); /etc/secured-virt, the PAM service, state, logs and the
#                      front-ends' system users stay
#   isolate-scripts D  make the console scripts in D run `python -I` (also used for the test venv)
#
# Why a venv built from Debian's python3 and not the system site-packages: secured-virt needs
# python-pam and lxml >= 5, which Debian's python3 does not have; the venv carries its own, so
# the installed programs never depend on what else is installed for /usr/bin/python3.
# Why a wheel and not the tree: nothing installed may point back at a checkout (an editable
# install makes the installed commands run whatever that checkout holds now, or nothing once it
# is deleted).
# With DESTDIR (staged installs, packages), every path written into the files is $PREFIX's, not
# $DESTDIR$PREFIX's: shebangs, the venv's pyvenv.cfg and activate scripts, and the source paths
# recorded in the byte-code.
set -eu

PROGRAMS="svirsh svirt-admin svirtd svirt-xenapi svirt-web svirt-xl-receive"
#: the network front-ends: each is a program, a unit, and an unprivileged system user of that name
FRONTENDS="svirt-xenapi svirt-web"
#: the manual pages (man/generate.py writes them), each installed in the section its suffix names
MANPAGES="svirsh.1 svirt-admin.8 svirtd.8 svirt-xenapi.8 svirt-web.8 svirt-xl-receive.8"
MARKER=share/secured-virt/installed-files

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# The console scripts pip writes start "#!/path/python"; ours must run "#!/path/python -I" (no
# PYTHONPATH, PYTHONSTARTUP or user site before secured-virt's own start-up runs).  $2, when
# given, is the interpreter path the first line must name (DESTDIR installs).
isolate_scripts() {
    bindir=$1
    python=${2:-}
    for s in $PROGRAMS; do
        f="$bindir/$s"
        [ -f "$f" ] || die "$f: missing (the wheel did not install its console scripts)"
        if [ -n "$python" ]; then
            sed -i "1s|^#!.*\$|#!$python -I|" "$f"
        else
            sed -i '1s|^#!\(/[^ ]*python[0-9.]*\)$|#!\1 -I|' "$f"
        fi
        head -n 1 "$f" | grep -qx '#!/[^ ]*python[0-9.]* -I' ||
            die "$f: cannot make it run python -I (first line: $(head -n 1 "$f"))"
    done
}

# Install $1 as $2 (mode 0644, root's) unless $2 exists: the admin's file always wins.
keep_or_install() {
    src=$1 dest=$2 shipped=$3
    if [ -e "$dest" ] || [ -L "$dest" ]; then
        say "  kept $dest (yours; the shipped version is $shipped)"
        return
    fi
    install -m 0644 "$src" "$dest"
    [ "$(id -u)" != 0 ] || chown 0:0 "$dest"
    say "  installed $dest"
}

record() { printf '%s\n' "$1" >>"$MANIFEST_TMP"; }

# The front-ends' system users: created once (no home, no login shell, a group of the same
# name for the units' Group=), an existing account of that name used as it is.  Not with
# DESTDIR: a staged install (a package) creates users when it is installed on the host.
ensure_frontend_users() {
    if [ -n "${DESTDIR:-}" ] || [ "$(id -u)" != 0 ]; then
        say "  front-end users not created (DESTDIR install or not root): create them with"
        say "    useradd --system --user-group --no-create-home --home-dir /nonexistent \\"
        say "            --shell /usr/sbin/nologin NAME    (NAME: $FRONTENDS)"
        return
    fi
    for u in $FRONTENDS; do
        if getent passwd "$u" >/dev/null; then
            say "  kept the user $u (it exists)"
            continue
        fi
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "secured-virt front-end $u" -- "$u" ||
            die "cannot create the system user $u"
        say "  created the system user $u (no home, no login shell)"
    done
}

do_install() {
    : "${PREFIX:?}" "${SRC:?}" "${HOST_PYTHON:=/usr/bin/python3}"
    case "$PREFIX" in /*) ;; *) die "PREFIX must be an absolute path, not '$PREFIX'" ;; esac
    D=${DESTDIR:-}
    P="$D$PREFIX"
    umask 022
    # Never turn a directory that holds something else (PREFIX=/usr/local) into a venv.
    if [ -e "$P/bin" ] && [ ! -f "$P/pyvenv.cfg" ]; then
        die "$P already has a bin/ and is not a secured-virt prefix; choose another PREFIX"
    fi
    say "secured-virt: installing into $P"
    [ -x "$P/bin/python" ] || "$HOST_PYTHON" -m venv "$P"
    "$P/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$HOST_PYTHON is older than 3.11"

    # Build the wheel from a copy of the sources, so the checkout gets no build/ or egg-info
    # and no stray file of the tree (an in-place rbac/_native*.so, __pycache__) is packaged.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/src" "$work/wheel"
    (cd "$SRC" && tar -cf - --exclude=__pycache__ --exclude='*.so' --exclude='*.pyc' \
        pyproject.toml setup.py README.md rbac policy secured_virt) | (cd "$work/src" && tar -xf -)
    "$P/bin/python" -m pip wheel -q --no-deps -w "$work/wheel" "$work/src"
    whl=$(ls "$work"/wheel/secured_virt-*.whl)
    # dependencies (and the package), then the package again even if the version is unchanged
    "$P/bin/python" -m pip install -q "$whl"
    "$P/bin/python" -m pip install -q --no-deps --force-reinstall "$whl"

    if [ -n "$D" ]; then
        # Paths inside the venv name $PREFIX, where it will run, not the staging directory.
        for f in "$P"/bin/*; do
            [ -f "$f" ] && [ ! -L "$f" ] || continue
            head -c 2 "$f" | grep -q '^#!' || continue
            sed -i "1s|^#!$P/|#!$PREFIX/|" "$f"
        done
        sed -i "s|$P|$PREFIX|g" "$P/pyvenv.cfg" "$P"/bin/activate*
    fi
    isolate_scripts "$P/bin" "$PREFIX/bin/python"
    # Byte-code now, while root writes the prefix; users running the programs cannot write it.
    if [ -n "$D" ]; then
        "$P/bin/python" -I -m compileall -q -f -s "$D" "$P/lib" >/dev/null
    else
        "$P/bin/python" -I -m compileall -q "$P/lib" >/dev/null
    fi

    share="$P/share/secured-virt"
    install -d -m 0755 "$share/etc/pam.d" "$share/etc/sudoers.d" "$share/etc/systemd" \
        "$share/etc/examples"
    install -m 0644 "$SRC/etc/secured-virt.conf" "$SRC/etc/ua.xml" "$SRC/etc/pa.xml" "$share/etc/"
    install -m 0644 "$SRC/etc/pam.d/secured-virt" "$share/etc/pam.d/"
    install -m 0644 "$SRC/etc/sudoers.d/secured-virt" "$share/etc/sudoers.d/"
    install -m 0644 "$SRC"/etc/examples/* "$share/etc/examples/"
    install -m 0644 "$SRC"/etc/systemd/svirtd.service "$SRC"/etc/systemd/svirtd.socket \
        "$SRC"/etc/systemd/svirt-xenapi.service "$SRC"/etc/systemd/svirt-web.service \
        "$share/etc/systemd/"
    # world-readable, writable by the installer alone
    for x in bin lib lib64 include share pyvenv.cfg; do
        if [ -e "$P/$x" ] && [ ! -L "$P/$x" ]; then chmod -R u+rwX,go+rX,go-w "$P/$x"; fi
    done

    MANIFEST_TMP="$work/manifest"
    : >"$MANIFEST_TMP"
    install -d -m 0755 "$D$BINDIR" "$D$SBINDIR"
    for s in svirsh svirt-admin $FRONTENDS; do
        ln -sfn "$PREFIX/bin/$s" "$D$BINDIR/$s"
        record "$BINDIR/$s"
    done
    ln -sfn "$PREFIX/bin/svirtd" "$D$SBINDIR/svirtd"
    record "$SBINDIR/svirtd"
    # run by root's ssh from a source host's xl backend (backends/xl_migrate.py)
    ln -sfn "$PREFIX/bin/svirt-xl-receive" "$D$SBINDIR/svirt-xl-receive"
    record "$SBINDIR/svirt-xl-receive"

    for page in $MANPAGES; do
        sect="man${page##*.}"
        install -d -m 0755 "$D$MANDIR/$sect"
        install -m 0644 "$SRC/man/$page" "$D$MANDIR/$sect/"
        record "$MANDIR/$sect/$page"
    done

    install -d -m 0755 "$D$BASHCOMPDIR"
    for s in svirsh svirt-admin; do
        install -m 0644 "$SRC/completion/$s" "$D$BASHCOMPDIR/"
        record "$BASHCOMPDIR/$s"
    done

    install -d -m 0755 "$D$DOCDIR"
    for doc in "$SRC"/README.md "$SRC"/docs/*.md "$SRC"/docs/*.png; do
        [ -f "$doc" ] || continue
        install -m 0644 "$doc" "$D$DOCDIR/"
        record "$DOCDIR/$(basename "$doc")"
    done

    # systemd units: the shipped ones name the default paths; substitute the chosen ones
    install -d -m 0755 "$D$UNITDIR"
    for u in svirtd.service svirtd.socket svirt-xenapi.service svirt-web.service; do
        sed -e "s|/usr/local/sbin/svirtd|$SBINDIR/svirtd|g" \
            -e "s|/usr/local/bin/svirt-xenapi|$BINDIR/svirt-xenapi|g" \
            -e "s|/usr/local/bin/svirt-web|$BINDIR/svirt-web|g" \
            -e "s|/usr/local/share/doc/secured-virt|$DOCDIR|g" \
            "$SRC/etc/systemd/$u" >"$D$UNITDIR/$u"
        chmod 0644 "$D$UNITDIR/$u"
        record "$UNITDIR/$u"
    done

    # /etc: created once, never overwritten.  With another SYSCONFDIR the config points at it.
    install -d -m 0755 "$D$SYSCONFDIR/secured-virt" "$D$PAMDIR"
    conf="$work/secured-virt.conf"
    sed "s|= /etc/secured-virt/|= $SYSCONFDIR/secured-virt/|" "$SRC/etc/secured-virt.conf" >"$conf"
    keep_or_install "$conf" "$D$SYSCONFDIR/secured-virt/secured-virt.conf" \
        "$PREFIX/share/secured-virt/etc/secured-virt.conf"
    for f in ua.xml pa.xml; do
        keep_or_install "$SRC/etc/$f" "$D$SYSCONFDIR/secured-virt/$f" \
            "$PREFIX/share/secured-virt/etc/$f"
    done
    keep_or_install "$SRC/etc/pam.d/secured-virt" "$D$PAMDIR/secured-virt" \
        "$PREFIX/share/secured-virt/etc/pam.d/secured-virt"

    ensure_frontend_users

    install -m 0644 "$MANIFEST_TMP" "$P/$MARKER"
    if [ -z "$D" ] && [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    # the whatis database (apropos); man finds the pages without it
    if [ -z "$D" ] && [ "$MANDIR" = /usr/local/share/man ] && command -v mandb >/dev/null 2>&1; then
        mandb -q >/dev/null 2>&1 || true
    fi
    say "secured-virt installed:"
    say "  programs  $BINDIR/svirsh, $BINDIR/svirt-admin, $SBINDIR/svirtd -> $PREFIX/bin/"
    say "  config    $SYSCONFDIR/secured-virt/ (edit ua.xml/pa.xml with 'svirt-admin edit ua|pa')"
    say "  units     $UNITDIR/svirtd.socket, svirtd.service"
    say "  front-ends $BINDIR/svirt-xenapi, $BINDIR/svirt-web (units svirt-xenapi.service,"
    say "            svirt-web.service): off until 'xenapi = yes' / 'web = yes' and"
    say "            'frontends = xenapi:svirt-xenapi, web:svirt-web' (docs/xenapi.md, web.md)"
    say "next: svirt-admin validate && systemctl enable --now svirtd.socket"
    say "      (a running svirtd keeps the old code until it is restarted)"
}

do_uninstall() {
    : "${PREFIX:?}"
    D=${DESTDIR:-}
    P="$D$PREFIX"
    [ -f "$P/$MARKER" ] ||
        die "$P has no $MARKER: not a secured-virt install (or already removed); nothing done"
    while IFS= read -r path; do
        case "$path" in /*) ;; *) continue ;; esac
        if [ -L "$D$path" ] || [ -f "$D$path" ]; then
            rm -f "$D$path"
            say "  removed $path"
        fi
    done <"$P/$MARKER"
    for x in bin lib lib64 include share pyvenv.cfg; do
        rm -rf "${P:?}/$x"
    done
    rmdir "$P" 2>/dev/null || true
    [ -n "$D" ] || [ ! -d /run/systemd/system ] || systemctl daemon-reload || true
    say "secured-virt removed from $PREFIX.  Kept (yours): $SYSCONFDIR/secured-virt/,"
    say "  $PAMDIR/secured-virt, /var/lib/secured-virt (state, save images) and"
    say "  /var/log/secured-virt (the audit trail).  Remove them by hand if you want them gone."
    say "  Kept too: the system users $FRONTENDS and their /var/lib/svirt-* (the TLS keys they"
    say "  own).  A deleted user's uid goes to the next system user made, which would then own"
    say "  those keys: remove the directories first, then 'userdel NAME' (its group goes too)."
}

case "${1:-}" in
install) do_install ;;
uninstall) do_uninstall ;;
isolate-scripts) isolate_scripts "$2" ;;
*) die "usage: install.sh install|uninstall|isolate-scripts BINDIR" ;;
esac
