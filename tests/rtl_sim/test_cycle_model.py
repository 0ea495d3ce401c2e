"""The exact cycle model (saformer.rtl_sim.cycle_model) beyond the default top (test_accel,
test_balance): without the engines' input FIFOs and at other lanes, where back-pressure reaches
further; its refusals; and a deadlock named, not a hang."""

import numpy as np
import pytest

from saformer.config import HardwareConfig
from saformer.errors import ConfigError
from saformer.quant.export import load_export
from saformer.quant.golden import GoldenModel
from saformer.quant.stages import integer_batches
from saformer.rtl_sim.accel import build_top, generate_top, run_top
from saformer.rtl_sim.cycle_model import CycleModelError, _Solver, encoder_counts, model_top


@pytest.fixture(scope="module")
def digits(qat_runs):
    ex = load_export(qat_runs[8][1])
    _, x, _ = next(integer_batches(ex.manifest["dataset"], ex.cfg, ex.qcfg, None, 4, 4))
    return ex, x, GoldenModel(ex).forward(x, trace=True)[1]


def test_without_engine_fifos_at_two_lanes_every_beat_is_predicted(digits, tmp_path):
    """No FIFO in front of the engines: an engine's drain stalls its producer's, back to the image.
    The top cut after the first SASA core, at 2 lanes: every output beat's cycle as simulated, with
    the output always ready and with a fixed back-pressure."""
    ex, x, traces = digits
    design, harness, _ = build_top(ex, HardwareConfig(lanes=2, engine_fifo_steps=0), tmp_path, output="blocks.0.attn")
    assert not any(b["block"] == "stream_fifo" and b["instance"].endswith("_fifo") for b in design.blocks)
    r = run_top(design, harness, x)
    model = model_top(design, ex, encoder_counts(design, ex, x, traces))
    assert np.array_equal(model.cycles_per_image, r.cycles_per_image), (model.cycles_per_image, r.cycles_per_image)
    assert model.out_cycles[-1] + 1 == r.total
    # the output taken on every K-th cycle only: back-pressure through the SASA core's skid buffer
    # and LIF_o into its input side, which then holds two steps (K = 150: the output is the slower)
    counts = encoder_counts(design, ex, x, traces)
    for k in (3, 150):
        held = run_top(design, harness, x, ready_every=k)
        model = model_top(design, ex, counts, ready_every=k)
        assert np.array_equal(held.logits, r.logits) and held.total > r.total
        assert np.array_equal(model.cycles_per_image, held.cycles_per_image), (k, model.cycles_per_image, held.cycles_per_image)


def test_counts_that_do_not_fit_the_design_are_refused(digits):
    """Counts of other encoders, of different image counts, and a ready pattern that is not a period."""
    ex, x, traces = digits
    design = generate_top(ex, HardwareConfig(), None)
    counts = encoder_counts(design, ex, x, traces)
    with pytest.raises(ConfigError, match=r"counts for .* but the design's encoders are"):
        model_top(design, ex, {k: v for k, v in counts.items() if k != "logits"})
    with pytest.raises(ConfigError, match=r"cover different numbers of images: \[3, 4\]"):
        model_top(design, ex, {k: (v[:3] if k == "logits" else v) for k, v in counts.items()})
    with pytest.raises(ConfigError, match="ready_every must be a positive integer, got 0"):
        model_top(design, ex, counts, ready_every=0)


def test_chains_that_wait_on_each_other_are_named():
    """Two chains, each waiting for what only the other would compute: the solver names both
    instead of hanging (a wrongly split block, or a true deadlock of the hardware)."""
    sv = _Solver()
    a, b = sv.seq("a.xfer"), sv.seq("b.xfer")

    def chain(mine, theirs):
        while len(theirs) < 1:
            yield theirs
        sv.put(mine, theirs[0] + 1)

    sv.chain("left", chain(a, b))
    sv.chain("right", chain(b, a))
    with pytest.raises(CycleModelError, match=r"2 chains wait on each other \(a deadlock\)") as caught:
        sv.run()
    assert "left waits on b.xfer[0]" in str(caught.value) and "right waits on a.xfer[0]" in str(caught.value)
