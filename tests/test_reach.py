"""Every level (QAT, golden, hls4ml C simulation, RTL) on stimuli that reach what the trained digits
models never do: saturation of every kind of membrane-format value, in both directions, and the
event-frame input path (DVS: conv1 at every step) at a 12-bit membrane and 24-bit accumulators.

The exports are crafted (tests/crafted.py), not trained, so each runs in seconds; they are also
what the mutation harness (tools/mutation.py) runs against the planted faults.
"""

import numpy as np
import pytest

from saformer.hls.flow import HlsOptions, run_stage
from saformer.hls.stages import build_stages
from saformer.quant.fixed_point import int_range
from saformer.quant.golden import GoldenModel
from saformer.quant.qat import integer_traces
from saformer.quant.stages import compare_traces
from saformer.rtl_sim.core import params_from_export
from saformer.rtl_sim.cosim import layer_stimulus
from saformer.rtl_sim.sim import simulate
from tests.crafted import FRAMES, STATIC, crafted_export, crafted_inputs, membrane_keys, saturation_reach

SPECS = {"static": STATIC, "frames": FRAMES}
IMAGES = 3


@pytest.fixture(scope="module", params=list(SPECS))
def crafted(request, tmp_path_factory):
    spec = SPECS[request.param]
    out = tmp_path_factory.mktemp(f"crafted_{request.param}")
    model, ex = crafted_export(spec, out / "export")
    x, x_int = crafted_inputs(spec, IMAGES)
    _, traces = GoldenModel(ex).forward(x_int, trace=True)
    return request.param, model, ex, x, x_int, traces, out


def test_the_stimuli_saturate_every_kind_of_value(crafted):
    """Not a check of equality but of reach: the comparisons below see saturated values of every
    kind, both signs, next to values inside the range, and neurons that neither never nor always fire."""
    name, _, ex, _, x_int, traces, _ = crafted
    reach = saturation_reach(traces, ex.qcfg.membrane_bits)
    kinds = membrane_keys(traces)
    assert all(kinds.values()) and sum(map(len, kinds.values())) == len(reach) == 11
    for key, r in reach.items():
        assert r["top"] > 0.01 and r["bottom"] > 0.01 and r["inside"] > 0.05, (key, r)
    for key in (k for k in traces if k.endswith(".s")):
        assert 0.1 < traces[key].mean() < 0.9, (key, traces[key].mean())
    if name == "frames":  # event counts past the input range saturate before conv1
        assert x_int.ndim == 5 and x_int.max() == int_range(8)[1]
    # both branches of to_membrane: static shifts left (exact), frames shift right (floor)
    shifts = {n: spec["out_shift"] for n, spec in ex.manifest["layers"].items()
              if spec["out_shift"] is not None and n != "sps.convs.0"}
    assert all((s > 0) == (name == "frames") and s != 0 for s in shifts.values()), shifts


def test_qat_model_equals_golden_model_on_every_trace(crafted):
    _, model, _, x, _, traces, _ = crafted
    q_traces = integer_traces(model, x)
    assert len(traces) == 29 and set(q_traces) == set(traces)
    assert compare_traces(traces, q_traces) == {k: 0 for k in traces}


def test_hls_c_simulation_equals_golden_model(crafted):
    """Every stage, every traced layer (the saturating types of conv, pool, add), frame inputs included."""
    _, _, ex, _, x_int, traces, out = crafted
    checked = set()
    for stage in build_stages(ex):
        record, _ = run_stage(stage, HlsOptions(), out / "hls" / stage.name, ex, x_int, traces)
        assert record["calls"] == IMAGES * ex.cfg.time_steps
        for c in record["checks"]:
            assert c["values"] > 0 and c["mismatches"] == 0, (stage.name, c)
            checked.add(c["golden"])
    for kind, keys in membrane_keys(traces).items():  # the HLS checks see every kind of saturated value
        if kind != "SASA drive":  # the SASA core is RTL, not hls4ml
            assert set(keys) <= checked, (kind, set(keys) - checked)


@pytest.mark.parametrize("lanes", [4, 32])
def test_rtl_sasa_core_equals_golden_model(crafted, lanes):
    """The core at the export's membrane format and accumulator width (Q16.8 / 32 bits and Q12.4 / 24
    bits), LIF_o drives saturated both ways by the DWC branch, stall-free and with stalls."""
    _, _, ex, _, _, traces, out = crafted
    params, dwc = params_from_export(ex, "blocks.0.attn", lanes)
    q, k, o = layer_stimulus(ex, traces, "blocks.0.attn")
    assert (params.MEM_BITS, params.ACC_BITS) == (ex.qcfg.membrane_bits, ex.qcfg.accumulator_bits)
    build = out / "rtl" / f"p{lanes}"
    clean = simulate(params, q, k, o, dwc, build, samples=IMAGES, name="saturating")
    assert clean.bit_exact and clean.cycles_match, clean
    stalled = simulate(params, q, k, o, dwc, build, samples=IMAGES, name="saturating_stalls", p_idle=0.3,
                       p_backpressure=0.3, seed=5)
    assert stalled.bit_exact and stalled.total > clean.total
    assert np.array_equal(o, o.astype(bool)) and 0 < o.mean() < 1
