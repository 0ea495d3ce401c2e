"""Property: whatever argument list a user types, parsing and the up-front checks end in a clean
result (exit 0) or a clean refusal (exit 2, one line), never in an exception escaping, and they
write nothing. The stages themselves do not run (``main(..., check_only=True)``)."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saformer.cli import main
from tests.test_cli_errors import snapshot

COMMANDS = ["train", "eval", "quantize", "export", "golden", "rtl", "hls", "flow", "report"]
OPTIONS = ["--out", "--epochs", "--qat-epochs", "--batch-size", "--lanes", "-P", "--n-agg", "--no-agg", "--no-dwc",
           "--dim", "--depth", "--heads", "-T", "--attention", "--config", "--dataset", "--data-dir", "--resume",
           "--from-scratch", "--layer-bits", "--weight-bits", "--limit", "--images", "--hls-images", "--rtl-images",
           "--check-images", "--p-idle", "--p-backpressure", "--sweep-n-agg", "--skip", "--device", "--force",
           "--stage", "--no-rtl", "--reuse-factor", "--strategy", "--backend", "--clock-period", "--lr",
           "--max-minutes", "--seed", "--label-smoothing", "--warmup-epochs", "--download", "--no-pnr",
           "--hls-config", "--workers"]
WORDS = ["0", "1", "-1", "3", "4", "7", "8", "16", "64", "1.5", "nan", "inf", "-0.5", "", "x", "1,4", "4,3", "0,2",
         "digits", "cifar10", "sasa", "ssa", "saformer-2-64", "saformer-9-9", "cpu", "cuda:3", "meta", "hls",
         "synth", "head=4", "nope=3", "blocks.0.qk", "Vitis", "Latency"]


@pytest.fixture(scope="module")
def paths(qat_runs, digits_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    (base / "file.txt").write_text("x\n")
    qrun, export = qat_runs[8]
    return base, [str(digits_run), str(qrun), str(export), str(base / "file.txt"), str(base / "new"),
                  str(base / "with space"), "/nonexistent/x", str(base / "file.txt" / "sub")]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_any_argument_list_is_handled_cleanly(data, paths, capsys):
    base, places = paths
    token = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(WORDS), st.sampled_from(places),
                      st.text(max_size=6))
    argv = [data.draw(st.sampled_from(COMMANDS))] + data.draw(st.lists(token, max_size=8))
    before = snapshot(*map(Path, places[:3]), base)
    try:
        status = main(argv, check_only=True)
    except SystemExit as exc:  # argparse: --help (0) or a refusal (2)
        status = exc.code
    out = capsys.readouterr()
    assert status in (0, 2), (argv, status)
    if status == 2:
        assert len(out.err.strip().splitlines()) == 1, (argv, out.err)
        assert "Traceback" not in out.err
    assert snapshot(*map(Path, places[:3]), base) == before, argv
