"""Checks across the two hardware routes: where the hls4ml stages and the hand-written RTL meet.

It sits above ``saformer.hls`` and ``saformer.rtl_sim`` so that neither imports the other: the hls
flow calls the check it is given for every stage whose output feeds an RTL block (``Stage.feeds_rtl``)
and files the result in its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saformer.errors import ConfigError
from saformer.quant.export import IntegerExport


@dataclass(frozen=True)
class HlsIntoRtl:
    """Q and K spikes from a stage's hls4ml C simulation stream through the RTL SASA core of the graph
    node they feed, with ``lanes`` lanes; its O spikes must equal the golden model's."""

    lanes: int

    def validate(self, ex: IntegerExport) -> None:
        """Refuse a lane count that no SASA core of the export takes (before minutes of C simulation)."""
        from saformer.rtl_sim.core import check_lanes

        if self.lanes < 1:
            raise ConfigError(f"--lanes must be at least 1, got {self.lanes} (pass --no-rtl to skip the RTL check)")
        check_lanes(ex, self.lanes)

    def __call__(self, ex: IntegerExport, core: str, qk: np.ndarray, traces: dict[str, np.ndarray], out: Path,
                 samples: int) -> dict[str, Any]:
        """``qk``: the stage's integer Q | K rows, (samples * T, N * 2D) or any shape of that size."""
        from saformer.rtl_sim.core import params_from_export
        from saformer.rtl_sim.cosim import samples_first
        from saformer.rtl_sim.sim import simulate

        node = ex.graph[core]
        n, d = node.shape
        qk = np.asarray(qk).reshape(-1, n, 2 * d)
        q, k = qk[..., :d], qk[..., d:]
        expected = samples_first(traces[f"{node.attrs['lif_o']}.s"])
        params, dwc = params_from_export(ex, core, self.lanes)
        res = simulate(params, q, k, expected, dwc, Path(out) / "rtl_build" / f"{core}_p{self.lanes}", samples=samples,
                       name="hls_qk")
        return {"layer": core, "lanes": self.lanes, "bit_exact": res.bit_exact, "values": int(expected.size),
                "cycles": res.total, "predicted_cycles": res.predicted.total, "waves": str(res.waves or "")}
