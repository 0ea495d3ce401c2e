"""The energy report's arithmetic against a hand computation for saformer-4-384 (T=4, CIFAR-10)."""

import pytest

from saformer.config import get_config
from saformer.report.energy import E_AC_PJ, E_MAC_PJ, energy_table, layer_ops

CFG = get_config("saformer-4-384")  # 3x32x32, pools after conv3 and conv4 -> 8x8 = 64 tokens, D = 384


def lif_names(cfg):
    names = [f"sps.lifs.{i}" for i in range(4)]
    for b in range(cfg.depth):
        p = f"blocks.{b}"
        names += [f"{p}.lif_attn_in", f"{p}.attn.lif_q", f"{p}.attn.lif_k", f"{p}.attn.lif_a", f"{p}.attn.lif_o",
                  f"{p}.lif_mlp_in", f"{p}.mlp.lif"]
    return names + ["head_lif"]


def test_hand_computed_sops_and_energy_uniform_rates():
    rates = {n: 0.1 for n in lif_names(CFG)}
    t = energy_table(CFG, rates, "sasa", static_input=True)
    # First layer, by hand: 9 * 3 * 48 * 32 * 32 MACs, counted once (static image).
    assert t["macs"] == 1_327_104
    # Dense ops of every other layer, by hand:
    #   SPS: 9*48*96*1024 + 9*96*192*1024 + 9*192*384*256 + rpe 9*384*384*64 = 467,140,608
    #   per block: q, k, proj 3 * 64*384*384 + fc1, fc2 2 * 64*384*1536 + SASA 3 * 64*384 + DWC 9*64*384
    #            = 28,311,552 + 75,497,472 + 73,728 + 221,184 = 104,103,936; four blocks: 416,415,744
    #   head: 64*384*10 = 245,760                                  total: 883,802,112
    # SOPs = 0.1 * T(4) * 883,802,112 = 353,520,844.8
    assert t["sops"] == pytest.approx(353_520_844.8, rel=1e-12)
    # E = 4.6 pJ * 1,327,104 + 0.9 pJ * 353,520,844.8 = 6,104,678.4 + 318,168,760.32 pJ
    assert t["energy_pj"] == pytest.approx(324_273_438.72, rel=1e-12)
    assert t["energy_uj"] == pytest.approx(324.27343872, rel=1e-12)
    assert (E_MAC_PJ, E_AC_PJ) == (4.6, 0.9)


def test_each_layer_uses_the_rate_of_the_spikes_feeding_it():
    rates = {n: 0.1 for n in lif_names(CFG)}
    rates["blocks.2.lif_mlp_in"] = 0.25
    rates["blocks.3.attn.lif_k"] = 0.5
    rows = {r["layer"]: r for r in energy_table(CFG, rates, "sasa")["layers"]}
    # fc1 of block 2: 0.25 * 4 * 64*384*1536 = 37,748,736 SOPs
    assert rows["blocks.2.mlp.fc1"]["ops"] == pytest.approx(37_748_736)
    assert rows["blocks.2.mlp.fc1"]["energy_pj"] == pytest.approx(37_748_736 * 0.9)
    # DWC of block 3 adds weights where K spikes: 0.5 * 4 * 9*64*384 = 442,368
    assert rows["blocks.3.attn.dwc"]["ops"] == pytest.approx(442_368)
    assert rows["blocks.3.attn.count_k"]["ops"] == pytest.approx(0.5 * 4 * 64 * 384)
    assert rows["sps.convs.0"]["kind"] == "MAC" and rows["sps.convs.0"]["rate"] is None


def test_baselines_on_the_same_config():
    rates = {n: 0.1 for n in lif_names(CFG)}
    sasa, ssa, sdsa = (energy_table(CFG, rates, a) for a in ("sasa", "ssa", "sdsa"))
    # per block, SSA adds a V projection (64*384*384) and two N^2 D products (2 * 64*64*384) and drops
    # SASA's 3*64*384 + 9*64*384: the difference in SOPs over 4 blocks at rate 0.1, T = 4:
    per_block = 64 * 384 * 384 + 2 * 64 * 64 * 384 - 12 * 64 * 384
    assert ssa["sops"] - sasa["sops"] == pytest.approx(0.4 * 4 * per_block)
    per_block_sdsa = 64 * 384 * 384 + 64 * 384 - 12 * 64 * 384
    assert sdsa["sops"] - sasa["sops"] == pytest.approx(0.4 * 4 * per_block_sdsa)
    assert ssa["macs"] == sdsa["macs"] == sasa["macs"]


def test_event_input_counts_the_first_layer_every_step_and_missing_rates_are_named():
    rates = {n: 0.1 for n in lif_names(CFG)}
    assert energy_table(CFG, rates, static_input=False)["macs"] == 4 * 1_327_104
    del rates["blocks.1.mlp.lif"]
    with pytest.raises(KeyError, match="blocks.1.mlp.lif"):
        energy_table(CFG, rates)
    assert len(layer_ops(CFG)) == 5 + 4 * 9 + 1
