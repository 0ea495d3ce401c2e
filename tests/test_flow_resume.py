"""`saformer flow` survives interruption: a flow killed during training and again during QAT
finishes on rerun with the same results as a flow that was never stopped; a changed option redoes
exactly the stages it affects; a second flow on the same directory is refused; a stopped command
takes its child processes with it."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from saformer.cli import main
from saformer.rundir import DirectoryLock

# A tiny model and no hardware stages: the point here is the stage machinery, not the hardware.
TINY = ["--dim", "16", "--depth", "1", "--epochs", "3", "--qat-epochs", "2", "--check-images", "8",
        "--skip", "accel", "--skip", "hls", "--skip", "rtl", "--skip", "synth", "--no-progress"]
REPO = Path(__file__).resolve().parents[1]


def flow_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "saformer.cli", "flow", "--out", str(out), *TINY]


def stop_when(out: Path, watched: Path, sig: int, timeout: float = 600) -> tuple[int, str]:
    """Start a flow, send ``sig`` once ``watched`` exists (a checkpoint mid-stage), return its status."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(flow_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + timeout
    while not watched.exists():
        assert proc.poll() is None, f"the flow ended before {watched} appeared:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the checkpoint"
        time.sleep(0.05)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    return proc.returncode, output


def comparable(report: dict) -> dict:
    """The results of a report, without clocks and paths."""
    return {k: report[k] for k in ("config", "dataset", "model_config", "weight_bits", "accuracy", "bit_exact", "energy")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow_ref") / "run"
    assert main(["flow", "--out", str(out), *TINY]) == 0
    return out


def test_a_flow_killed_in_training_and_in_qat_finishes_with_the_same_results(reference, tmp_path, capsys):
    out = tmp_path / "run"
    rc, log = stop_when(out, out / ".float.partial" / "checkpoint.pt", signal.SIGTERM)
    assert rc == 143, log
    assert "stopped by SIGTERM" in log
    assert not (out / "float").exists() and (out / ".float.partial").is_dir()  # never half published

    rc, log = stop_when(out, out / ".qat.partial" / "checkpoint.pt", signal.SIGINT)
    assert rc == 130, log
    assert "continuing the interrupted train stage" in log and "[1/10] train: done" in log
    assert (out / "float" / "metrics.json").is_file() and not (out / "qat").exists()

    assert main(["flow", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "[1/10] train: up to date" in printed and "continuing the interrupted quantize stage" in printed
    assert not list(out.glob(".*.partial"))
    for stage in ("float", "qat"):  # metrics.json holds no clock: resumed == uninterrupted, value for value
        a = json.loads((reference / stage / "metrics.json").read_text())
        b = json.loads((out / stage / "metrics.json").read_text())
        assert a == b, stage
    ref_report = json.loads((reference / "report.json").read_text())
    assert comparable(json.loads((out / "report.json").read_text())) == comparable(ref_report)
    assert any(row["verdict"] == "bit-exact" for row in ref_report["bit_exact"])
    assert "run_dir" not in a and str(out / ".qat.partial") not in (out / "qat" / "run.json").read_text()


def test_a_changed_option_redoes_exactly_the_stages_it_affects(reference, capsys):
    assert main(["flow", "--out", str(reference), *TINY, "--check-images", "4"]) == 0
    printed = capsys.readouterr().out
    for stage in ("train", "quantize"):
        assert f"{stage}: up to date" in printed
    for stage in ("export", "golden", "sweep", "report"):
        assert f"{stage}: done" in printed
    for stage in ("hls", "rtl", "synth"):
        assert f"{stage}: skipped" in printed
    assert json.loads((reference / "export" / "export.json").read_text())["golden_vs_qat"]["images"] == 4


def test_a_second_flow_on_the_same_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    with DirectoryLock(out, "saformer flow"):
        assert main(["flow", "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"is in use by saformer flow (pid {os.getpid()}" in err and len(err.strip().splitlines()) == 1
    assert not (out / "flow.json").exists()


SPAWNER = textwrap.dedent("""
    import subprocess, sys, time
    from saformer.procs import stop_children_on_exit
    with stop_children_on_exit():
        # a child with a child of its own, as make -> g++ or cocotb -> Verilator
        subprocess.run(["sh", "-c", "sleep 300 & sleep 300"])
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stopped_command_ends_its_children_and_grandchildren(sig):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SPAWNER], env=env, stderr=subprocess.PIPE)
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 30
    while len(me.children(recursive=True)) < 3:  # sh and its two sleeps
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    descendants = me.children(recursive=True)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(descendants, timeout=10)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after {signal.Signals(sig).name}: {alive}"
    assert proc.returncode != 0
