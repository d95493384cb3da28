#!/usr/bin/env bash
# Prepare this machine to run netlab: Debian packages, the .venv, the `netlab` command.
#
#   scripts/setup.sh [--up] [--with-graphviz] [--reinstall]
#
# Runs as root; a user with sudo rights is switched to root through sudo (scripts/root.sh).
# Idempotent and quick on re-runs: apt-get runs only when a package is missing,
# pip only when pyproject.toml changed since the last successful install.
# Works from any directory; the repository is found from this script's path.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

usage() {
    cat <<'EOF'
usage: scripts/setup.sh [--up] [--with-graphviz] [--reinstall]

Installs what netlab needs on a Debian/Ubuntu machine, as root (a user with sudo
rights is switched to root through sudo):
  - Debian packages: iproute2 util-linux nftables wireguard-tools wireguard-go
    dnsmasq-base busybox iputils-arping iputils-ping tcpdump iperf3 curl
    python3-venv python3-pip procps rsync, and chromium for the web view's tests
  - the virtualenv <repo>/.venv (from /usr/bin/python3) with `pip install -e '.[test]'`
  - the link /usr/local/bin/netlab -> <repo>/.venv/bin/netlab ($NETLAB_LINK overrides
    where the link goes), so `netlab ...` works from anywhere

  --up             install what the lab needs (not the test tools: pytest, ruff,
                   Playwright, chromium) and bring up the default lab (netlab up)
  --with-graphviz  also install graphviz (topology drawings)
  --reinstall      run pip even if pyproject.toml has not changed
EOF
}

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

with_graphviz=0
reinstall=0
bring_up=0
for arg in "$@"; do
    case "$arg" in
        --up) bring_up=1 ;;
        --with-graphviz) with_graphviz=1 ;;
        --reinstall) reinstall=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; printf 'setup: error: unknown argument: %s\n' "$arg" >&2; exit 2 ;;
    esac
done

# shellcheck source=scripts/root.sh
source "$(dirname "${BASH_SOURCE[0]}")/root.sh"
become_root "$0" "$@"
command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1 \
    || die "apt-get not found: netlab's setup supports Debian and Ubuntu only"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
[[ -f "$repo/pyproject.toml" ]] || die "no pyproject.toml in $repo (is this script inside the netlab checkout?)"
venv="$repo/.venv"
py=/usr/bin/python3   # Debian's interpreter on purpose: not pyenv, not whatever is first on PATH

# ---------------------------------------------------------------- Debian packages
packages=(
    iproute2 util-linux nftables wireguard-tools wireguard-go dnsmasq-base busybox
    iputils-arping iputils-ping tcpdump iperf3 curl python3-venv python3-pip procps rsync
)
# the test tools: a lab alone needs neither (`netlab web` serves any browser)
if ((!bring_up)); then packages+=(chromium); fi
if ((with_graphviz)); then packages+=(graphviz); fi

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $status == ii* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    apt_opts=(-q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    apt-get "${apt_opts[@]}" update
    # --no-install-recommends always: without it wireguard-tools pulls in a kernel image.
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
else
    say "Debian packages: all ${#packages[@]} already installed"
fi

# ---------------------------------------------------------------- virtualenv
venv_ok() {
    [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
        && grep -qx 'home = /usr/bin' "$venv/pyvenv.cfg" 2>/dev/null
}
if [[ -d "$venv" ]] && ! venv_ok; then
    say "$venv is broken or not based on $py: recreating it"
    rm -rf -- "$venv"
fi
if [[ ! -d "$venv" ]]; then
    say "creating $venv with $($py --version 2>&1)"
    "$py" -m venv "$venv"
else
    say "virtualenv $venv exists ($("$venv/bin/python" --version 2>&1))"
fi

# pip runs again only when pyproject.toml (dependencies, entry points) changed, or when
# the test tools are wanted and were not installed (`--up` installs netlab alone).
if ((bring_up)); then target=.; else target=.[test]; fi
stamp="$venv/.netlab-setup-stamp"
base="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1) $("$venv/bin/python" -V 2>&1)"
want="$base $target"
have=$(cat "$stamp" 2>/dev/null || true)
installed() {
    "$venv/bin/python" -c 'import importlib.metadata as m; m.distribution("netlab-dr")' 2>/dev/null \
        && [[ -x "$venv/bin/netlab" ]] \
        && { [[ $target == . ]] || [[ -x "$venv/bin/pytest" && -x "$venv/bin/ruff" ]]; }
}
if [[ $have == "$base .[test]" ]]; then want=$have; fi  # the test install holds netlab's too
if ((reinstall)) || [[ $have != "$want" ]] || ! installed; then
    say "pip install -e '$target' into $venv"
    (cd "$repo" && "$venv/bin/python" -m pip install -q -e "$target")
    printf '%s\n' "$want" >"$stamp"
else
    say "python packages: up to date (pyproject.toml unchanged; --reinstall to force)"
fi

# Bytecode for netlab's own modules (an editable install has none): with
# PYTHONDONTWRITEBYTECODE set, as in many containers and CI images, every netlab
# command would otherwise compile them again at start. Quick when nothing changed.
"$venv/bin/python" -m compileall -q "$repo/netlab" >/dev/null

# A checkout owned by a user (vagrant, the CI runner, you) keeps a venv that user can use
# without sudo, e.g. for `.venv/bin/pytest tests/unit`.
owner=$(stat -c %u:%g "$repo")
if [[ $owner != 0:0 ]]; then
    chown -R "$owner" "$venv"
    find "$repo/netlab" -type d -name __pycache__ -exec chown -R "$owner" {} +
    for d in "$repo"/*.egg-info; do
        if [[ -e $d ]]; then chown -R "$owner" "$d"; fi
    done
fi

# ---------------------------------------------------------------- the netlab command
link=${NETLAB_LINK:-/usr/local/bin/netlab}
if [[ "$(readlink "$link" 2>/dev/null || true)" != "$venv/bin/netlab" ]]; then
    ln -sfn "$venv/bin/netlab" "$link"
    say "linked $link -> $venv/bin/netlab"
else
    say "$link -> $venv/bin/netlab (already)"
fi

# ---------------------------------------------------------------- report
if [[ -d /sys/module/wireguard ]] \
    || { command -v modprobe >/dev/null && modprobe -q wireguard 2>/dev/null; }; then
    say "WireGuard: kernel module available (wireguard-go also installed)"
else
    say "WireGuard: no kernel module here; the userspace wireguard-go will be used"
fi
if ((bring_up)); then
    say "netlab up"
    exec "$venv/bin/netlab" up
fi
say "done. Next: netlab up (as root; otherwise sudo netlab up). Tests: scripts/test.sh"
