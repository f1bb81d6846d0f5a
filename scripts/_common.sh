# Shared by scripts/run and scripts/test (sourced, not executed).
# Creates .venv when missing and installs a requirements file when it changed since
# the last install (a hash stamp in .venv), so that repeated runs start at once.

die() { echo "error: $*" >&2; exit 1; }
say() { echo "==> $*"; }

ensure_venv() {  # ensure_venv REQUIREMENTS_FILE
    local req=$1 py=${PYTHON:-python3}
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
        command -v "$py" >/dev/null || die "$py not found; install Python 3.11 or newer (or set PYTHON=/path/to/python3)."
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || die "$py is $("$py" -V 2>&1); TenantMail needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)."
        say "creating the virtualenv .venv"
        rm -rf .venv
        "$py" -m venv .venv || die "could not create .venv; on Debian/Ubuntu install the python3-venv package."
    fi
    # The stamp covers the file and what it includes with -r.
    local stamp=".venv/.installed-$(basename "$req").sha256" want
    want=$(cat "$req" requirements.txt | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing $req into .venv"
        .venv/bin/python -m pip install --disable-pip-version-check -q -r "$req" \
            || die "pip could not install $req (see above)."
        echo "$want" > "$stamp"
    fi
}

# Debian packages the tests run for real (Dovecot, Postfix, openssl, Chromium), plus fonts so
# that CJK text and emoji in browser screenshots are readable rather than empty boxes.
TEST_DEBIAN_PACKAGES="dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix openssl microsocks tinyproxy dante-server chromium fonts-noto-cjk fonts-noto-color-emoji"

ensure_debian_packages() {
    local missing="" p
    for p in $TEST_DEBIAN_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null || die "the tests need these Debian packages:$missing; install them (no apt-get here)."
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "the tests need these Debian packages:$missing; run as root or install sudo."
        # Without a terminal (CI) sudo must not wait for a password.
        if [ -t 0 ]; then sudo="sudo"; else sudo="sudo -n"; fi
    fi
    say "installing Debian packages:$missing"
    # Postfix asks how to configure itself: the tests start their own instance, so none.
    printf '%s\n' "postfix postfix/main_mailer_type select No configuration" \
                  "postfix postfix/mailname string localhost" | $sudo debconf-set-selections
    # Keep the packages' own daemons from starting (policy-rc.d exit 101 = "not allowed").
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
    if [ $rc = 0 ]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing || rc=$?
    fi
    [ -n "$added_policy" ] && $sudo rm -f "$policy"
    [ $rc = 0 ] || die "apt-get could not install:$missing (see above)."
}

# require_service NAME URL DEFAULT_PORT HINT
require_service() {
    local name=$1 url=$2 port=$3 hint=$4 hostport
    hostport=$(.venv/bin/python -c 'import sys; from urllib.parse import urlparse; u = urlparse(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or int(sys.argv[2]))' "$url" "$port")
    set -- $hostport
    if ! .venv/bin/python -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()' "$1" "$2" 2>/dev/null; then
        die "$name is not reachable at $1:$2. The tests run against a real $name: $hint"
    fi
}
