"""The SASA core against the golden model, spike for spike, and against its cycle model, cycle for cycle.

Each parameter set is built once per session (Verilator, 20-40 s); stimuli and DWC weights change
between runs without a rebuild. Seeds are fixed and named in each case.
"""

import json
import subprocess

from dataclasses import replace

import numpy as np
import pytest

from saformer.cli import main
from saformer.errors import ConfigError
from saformer.quant.golden import sasa_core
from saformer.rtl_sim.core import SOURCES, SasaCoreParams, cycle_model
from saformer.rtl_sim.sim import fst_available, simulate, verilator_env


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("rtl_builds")


def reference(p: SasaCoreParams, q, k, w, b, samples):
    """Expected O from the golden model's SASA function, samples streamed back to back."""
    def to_golden(x):  # (samples*T, N, D) -> (T, samples, N, D)
        return x.reshape(samples, p.T, p.N, p.D).transpose(1, 0, 2, 3)
    dwc = (w, b, p.DWC_SHIFT) if p.DWC else None
    out = sasa_core(to_golden(q), to_golden(k), p.N_AGG, (p.GRID_H, p.GRID_W), p.THETA_A, p.THETA_O,
                    p.MEM_FRAC, p.MEM_BITS, dwc=dwc)
    return {key: v.transpose(1, 0, *range(2, v.ndim)).reshape(samples * p.T, *v.shape[2:]) for key, v in out.items()}


def random_case(p: SasaCoreParams, seed: int, samples: int = 2, rate_q=0.4, rate_k=0.4, w_scale=60, b_scale=100):
    rng = np.random.default_rng(seed)
    shape = (samples * p.T, p.N, p.D)
    q = (rng.random(shape) < rate_q).astype(np.int64)
    k = (rng.random(shape) < rate_k).astype(np.int64)
    w = rng.integers(-w_scale, w_scale + 1, (p.D, 1, 3, 3))
    b = rng.integers(-b_scale, b_scale + 1, p.D)
    return q, k, w, b


def run_case(p, build_root, name, q, k, w, b, samples=2, **stalls):
    expected = reference(p, q, k, w, b, samples)
    r = simulate(p, q, k, expected["o"], (w, b) if p.DWC else None, build_root / build_name(p), samples=samples,
                 name=name, **stalls)
    return r, expected


def build_name(p: SasaCoreParams) -> str:
    return "_".join(f"{k}{v}" for k, v in p.as_hdl(None).items() if not k.endswith("_FILE"))


SMALL = SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=16, T=4, P=4, THETA_A=8, THETA_O=128, DWC_SHIFT=-2)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_spikes_stall_free_and_cycle_exact(build_root, seed):
    q, k, w, b = random_case(SMALL, seed)
    r, expected = run_case(SMALL, build_root, f"random{seed}", q, k, w, b)
    assert expected["o"].any() and expected["mask"].any() and not expected["mask"].all()
    assert r.bit_exact, f"{r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert (r.first_output, r.total) == (r.predicted.first_output, r.predicted.total)


@pytest.mark.parametrize("p_idle, p_backpressure, seed", [(0.3, 0.0, 3), (0.0, 0.5, 4), (0.5, 0.5, 5)])
def test_random_stalls_and_backpressure(build_root, p_idle, p_backpressure, seed):
    q, k, w, b = random_case(SMALL, seed)
    r, _ = run_case(SMALL, build_root, f"stalls{seed}", q, k, w, b, p_idle=p_idle, p_backpressure=p_backpressure, seed=seed)
    assert r.bit_exact, f"{r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert r.total > r.predicted.total  # the stalls really happened


def test_one_beat_per_token_under_backpressure(build_root):
    """P = D: LIF_a's mask reaches the output side through its bypass, which must pick the step being
    emitted: back-pressure holds the output pass on step t while the mask of step t+1 arrives."""
    p = replace(SMALL, P=SMALL.D)
    q, k, w, b = random_case(p, 6, samples=3, rate_q=0.5, rate_k=0.5)
    r, expected = run_case(p, build_root, "one_beat_stalls", q, k, w, b, samples=3, p_backpressure=0.5, seed=6)
    assert 0.3 < expected["mask"].mean() < 0.7  # masks that change from step to step
    assert r.bit_exact, f"{r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert r.total > r.predicted.total


@pytest.mark.parametrize("case", ["no_spikes", "all_spikes", "saturation"])
def test_corner_cases(build_root, case):
    q, k, w, b = random_case(SMALL, 7)
    if case == "no_spikes":
        q[:], k[:] = 0, 0
    elif case == "all_spikes":
        q[:], k[:] = 1, 1
    else:  # DWC accumulators far outside the membrane range, both signs; weights at both ends of W_BITS
        lo, hi = -(1 << (SMALL.W_BITS - 1)), (1 << (SMALL.W_BITS - 1)) - 1
        b = np.where(np.arange(SMALL.D) % 2, 1 << 20, -(1 << 20))
        w = np.where(np.arange(SMALL.D)[:, None, None, None] % 2, hi, lo) + 0 * w
    r, expected = run_case(SMALL, build_root, case, q, k, w, b)
    if case == "saturation":
        drive = expected["drive"]
        assert drive.max() == 32767 and drive.min() == -32768
    assert r.bit_exact, f"{case}: {r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert r.total == r.predicted.total


@pytest.mark.parametrize("params", [
    # N' = 1 (one window of all tokens), T = 1, one lane, a right shift
    SasaCoreParams(N=16, N_AGG=1, GRID_H=4, GRID_W=4, D=8, T=1, P=1, THETA_A=32, THETA_O=128, DWC_SHIFT=2),
    # N' = N (no aggregation), all channels in one beat, no DWC branch
    SasaCoreParams(N=16, N_AGG=16, GRID_H=2, GRID_W=8, D=16, T=3, P=16, THETA_A=1, THETA_O=128, DWC=0),
    # lanes that are not a power of two, a non-square grid
    SasaCoreParams(N=12, N_AGG=3, GRID_H=3, GRID_W=4, D=12, T=2, P=3, THETA_A=8, THETA_O=128, DWC_SHIFT=0),
], ids=["nagg1-T1-P1", "nagg=N-P=D-nodwc", "P3-grid3x4"])
def test_other_geometries(build_root, params):
    q, k, w, b = random_case(params, 11, rate_q=0.6, rate_k=0.6)
    r, expected = run_case(params, build_root, "geometry", q, k, w, b)
    assert expected["o"].any()
    assert r.bit_exact, f"{r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert (r.first_output, r.total) == (r.predicted.first_output, r.predicted.total)
    r2, _ = run_case(params, build_root, "geometry_stalls", q, k, w, b, p_idle=0.3, p_backpressure=0.3, seed=12)
    assert r2.bit_exact


@pytest.mark.parametrize("mem_bits, mem_frac, acc_bits, shift", [(8, 1, 16, 0), (24, 12, 40, 4), (32, 20, 48, 8)],
                         ids=["Q8.1-acc16", "Q24.12-acc40", "Q32.20-acc48"])
def test_other_membrane_formats_and_accumulator_widths(build_root, mem_bits, mem_frac, acc_bits, shift):
    """The narrowest and widest formats the export allows (DWC weights up to 44 bits wide), the LIF_o
    drive saturated both ways and inside the range too."""
    p = SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=8, T=3, P=4, MEM_BITS=mem_bits, MEM_FRAC=mem_frac,
                       THETA_A=8, THETA_O=1 << mem_frac, ACC_BITS=acc_bits, W_BITS=acc_bits - 4, DWC_SHIFT=shift)
    q, k, _, _ = random_case(p, 31, rate_q=0.5, rate_k=0.5)
    rng = np.random.default_rng(32)
    top = 1 << (acc_bits - 5)  # nine taps and the bias stay inside the accumulator
    w = rng.integers(-top, top, (p.D, 1, 3, 3)) >> rng.integers(0, acc_bits - 6, (p.D, 1, 3, 3))
    b = rng.integers(-top, top, p.D)
    r, expected = run_case(p, build_root, "formats", q, k, w, b)
    lo, hi = -(1 << (mem_bits - 1)), (1 << (mem_bits - 1)) - 1
    drive = expected["drive"]
    assert (drive == hi).any() and (drive == lo).any() and ((drive > lo) & (drive < hi)).any()
    assert 0 < expected["o"].mean() < 1
    assert r.bit_exact, f"{r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert (r.first_output, r.total) == (r.predicted.first_output, r.predicted.total)


def test_a_wrong_expectation_is_caught(build_root):
    q, k, w, b = random_case(SMALL, 1)
    expected = reference(SMALL, q, k, w, b, 2)["o"].copy()
    expected[3, 5, 2] ^= 1
    r = simulate(SMALL, q, k, expected, (w, b), build_root / build_name(SMALL), samples=2, name="wrong")
    assert not r.bit_exact and r.mismatching_beats == 1
    assert r.waves is not None and r.waves.exists()  # a waveform for the failing run
    assert r.waves.suffix == (".fst" if fst_available() else ".vcd")


def test_real_export_every_sasa_layer(qat_runs, tmp_path):
    """`saformer rtl` on the exported digits model: real Q/K spikes from the golden model."""
    _, export = qat_runs[8]
    assert main(["rtl", str(export), "--out", str(tmp_path), "--lanes", "8", "--images", "3"]) == 0
    r = json.loads((tmp_path / "rtl.json").read_text())
    assert len(r["layers"]) == 2 and r["all_bit_exact"] and r["all_cycles_match"]
    for layer in r["layers"]:
        assert layer["output_spikes"] > 0 and layer["cycles"] == layer["predicted_cycles"]
        assert layer["cycles_with_stalls"] > layer["cycles"]  # the stalls really happened


def test_parameter_sets_the_core_cannot_take_are_refused():
    with pytest.raises(ConfigError, match=r"D=16 is not a multiple of the lane count P=5; choose P among \[1, 2, 4, 8, 16\]"):
        SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=16, T=4, P=5)
    with pytest.raises(ConfigError, match="token grid 4x3 does not hold N=16"):
        SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=3, D=16, T=4, P=4)
    with pytest.raises(ConfigError, match="N'=5 does not divide N=16"):
        SasaCoreParams(N=16, N_AGG=5, GRID_H=4, GRID_W=4, D=16, T=4, P=4)
    with pytest.raises(ConfigError, match="THETA_O=40000 does not fit the 16-bit membrane"):
        SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=16, T=4, P=4, THETA_O=40000)


@pytest.mark.parametrize("overrides", [{}, {"P": 1}, {"T": 1, "N_AGG": 1}, {"P": 64, "DWC": 0}, {"D": 12, "P": 3},
                                       {"DWC_SHIFT": -3, "ACC_BITS": 16}, {"DWC_SHIFT": 5}])
def test_verilator_lint_is_clean(overrides):
    args = [f"-G{k}={v}" for k, v in overrides.items()] + ['-GDWC_FILE="x.hex"', '-GDWC_BIAS_FILE="y.hex"']
    env = {**__import__("os").environ, **verilator_env()}
    out = subprocess.run(["verilator", "--lint-only", "-Wall", *map(str, SOURCES), *args],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "%Warning" not in out.stderr, out.stderr


def test_fast_path_pyverilator_matches_golden_and_cycle_model(tmp_path):
    from saformer.rtl_sim.fast import FastCore

    q, k, w, b = random_case(SMALL, 21, samples=3)
    expected = reference(SMALL, q, k, w, b, 3)["o"]
    core = FastCore(SMALL, tmp_path, (w, b))
    for _ in range(2):  # a second run after reset gives the same spikes
        r = core.run(q, k, samples=3)
        np.testing.assert_array_equal(r.o, expected)
        c = cycle_model(SMALL, samples=3)
        assert (r.first_output, r.total) == (c.first_output, c.total)


def divisors(d: int) -> list[int]:
    return [p for p in range(1, d + 1) if d % p == 0]


@pytest.mark.parametrize("lanes", divisors(64))
def test_every_lane_count_up_to_d(build_root, lanes):
    """P = 1 .. D for D = 64: beats of 64 lanes and more once overflowed the bench's packing."""
    p = SasaCoreParams(N=16, N_AGG=4, GRID_H=4, GRID_W=4, D=64, T=2, P=lanes, THETA_A=8, THETA_O=128, DWC_SHIFT=-2)
    q, k, w, b = random_case(p, 41, samples=1)
    r, expected = run_case(p, build_root, "lanes", q, k, w, b, samples=1)
    assert expected["o"][..., -1].any() and 0.05 < expected["o"].mean() < 0.95  # the top lane fires
    assert r.bit_exact, f"P={lanes}: {r.mismatching_beats} output beats differ; waveform: {r.waves}"
    assert (r.first_output, r.total) == (r.predicted.first_output, r.predicted.total)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", divisors(96))
def test_every_lane_count_up_to_d_wide(build_root, lanes):
    """P = 1 .. 96 on a 3x4 grid without DWC, with stalls (s_data up to 192 bits)."""
    p = SasaCoreParams(N=12, N_AGG=3, GRID_H=3, GRID_W=4, D=96, T=2, P=lanes, THETA_A=4, THETA_O=128, DWC=0)
    q, k, w, b = random_case(p, 42, samples=2, rate_q=0.6, rate_k=0.6)
    r, _ = run_case(p, build_root, "lanes_wide", q, k, w, b, p_idle=0.2, p_backpressure=0.2, seed=43)
    assert r.bit_exact, f"P={lanes}: {r.mismatching_beats} output beats differ; waveform: {r.waves}"


def test_dwc_weights_are_stored_at_their_width(tmp_path):
    """The DWC ROM holds weights at W_BITS (the export's weight width), biases at ACC_BITS: a weight
    that does not fit W_BITS is refused, naming the widths."""
    from saformer.errors import ConfigError
    from saformer.rtl_sim.core import dwc_bias_file, write_dwc_file

    _, _, w, b = random_case(SMALL, 3)
    path = write_dwc_file(tmp_path / "dwc.hex", SMALL, w, b)
    assert all(len(line) == 2 for line in path.read_text().split())  # 8-bit weights: two hex digits
    assert all(len(line) == 8 for line in dwc_bias_file(path).read_text().split())  # 32-bit biases
    w[0, 0, 0, 0] = 128
    with pytest.raises(ConfigError, match="exceed 8 bits .*must fit W_BITS"):
        write_dwc_file(tmp_path / "dwc.hex", SMALL, w, b)
