"""The synthesized SASA core has no multiplier: 0 DSP blocks and 0 $mul cells (Yosys, synth_xilinx)."""

import pytest

from saformer.rtl_sim.core import SOURCES, SasaCoreParams
from saformer.rtl_sim.synth import synthesize


@pytest.mark.parametrize("params", [
    SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=16, T=4, P=4, DWC_SHIFT=-2),
    SasaCoreParams(N=12, N_AGG=3, GRID_H=3, GRID_W=4, D=12, T=2, P=3),  # constants that are not powers of two
], ids=["D16-P4", "D12-P3-grid3x4"])
def test_no_multiplier_in_the_netlist(params, tmp_path):
    r = synthesize(params, tmp_path)
    assert r["mul_cells_before_mapping"] == 0
    assert r["resources"]["DSP"] == 0
    # the datapath is really there (a design optimised away would also have no DSP)
    assert r["resources"]["LUT"] > 100 and r["resources"]["FF"] > 20 and r["resources"]["CARRY"] > 0


def test_a_planted_multiplier_is_counted(tmp_path, monkeypatch):
    """The positive control of the counter: the score update written with a product of two counts."""
    import saformer.rtl_sim.synth as synth_module

    original = SOURCES[0].read_text()
    addition = "+ SCORE_BITS'(q & k);"
    assert original.count(addition) == 1
    planted = tmp_path / "src" / SOURCES[0].name
    planted.parent.mkdir()
    planted.write_text(original.replace(addition, "+ SCORE_BITS'(qc) * SCORE_BITS'(kc);"))
    monkeypatch.setattr(synth_module, "SOURCES", [planted, *SOURCES[1:]])  # the core's submodules unchanged
    r = synthesize(SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=8, T=2, P=4), tmp_path / "work")
    assert r["mul_cells_before_mapping"] == 4  # one per lane
