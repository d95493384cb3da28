"""WireGuard backend choice and key files; no root, no namespaces."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from netlab import wireguard
from netlab.errors import NetlabError, ToolMissing


@pytest.fixture
def kernel_has_module(monkeypatch: pytest.MonkeyPatch):
    """Set what the kernel probe answers, without probing the real kernel."""

    def set_answer(answer: bool) -> None:
        monkeypatch.setattr(wireguard, "kernel_module_available", lambda: answer)

    return set_answer


@pytest.fixture
def tools_present(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Pretend `wg` and `wireguard-go` are installed; remove a name to make it missing."""
    present = {"wg", "wireguard-go"}

    def fake_require_tool(name: str) -> str:
        if name not in present:
            raise ToolMissing(f"'{name}' is not installed")
        return f"/usr/bin/{name}"

    monkeypatch.setattr(wireguard, "require_tool", fake_require_tool)
    return present


@pytest.mark.parametrize(
    ("env", "module", "expected"),
    [
        (None, True, "kernel"),
        (None, False, "userspace"),
        ("auto", True, "kernel"),
        ("auto", False, "userspace"),
        ("AUTO", False, "userspace"),
        ("", False, "userspace"),
        ("kernel", True, "kernel"),
        ("userspace", True, "userspace"),
        ("userspace", False, "userspace"),
        (" Userspace ", False, "userspace"),
    ],
)
def test_backend_follows_netlab_wg(
    monkeypatch, kernel_has_module, tools_present, env, module, expected
):
    if env is None:
        monkeypatch.delenv("NETLAB_WG", raising=False)
    else:
        monkeypatch.setenv("NETLAB_WG", env)
    kernel_has_module(module)
    assert wireguard.select_backend().name == expected


def test_explicit_mode_wins_over_environment(monkeypatch, kernel_has_module, tools_present):
    monkeypatch.setenv("NETLAB_WG", "kernel")
    kernel_has_module(False)
    assert wireguard.select_backend("userspace").name == "userspace"


def test_unknown_mode_is_refused_with_the_valid_values(monkeypatch, tools_present):
    monkeypatch.setenv("NETLAB_WG", "wireguard")
    with pytest.raises(NetlabError) as caught:
        wireguard.select_backend()
    message = str(caught.value)
    assert "'wireguard'" in message
    for valid in ("kernel", "userspace", "auto"):
        assert valid in message


def test_kernel_requested_without_module_names_module_and_both_ways_out(
    monkeypatch, kernel_has_module, tools_present
):
    monkeypatch.setenv("NETLAB_WG", "kernel")
    kernel_has_module(False)
    with pytest.raises(ToolMissing) as caught:
        wireguard.select_backend()
    message = str(caught.value)
    assert "wireguard kernel module" in message
    assert "modprobe wireguard" in message
    assert "NETLAB_WG=userspace" in message
    assert "wireguard-go" in message


def test_userspace_without_wireguard_go_names_the_package(
    monkeypatch, kernel_has_module, tools_present
):
    kernel_has_module(False)
    tools_present.discard("wireguard-go")
    with pytest.raises(ToolMissing) as caught:
        wireguard.select_backend("userspace")
    assert "apt-get install" in str(caught.value)
    assert "wireguard-go" in str(caught.value)


def test_auto_without_either_backend_names_both_ways_out(kernel_has_module, tools_present):
    kernel_has_module(False)
    tools_present.discard("wireguard-go")
    with pytest.raises(ToolMissing) as caught:
        wireguard.select_backend("auto")
    assert "wireguard-go" in str(caught.value)
    assert "modprobe wireguard" in str(caught.value)


@pytest.mark.parametrize("name", ["-h", "-f", "", "sixteen-chars-xx", "a/b", ".x", "has space"])
def test_interface_names_that_could_be_flags_or_paths_are_refused(name):
    with pytest.raises(NetlabError):
        wireguard.UserspaceBackend().create("no-such-netns", name)


@pytest.mark.parametrize("key", ["-h", "not base64!", "AAAA", ""])
def test_peer_public_key_must_be_a_real_key(key):
    with pytest.raises(NetlabError, match="public key"):
        wireguard._valid_public_key(key)


needs_wg = pytest.mark.skipif(
    shutil.which("wg") is None, reason="'wg' not installed (apt-get install wireguard-tools)"
)


@needs_wg
def test_private_key_file_is_0600_and_public_key_beside_it(tmp_path: Path):
    pair = wireguard.ensure_keypair(tmp_path / "keys", "acme-lan")
    assert stat.S_IMODE(pair.private_key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert pair.public_key_path == pair.private_key_path.with_suffix(".pub")
    assert pair.public_key_path.read_text().strip() == pair.public_key
    wireguard._valid_public_key(pair.public_key)
    # The private key is never part of what the pair shows.
    private = pair.private_key_path.read_text().strip()
    assert private not in repr(pair)
    assert private != pair.public_key


@needs_wg
def test_key_pair_is_reused_not_regenerated(tmp_path: Path):
    first = wireguard.ensure_keypair(tmp_path, "sp-nea")
    second = wireguard.ensure_keypair(tmp_path, "sp-nea")
    assert first == second


@needs_wg
def test_loose_private_key_permissions_are_tightened(tmp_path: Path):
    pair = wireguard.ensure_keypair(tmp_path, "loose")
    pair.private_key_path.chmod(0o644)
    wireguard.ensure_keypair(tmp_path, "loose")
    assert stat.S_IMODE(pair.private_key_path.stat().st_mode) == 0o600


@needs_wg
def test_private_key_is_created_0600_even_under_a_permissive_umask(tmp_path: Path, monkeypatch):
    # Catch the file at the moment it is created, before anything could chmod it.
    seen: list[int] = []
    real_open = wireguard.os.open

    def spying_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if str(path).endswith(".tmp"):
            seen.append(stat.S_IMODE(wireguard.os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(wireguard.os, "open", spying_open)
    old = wireguard.os.umask(0)
    try:
        wireguard.ensure_keypair(tmp_path, "umask0")
    finally:
        wireguard.os.umask(old)
    assert seen == [0o600]


def test_missing_namespace_is_named_and_never_created():
    name = "twg-no-such-namespace"
    with pytest.raises(NetlabError, match=name), wireguard.Netlink() as nl:
        nl[name]
    assert not Path("/run/netns", name).exists()
