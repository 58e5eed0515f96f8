"""Shared pieces of the recipes: the installed versions their datasets' metadata records, and, for the cached
online-policy runs (AntMaze's goal-reaching ant, Adroit's experts), the snapshot list a run writes as it trains and
the lock that keeps two processes from training the same run.

A run folder holds `snapshots.json` (one entry per evaluated policy snapshot, written atomically after each) and,
while a process trains it, `training.lock` with that process's pid.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

__all__ = ["package_version", "requirements", "read_snapshots", "write_snapshots", "training_in_progress"]

S = TypeVar("S")


def package_version(package: str) -> str | None:
    """The installed version of `package`, or None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return None


def requirements(*packages: str) -> list[str]:
    """`package>=installed version` for each installed one of `packages`: a dataset's Minari `requirements`."""
    return [f"{package}>={package_version(package)}" for package in packages if package_version(package)]


def read_snapshots(directory: str | Path, snapshot_type: type[S]) -> list[S]:
    """The snapshots a run has written so far (also while it is still training), in update order."""
    path = Path(directory) / "snapshots.json"
    if not path.exists():
        return []
    return sorted((snapshot_type(**entry) for entry in json.loads(path.read_text())), key=lambda s: s.updates)


def write_snapshots(directory: Path, snapshots: dict[int, object]) -> None:
    """Replace the run's snapshot list with `snapshots` (update -> dataclass), atomically."""
    tmp = directory / "snapshots.json.tmp"
    tmp.write_text(json.dumps([asdict(s) for _, s in sorted(snapshots.items())], indent=1))
    tmp.replace(directory / "snapshots.json")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def training_in_progress(directory: str | Path) -> int | None:
    """The pid of another live process training the run in `directory` (its `training.lock`), else None."""
    try:
        pid = int((Path(directory) / "training.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid != os.getpid() and _pid_alive(pid) else None
