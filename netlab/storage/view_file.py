"""view.json: which restore point a replica's delta belongs to, and the phase of its view."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from netlab.errors import NetlabError
from netlab.storage.files import _write_atomic
from netlab.storage.layout import VIEW_STATE, point_name


def _read_view_file(replica_dir: Path) -> tuple[int, str, datetime] | None:
    try:
        data = json.loads((replica_dir / VIEW_STATE).read_text())
        return int(data["restore_point"]), str(data["phase"]), datetime.fromisoformat(data["since"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError) as exc:
        raise NetlabError(f"{replica_dir / VIEW_STATE} is damaged: {exc}") from exc



def _write_view_file(replica_dir: Path, point_id: int, phase: str) -> None:
    data = {
        "restore_point": point_id,
        "name": point_name(point_id),
        "phase": phase,
        "since": datetime.now(UTC).isoformat(),
    }
    _write_atomic(replica_dir / VIEW_STATE, json.dumps(data, indent=2).encode())
