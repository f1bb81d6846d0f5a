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
