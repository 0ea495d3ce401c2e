"""The hardware config: one frozen dataclass for what is hardware, not model, validated up front."""

import json

import pytest

from saformer.cli import main
from saformer.config import HardwareConfig
from saformer.errors import ConfigError


@pytest.mark.parametrize("field, value, message", [
    ("lanes", 0, "lanes must be a positive integer, got 0"),
    ("lanes", True, "lanes must be a positive integer, got True"),
    ("family", "virtex2", "family 'virtex2'; known: ['xc7', 'xcup']"),
    ("ecp5_device", "LFE5U-12F", "ECP5 device 'LFE5U-12F'"),
    ("clock_mhz", 0, "clock_mhz must be in (0, 1000]"),
    ("memory_style", "bram", "memory_style 'bram'; known: ['auto', 'block', 'distributed', 'registers']"),
    ("engine_lanes", (("sps.convs.3", 0),), "engine_lanes takes pairs of a layer name and a positive lanes count"),
    ("engine_lanes", (("a", 2), ("a", 4)), "engine_lanes names a layer twice"),
    ("engine_fifo_steps", 9, "engine_fifo_steps must be an integer in [0, 8]"),
    ("weight_stream", ("logits", "logits"), "weight_stream names a layer twice"),
    ("weight_stream", ("logits", 3), "weight_stream takes synaptic layer names"),
    ("weight_stream_latency", 1, "weight_stream_latency must be an integer in [2, 4096] cycles, got 1"),
    ("engine_output_register", 0, "engine_output_register must be true or false, got 0"),
])
def test_a_bad_setting_is_refused_naming_it(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace("]", r"\]")):
        HardwareConfig(**{field: value})


def test_round_trip_and_unknown_fields():
    hw = HardwareConfig(lanes=16, family="xcup", ecp5_device="LFE5U-45F", clock_mhz=150.0,
                        engine_lanes=(("sps.rpe", 32), ("logits", 2)), weight_stream=("logits",), weight_stream_latency=9,
                        engine_output_register=False)
    assert HardwareConfig.from_dict(json.loads(json.dumps(hw.to_dict()))) == hw and hw.ecp5_flag == "--45k"
    assert hw.lanes_of("sps.rpe") == 32 and hw.lanes_of("sps.convs.0") is None
    assert hw.streams_weights("logits") and not hw.streams_weights("sps.rpe")
    assert HardwareConfig(weight_stream=("all",)).streams_weights("sps.rpe")
    with pytest.raises(ConfigError, match=r"unknown hardware config field\(s\) \['lane'\]"):
        HardwareConfig.from_dict({"lane": 8})


def test_flow_refuses_a_bad_clock_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["flow", "--out", str(tmp_path / "run"), "--clock-mhz", "0"])
    assert exit_.value.code == 2
    assert "--clock-mhz" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
