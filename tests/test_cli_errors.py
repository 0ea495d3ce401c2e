"""Every user error is one line on stderr and exit status 2, refused before any work: the command
writes nothing, creates no --out, and leaves the runs and exports it was pointed at untouched."""

import os
from pathlib import Path

import pytest

from saformer.cli import main
from saformer.config import get_config


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under the roots with its size and modification time."""
    files = {}
    for root in roots:
        for p in sorted(Path(root).rglob("*")):
            if p.is_file():
                st = p.stat()
                files[str(p)] = (st.st_size, st.st_mtime_ns)
    return files


def run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses before main's handler
        return exc.code


# {float}: a trained float run, {qat}: its QAT run, {export}: its export, {file}: a plain file,
# {new}: a path that does not exist (it must still not exist afterwards).
CASES = [
    (["train", "--out", "{new}", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["train", "--out", "{new}", "--batch-size", "-3"], "argument --batch-size: must be at least 1"),
    (["train", "--out", "{new}", "--n-agg", "0"], "argument --n-agg: must be at least 1"),
    (["train", "--out", "{new}", "--lr", "0"], "argument --lr: must be in (0.0"),
    (["train", "--out", "{new}", "--lr", "nan"], "argument --lr: must be in"),
    (["train", "--out", "{new}", "--max-minutes", "-1"], "argument --max-minutes: must be in [0.0"),
    (["train", "--out", "{new}", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["train", "--out", "{file}"], "is a file, not a directory"),
    (["train", "--out", "{file}/run"], "is a file, so no directory can be made below it"),
    (["train", "--out", "{float}"], "already holds a run; pass --resume"),
    (["train", "--resume", "--out", "{float}", "--epochs", "5"], "--epochs would change it"),
    (["train", "--resume", "--out", "{float}", "--dim", "32"], "--dim would change it"),
    (["train", "--resume", "--out", "{qat}"], "is a qat run; continue it with 'saformer quantize --resume'"),
    (["train", "--out", "{new}", "--data-dir", "/somewhere"], "digits ships inside scikit-learn"),
    (["train", "--out", "{new}", "--download"], "--download fetches CIFAR only"),
    (["train", "--out", "{new}", "--heads", "5"], "SASA works per channel and has none"),
    (["train", "--out", "{new}", "--n-agg", "3"], "N'=3 must divide the token count N=16"),
    (["train", "--out", "{new}", "--no-agg", "--n-agg", "4"], "--no-agg and --n-agg contradict"),
    (["train", "--out", "{new}", "--device", "bogus"], "--device 'bogus' is not a device"),
    (["eval", "{float}", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["eval", "{float}", "--data-dir", "/somewhere"], "digits ships inside scikit-learn"),
    (["eval", "{float}", "--out", "{file}"], "is a file, not a directory"),
    (["quantize", "{float}", "--out", "{new}", "--layer-bits", "blocks.9.mlp.fc1=4"],
     "--layer-bits names ['blocks.9.mlp.fc1'], which config 'saformer-2-64' does not have"),
    (["quantize", "{float}", "--out", "{new}", "--layer-bits", "head=four"], "--layer-bits takes NAME=BITS"),
    (["quantize", "{float}", "--out", "{new}", "--weight-bits", "1"], "must be in 2..16, got 1"),
    (["quantize", "{float}", "--out", "{new}", "--dim", "32"], "takes the model and data set of the float run"),
    (["quantize", "{float}", "--out", "{float}"], "is the float run itself"),
    (["quantize", "{qat}", "--out", "{new}"], "is a qat run; quantize starts from a float run"),
    (["quantize", "--out", "{new}"], "quantize needs a float run directory"),
    (["quantize", "--resume", "--out", "{float}"], "is a float run, not a QAT run"),
    (["quantize", "--resume", "--out", "{qat}", "--weight-bits", "4"], "--weight-bits would change it"),
    (["quantize", "--from-scratch", "--out", "{new}", "--attention", "ssa"], "the integer contract covers SASA only"),
    (["export", "{qat}", "--out", "{export}"], "already holds an integer export; choose another directory or pass --force"),
    (["export", "{qat}", "--out", "{float}", "--force"], "is a run directory, not an integer export"),
    (["export", "{qat}", "--out", "{new}", "--check-images", "0"], "argument --check-images: must be at least 1"),
    (["export", "{qat}", "--out", "{new}", "--check-images", "-4"], "argument --check-images: must be at least 1"),
    (["export", "{float}", "--out", "{new}"], "export needs a QAT run"),
    (["export", "{qat}", "--out", "{file}"], "is a file, not a directory"),
    (["golden", "{export}", "--limit", "0"], "argument --limit: must be at least 1"),
    (["golden", "{export}", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["golden", "{float}"], "is not an integer export: manifest.json is missing"),
    (["golden", "{export}", "--out", "{file}"], "is a file, not a directory"),
    (["rtl", "{export}", "--out", "{new}", "--lanes", "7"], "D=64 is not a multiple of the lane count P=7"),
    (["rtl", "{export}", "--out", "{new}", "--lanes", "0"], "argument --lanes/-P: must be at least 1"),
    (["rtl", "{export}", "--out", "{new}", "--images", "0"], "argument --images: must be at least 1"),
    (["rtl", "{export}", "--out", "{new}", "--p-idle", "1.5"], "argument --p-idle: must be in [0.0, 1.0)"),
    (["rtl", "{export}", "--out", "{new} with space"], "contains whitespace"),
    (["accel", "{float}", "--out", "{new}"], "is not an integer export: manifest.json is missing"),
    (["accel", "{export}", "--out", "{new}", "--images", "0"], "argument --images: must be at least 1"),
    (["accel", "{export}", "--out", "{file}"], "is a file, not a directory"),
    (["accel", "{export}", "--out", "{new} with space"], "contains whitespace"),
    (["hls", "{export}", "--out", "{new}", "--lanes", "0"], "argument --lanes/-P: must be at least 1"),
    (["hls", "{export}", "--out", "{new}", "--lanes", "5"], "D=64 is not a multiple of the lane count P=5"),
    (["hls", "{export}", "--out", "{new}", "--no-rtl", "--lanes", "8"], "which --no-rtl skips"),
    (["hls", "{export}", "--out", "{new}", "--stage", "blocks.7.qk"], "unknown hls stage(s) ['blocks.7.qk']"),
    (["hls", "{export}", "--out", "{new}", "--reuse-factor", "0"], "argument --reuse-factor: must be at least 1"),
    (["flow", "--out", "{new}", "--lanes", "7"], "D=64 is not a multiple of the lane count P=7"),
    (["flow", "--out", "{new}", "--sweep-n-agg", "4,3"], "--sweep-n-agg 3: config 'saformer-2-64': N'=3 must divide"),
    (["flow", "--out", "{new}", "--sweep-n-agg", "0"], "every value must be at least 1"),
    (["flow", "--out", "{new}", "--epochs", "0"], "argument --epochs: must be at least 1"),
    (["flow", "--out", "{new}", "--qat-epochs", "-2"], "argument --qat-epochs: must be at least 1"),
    (["flow", "--out", "{new}", "--n-agg", "0"], "argument --n-agg: must be at least 1"),
    (["flow", "--out", "{new}", "--attention", "sdsa"], "the integer contract covers SASA only"),
    (["flow", "--out", "{new}", "--weight-bits", "17"], "--weight-bits 17: choose 2..16"),
    (["flow", "--out", "{new}", "--skip", "train"], "argument --skip: invalid choice: 'train'"),
    (["flow", "--out", "{new} with space"], "contains whitespace"),
    (["flow", "--out", "{file}"], "is a file, not a directory"),
    (["report", "{new}"], "run directory"),
    (["accel", "{export}", "--out", "{new}", "--engine-lanes", "sps.conv9=4"], "--engine-lanes: 'sps.conv9=4' is not LAYER=N"),
    (["accel", "{export}", "--out", "{new}", "--engine-lanes", "sps.rpe=x"], "--engine-lanes: 'sps.rpe=x' is not LAYER=N"),
    (["accel", "{export}", "--out", "{new}", "--engine-lanes", "sps.rpe=5"], "sps.rpe=5: the lanes must divide its 64 outputs"),
    (["accel", "{export}", "--out", "{new}", "--engine-lanes", "sps.rpe=4", "--target-cycles", "9"],
     "--engine-lanes and --target-cycles both choose"),
    (["accel", "{export}", "--out", "{new}", "--weight-stream", "blocks.0.mlp.fc9"],
     "--weight-stream: 'blocks.0.mlp.fc9' is not a synaptic layer"),
    (["accel", "{export}", "--out", "{new}", "--weight-stream", "all", "--weight-latency", "1"],
     "weight_stream_latency must be an integer in [2, 4096] cycles, got 1"),
    (["accel", "{export}", "--out", "{new}", "--weight-latency", "8"], "--weight-latency is the external memory's"),
]


@pytest.fixture(scope="module")
def places(qat_runs, digits_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("misuse")
    afile = base / "a_file.txt"
    afile.write_text("not a directory\n")
    qrun, export = qat_runs[8]
    return {"float": str(digits_run), "qat": str(qrun), "export": str(export), "file": str(afile),
            "new": str(base / "new")}


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_misuse_is_one_line_exit_2_and_writes_nothing(argv, message, places, capsys):
    argv = [a.format(**places) for a in argv]
    before = snapshot(*(Path(places[k]) for k in ("float", "qat", "export")), Path(places["file"]).parent)
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0] and "Traceback" not in err, lines[0]
    assert "error:" in lines[0]
    assert not os.path.exists(places["new"]) and not os.path.exists(places["new"] + " with space")
    assert snapshot(*(Path(places[k]) for k in ("float", "qat", "export")), Path(places["file"]).parent) == before


def test_a_sasa_model_does_not_need_heads_to_divide_its_width():
    """--heads belongs to SSA/SDSA; D = 256 with the CIFAR config's 12 heads is a valid SASA model."""
    cfg = get_config("saformer-4-384").replace(dim=256)
    assert cfg.dim == 256 and cfg.attention == "sasa"
    with pytest.raises(ValueError, match="not divisible by heads=12"):
        cfg.replace(attention="ssa")
