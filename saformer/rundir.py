"""Output directories: how every command writes, so that no interruption leaves a half result.

- ``write_json``: a JSON file is written to a temporary name and renamed (a killed process never
  leaves half a file).
- ``check_out_dir``: an ``--out`` that cannot be a directory (a file, a file among its parents, a
  parent that is not writable) is refused before any work, naming the path.
- ``refuse_whitespace``: Verilator's and hls4ml's generated makefiles cannot build in a path with
  spaces; commands that run them refuse such a path up front instead of failing minutes later.
- ``staged``: a stage writes into a hidden sibling ``.NAME.partial`` and the finished directory is
  renamed into place, so ``NAME/`` is either absent or complete.
- ``RUN_FILES``: the layout of a flow run directory (flow writes it, report reads it).
- ``DirectoryLock``: one writer per directory (``saformer flow``); the second is refused with the
  first one's process id and command.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from saformer.errors import ConfigError, SaformerError

PARTIAL_SUFFIX = ".partial"

# The layout of a `saformer flow` run directory, in one place: the flow writes these files (the
# presence of each says its stage ran), the report reads them and cites them as its sources.
RUN_FILES = {"float": "float/metrics.json", "qat": "qat/metrics.json", "export": "export/export.json",
             "manifest": "export/manifest.json", "golden": "golden/golden.json", "accel": "accel/accel.json", "hls": "hls/hls.json",
             "rtl": "rtl/rtl.json", "synth": "synth/synth.json", "sweep": "sweep/sweep.json",
             "flow": "flow.json", "hardware": "hardware.json"}
EXPORT_DIR = "export"  # the integer export inside a run directory, read by every hardware stage
LOCK_FILE = ".saformer.lock"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a killed process never leaves half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def check_out_dir(path: Path | str, option: str = "--out") -> Path:
    """Refuse an output directory that cannot be created or written; creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} '{path}' is a file, not a directory")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{option} '{path}': '{probe}' is a file, so no directory can be made below it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} '{path}': '{probe}' is not writable")
    return path


def refuse_whitespace(path: Path | str, option: str, why: str) -> None:
    """Refuse a path whose absolute form holds whitespace, for tools whose makefiles break on it."""
    full = str(Path(path).absolute())
    if any(c.isspace() for c in full):
        raise ConfigError(f"{option} '{full}' contains whitespace; {why} cannot build there. "
                          "Choose a directory whose path has no spaces")


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}{PARTIAL_SUFFIX}"


def publish(partial: Path, final: Path) -> None:
    """Move a finished stage directory into place, replacing an older one; ``final`` is never
    half-written: it is the old directory until the rename, the new one after."""
    trash = final.parent / f".{final.name}.old"
    if trash.exists():
        shutil.rmtree(trash)
    if final.exists():
        os.replace(final, trash)
    os.replace(partial, final)
    relocate_json(final, partial, final)
    shutil.rmtree(trash, ignore_errors=True)


def relocate_json(root: Path, old: Path, new: Path) -> None:
    """Paths recorded while a stage ran in its partial directory name the published one."""
    pairs = [(str(old), str(new)), (str(Path(old).absolute()), str(Path(new).absolute()))]

    def fix(v: Any) -> Any:
        if isinstance(v, str):
            for old_s, new_s in pairs:
                if v == old_s or v.startswith(old_s + os.sep):
                    return new_s + v[len(old_s):]
            return v
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    for f in root.rglob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            continue  # not ours (a tool's file): leave it
        fixed = fix(data)
        if fixed != data:
            write_json(f, fixed)


class DirectoryLock:
    """An exclusive lock on a directory, held by an open file (released when the process ends,
    however it ends: no stale locks after a kill)."""

    def __init__(self, directory: Path, what: str) -> None:
        self.path = Path(directory) / LOCK_FILE
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> "DirectoryLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SaformerError(f"'{self.path.parent}' is in use by {holder}; wait for it to finish or stop it "
                                "(two flows in one directory would overwrite each other)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.what} (pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
