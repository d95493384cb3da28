"""WireGuard key pairs of the NEAs: made with `wg genkey`, the private key 0600 from birth.

Part of netlab.wireguard's API (it re-exports KeyPair and ensure_keypair); apart only
to keep each module small.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from netlab.errors import NetlabError
from netlab.run import require_tool, run

log = logging.getLogger("netlab.wireguard")
_KEYNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")


class WireGuardError(NetlabError):
    """The tunnel could not be created, configured or inspected; the message says why."""


@dataclass(frozen=True)
class KeyPair:
    """Where a WireGuard key pair lives. The private key itself is never held here."""

    name: str
    private_key_path: Path
    public_key_path: Path
    public_key: str


def _valid_public_key(key: str) -> str:
    key = key.strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    # A checked key also cannot be mistaken by `wg` for one of its keywords or flags.
    if len(raw) != 32:
        raise WireGuardError(f"not a WireGuard public key: {key!r}")
    return key


def _write_private_key(path: Path, private_key: str) -> None:
    # Created 0600 under umask 077 and only then written; renamed into place so a
    # crash never leaves a half-written key under the final name.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old_umask = os.umask(0o077)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    finally:
        os.umask(old_umask)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(private_key + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _write_public_key(path: Path, public_key: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(public_key + "\n")
    os.replace(tmp, path)


def ensure_keypair(key_dir: Path, name: str) -> KeyPair:
    """The key pair `name` in `key_dir` (`NAME.key` 0600, `NAME.pub`), made if missing."""
    if not _KEYNAME_RE.match(name):
        raise WireGuardError(f"invalid key name {name!r}")
    require_tool("wg")
    key_dir = Path(key_dir)
    old_umask = os.umask(0o077)
    try:
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    finally:
        os.umask(old_umask)
    private_path = key_dir / f"{name}.key"
    public_path = key_dir / f"{name}.pub"
    if private_path.exists():
        mode = private_path.stat().st_mode & 0o777
        if mode & 0o077:
            # Not made by us, or changed since: tighten rather than go on leaking it.
            log.warning("private key %s had mode %04o; set to 0600", private_path, mode)
            os.chmod(private_path, 0o600)
        private_key = private_path.read_text().strip()
    else:
        private_key = run(["wg", "genkey"]).stdout.strip()
        _write_private_key(private_path, private_key)
        log.info("made WireGuard key pair %s in %s", name, key_dir)
    public_key = run(["wg", "pubkey"], input=private_key + "\n").stdout.strip()
    del private_key
    if not public_path.exists() or public_path.read_text().strip() != public_key:
        _write_public_key(public_path, public_key)
    return KeyPair(name, private_path, public_path, public_key)
