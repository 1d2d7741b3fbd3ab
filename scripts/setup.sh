# Shared by scripts/serve and scripts/test (sourced, not run): idempotent set-up steps for a
# fresh Debian machine. Each step does nothing when what it provides is already there.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    echo "installing Debian packages: $*" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# need_packages COMMAND:PACKAGE ...: install the Debian packages whose command is missing.
need_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
    done
    [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# need_library SONAME:PACKAGE ...: install the Debian packages whose shared library is missing.
need_library() {
    local missing=() pair
    for pair in "$@"; do
        /sbin/ldconfig -p 2>/dev/null | grep -q "${pair%%:*}" || missing+=("${pair##*:}")
    done
    [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# need_pkgconfig MODULE:PACKAGE ...: install the Debian packages whose pkg-config module is
# missing (headers and libraries that a dependency compiles against).
need_pkgconfig() {
    local missing=() pair
    need_packages pkg-config:pkg-config
    for pair in "$@"; do
        pkg-config --exists "${pair%%:*}" 2>/dev/null || missing+=("${pair##*:}")
    done
    [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# ensure_venv EXTRAS [GROUP]: a virtual environment in .venv with the project installed
# (editable) with EXTRAS, and the dependency group GROUP (pyproject.toml) if given;
# reinstalled whenever pyproject.toml changes.
ensure_venv() {
    local extras="$1" group="${2:-}" stamp
    need_packages python3:python3
    # PyICU compiles against the system's ICU (it ships no wheels).
    need_packages g++:g++
    need_pkgconfig icu-i18n:libicu-dev
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" 2>/dev/null || {
            install_packages python3-venv  # Debian ships venv separately
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        }
    fi
    stamp="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $extras $group"
    if [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip  # 25.1 or newer installs dependency groups
        "$VENV/bin/python" -m pip install -q -e "$ROOT$extras" ${group:+--group "$ROOT/pyproject.toml:$group"}
        echo "$stamp" >"$VENV/.installed"
    fi
}
