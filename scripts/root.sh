# Sourced by setup.sh and test.sh: run the calling script as root, raising privileges
# only when needed, so the README's commands work verbatim in a root shell without
# sudo (containers, CI images) and for a user with sudo rights.
#
#   become_root "$0" "$@"    # returns when already root; else re-executes through sudo
#
# Variables that change what the scripts do survive the switch (sudo resets the
# environment): CI, NETLAB_*, and the proxy settings pip and apt-get need.
become_root() {
    [[ $(id -u) -eq 0 ]] && return 0
    local script=$1; shift
    local how="run it as root (in a root shell: $script${*:+ $*})"
    if ! command -v sudo >/dev/null 2>&1; then
        printf '%s: error: needs root, and sudo is not installed: %s\n' \
            "$(basename "$script")" "$how" >&2
        exit 1
    fi
    # -n: no prompt when rights need no password; else ask once, on the terminal only
    if ! sudo -n true 2>/dev/null; then
        if [[ ! -t 0 ]] || ! sudo -v 2>/dev/null; then
            printf '%s: error: needs root, and %s may not use sudo here: %s\n' \
                "$(basename "$script")" "$(id -un)" "$how" >&2
            exit 1
        fi
    fi
    local keep=() name
    while IFS= read -r name; do
        case $name in
            CI | NETLAB_* | http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | PIP_INDEX_URL | PIP_EXTRA_INDEX_URL)
                keep+=("$name=${!name}") ;;
        esac
    done < <(compgen -e)
    exec sudo -- env "${keep[@]}" "$script" "$@"
}
