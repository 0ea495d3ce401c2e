"""A finished float run, carried from one lent GPU session to the next (docs/gpu.md).

    python tools/gpu_carry.py pack RUN_DIR OUT      # on the device, after 'train'
    python tools/gpu_carry.py unpack CARRY RUN_DIR  # on the device, before 'quant' in a later session

Why: a session has 15 minutes of device time and a machine keeps nothing once given back, while
training saformer-4-384 and fine-tuning it at two widths do not both fit one session with time to
spare. The float run is the one result that only a GPU can make again, so it comes back: its
run.json, metrics.json, timing.json and its weights (the checkpoint without the optimiser's state,
which is twice the weights' size and needed only to resume a run that already finished). A file
that comes back may be at most 16 MiB, so the tar is cut into parts (``float.tar.00``, ...) with a
manifest (``float.json``) holding the sha256 of every part and of the whole; ``unpack`` refuses
a missing, extra or altered part in one line (exit status 2) before it writes anything.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a clone without the package installed

MANIFEST = "float.json"
PART_BYTES = 15 * 2**20  # under the device tool's 16 MiB a returned file
RUN_FILES = ("run.json", "metrics.json", "timing.json")
SCHEMA = 1


class CarryError(Exception):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_only(checkpoint: Path) -> bytes:
    """The checkpoint without the optimiser's and the schedule's state (what `saformer quantize`,
    `eval` and `export` read: the config, the weights, the history)."""
    import torch

    from saformer.model.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint.parent)
    state = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")}
    state["weights_only"] = True
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def pack(run_dir: Path, out: Path) -> dict:
    metrics = run_dir / "metrics.json"
    if not metrics.is_file() or not json.loads(metrics.read_text()).get("complete", False):
        raise CarryError(f"'{run_dir}' is not a finished training run (its metrics.json does not say complete)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                tar.add(run_dir / name, arcname=name)
        data = weights_only(run_dir / "checkpoint.pt")
        info = tarfile.TarInfo("checkpoint.pt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    whole = buf.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(0, len(whole), PART_BYTES):
        name = f"float.tar.{i // PART_BYTES:02d}"
        chunk = whole[i:i + PART_BYTES]
        (out / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": sha256(chunk)})
    manifest = {"schema": SCHEMA, "what": "a finished float run, weights only (tools/gpu_carry.py)",
                "bytes": len(whole), "sha256": sha256(whole), "parts": parts}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_parts(carry: Path) -> bytes:
    """The whole tar from CARRY's parts, every part and the whole checked against the manifest."""
    path = carry / MANIFEST
    if not path.is_file():
        raise CarryError(f"'{carry}' holds no {MANIFEST}: not a float run packed by gpu_carry.py")
    try:
        manifest = json.loads(path.read_text())
        parts = manifest["parts"]
        if manifest.get("schema") != SCHEMA:
            raise CarryError(f"'{path}' has schema {manifest.get('schema')!r}; this version reads {SCHEMA}")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CarryError(f"'{path}' is not a valid manifest ({exc})") from None
    names = {p["name"] for p in parts}
    extra = sorted(p.name for p in carry.glob("float.tar.*") if p.name not in names)
    if extra:
        raise CarryError(f"'{carry}' holds parts the manifest does not list: {extra}")
    chunks = []
    for p in parts:
        f = carry / p["name"]
        if not f.is_file():
            raise CarryError(f"'{carry}' lacks part '{p['name']}' of {len(parts)}")
        chunk = f.read_bytes()
        if len(chunk) != p["bytes"] or sha256(chunk) != p["sha256"]:
            raise CarryError(f"part '{f}' is not the one packed ({len(chunk)} bytes, sha256 differs)")
        chunks.append(chunk)
    whole = b"".join(chunks)
    if sha256(whole) != manifest["sha256"]:
        raise CarryError(f"the parts in '{carry}' join into something other than what was packed")
    return whole


def unpack(carry: Path, run_dir: Path) -> str:
    whole = read_parts(carry)
    if (run_dir / "metrics.json").is_file():
        raise CarryError(f"'{run_dir}' already holds a run; remove it to unpack '{carry}' there")
    with tempfile.TemporaryDirectory(dir=run_dir.parent if run_dir.parent.is_dir() else None) as tmp:
        with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
            tar.extractall(tmp, filter="data")
        from saformer.model.checkpoint import read_run

        read_run(Path(tmp))  # a run.json the stages can read
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp, run_dir, dirs_exist_ok=True)
    return json.loads((run_dir / "metrics.json").read_text()).get("config", "?")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="a finished run's weights, in parts, into OUT")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack", help="the parts in CARRY, checked, into RUN_DIR")
    u.add_argument("carry", type=Path)
    u.add_argument("run_dir", type=Path)
    args = ap.parse_args(argv)
    from saformer.errors import SaformerError

    try:
        if args.cmd == "pack":
            m = pack(args.run_dir, args.out)
            print(f"gpu_carry: packed '{args.run_dir}' into {len(m['parts'])} parts ({m['bytes'] / 2**20:.1f} MiB) "
                  f"in '{args.out}'")
        else:
            config = unpack(args.carry, args.run_dir)
            print(f"gpu_carry: unpacked the float run of {config} from '{args.carry}' into '{args.run_dir}'")
    except (CarryError, SaformerError, OSError, tarfile.TarError) as exc:
        print(f"gpu_carry: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
