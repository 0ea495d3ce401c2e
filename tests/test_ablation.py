"""benchmarks/ablation.py: which runs the paper's ablation makes for a config, and one real variant."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ablation  # noqa: E402


def planned(*argv):
    return {r["variant"]: r for r in ablation.plan(ablation.parse_args(list(argv)))}


def test_the_plan_follows_the_token_count():
    """N' must divide N: on digits (N = 16) N' = 64 is not applicable; the config's own N' is the
    sasa run, not a second training; at CIFAR geometry (N = 64, N' = 16) every N' runs."""
    digits = planned("--dataset", "digits", "--runs", "r")
    assert digits["sasa-n64"]["skipped"] == "N' = 64 does not divide N = 16 (N' in [1, 2, 4, 8, 16])"
    assert digits["sasa-n4"]["run"] == digits["sasa"]["run"] and digits["sasa-n4"]["same_as"] == "sasa"
    assert digits["ssa"]["flags"] == ["--attention", "ssa"] and digits["sasa-n16"]["flags"] == ["--n-agg", "16"]
    cifar = planned("--dataset", "cifar10", "--runs", "r")
    assert not any(r["skipped"] for r in cifar.values())
    assert cifar["sasa-n16"]["same_as"] == "sasa" and cifar["sasa-n64"]["run"] == str(Path("r") / "sasa-n64")
    assert len({r["run"] for r in cifar.values()}) == 7


def test_unknown_variants_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.parse_args(["--variants", "sasa,flash"])
    assert exc.value.code == 2 and "unknown flash" in capsys.readouterr().err


def test_one_variant_end_to_end_and_resumed(tmp_path):
    """A variant is trained, probed and tabulated; a second call trains nothing again."""
    argv = ["--variants", "sasa-no-dwc,sasa-n64", "--epochs", "1", "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "abl"), "--no-progress"]
    assert ablation.main(argv) == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "abl.json").read_text())["rows"]}
    row = rows["sasa-no-dwc"]
    assert row["done"] and row["dwc"] is False and row["epochs"] == 1
    assert row["accuracy_mask_all_ones"] is not None and len(row["cores"]) == 2
    assert rows["sasa-n64"]["skipped"] and not rows["sasa-n64"]["done"]
    table = (tmp_path / "abl.md").read_text()
    assert "| SASA without DWC | 154,306 |" in table and "not applicable: N' = 64" in table
    assert (tmp_path / "abl.png").stat().st_size > 0
    checkpoint = next((tmp_path / "runs" / "sasa-no-dwc").glob("*.pt"))
    before = checkpoint.stat().st_mtime_ns
    assert ablation.main(argv) == 0
    assert checkpoint.stat().st_mtime_ns == before


def test_a_table_of_unequal_budgets_says_so(tmp_path):
    """A run directory kept from a call with other epochs is not silently compared."""
    common = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "abl"), "--no-progress"]
    assert ablation.main(["--variants", "sasa-no-dwc", "--epochs", "1", *common]) == 0
    assert "Equal budgets: every variant 1 epoch," in (tmp_path / "abl.md").read_text()
    assert ablation.main(["--variants", "sasa-no-dwc,sdsa", "--epochs", "2", *common]) == 0
    assert "**Unequal budgets**: the runs have 1, 2 epochs" in (tmp_path / "abl.md").read_text()
