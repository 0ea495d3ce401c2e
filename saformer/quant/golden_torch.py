"""The golden model on torch tensors, on any device: the same integer network as
saformer.quant.golden (it walks the same graph with the same node code), bit-exact with it.

Arithmetic:
- int64 tensors for what the blocks compute: shifts, saturation, LIF membranes, spike counts,
  the SASA score and mask (the primitives are the torch twins in saformer.quant.fixed_point);
- float64 for the synaptic sums only (convolutions, linears, the depthwise conv, the head), since
  CUDA has no int64 matmul or convolution and CPU BLAS is far faster in float64. These sums are
  exact: every term and every partial sum, in any order, is an integer whose magnitude is at most
  the layer's worst case, which the export proves fits ``accumulator_bits`` (<= 32 by the contract's
  check, and refused here above 53, float64's exact-integer range); the head's spike counts times
  weights are bounded by T*N*D*2^(weight_bits-1), checked too. Max-pooling runs on float64 copies of
  membrane values (<= 16 bits): exact.

``saformer golden --backend torch [--device cuda]`` uses it; tests hold it equal to the numpy model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from saformer.errors import ConfigError
from saformer.quant.export import IntegerExport
from saformer.quant.fixed_point import lif_int_torch, saturate_torch, shift_to_membrane_torch
from saformer.quant.golden import GoldenModel

EXACT_BITS = 53  # float64 holds every integer of magnitude below 2^53 exactly


class TorchGoldenModel(GoldenModel):
    """GoldenModel whose primitives run on torch tensors on ``device``; forward() takes and returns
    numpy arrays (traces too), like the numpy model."""

    def __init__(self, export: IntegerExport, device: str | torch.device = "cpu", attention: str = "model") -> None:
        super().__init__(export, attention)
        if self.qcfg.accumulator_bits >= EXACT_BITS:
            raise ConfigError(f"torch golden backend: {self.qcfg.accumulator_bits}-bit accumulators are past "
                              f"float64's exact integers (< {EXACT_BITS} bits); use the numpy backend")
        try:
            self.device = torch.device(device)
            torch.empty(0, device=self.device)
        except (RuntimeError, AssertionError) as exc:
            raise ConfigError(f"torch golden backend: device '{device}' is not available ({exc})") from None
        self._weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _params(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(float64 weights, int64 biases) of a layer on the device, converted once."""
        if layer not in self._weights:
            w = torch.as_tensor(self.ex.weight(layer).astype(np.float64), device=self.device)
            b = torch.as_tensor(self.ex.bias(layer).astype(np.int64), device=self.device)
            self._weights[layer] = (w, b)
        return self._weights[layer]

    # ---- the primitives of GoldenModel's graph walk -------------------------------------------
    def asarray(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x).astype(np.int64), device=self.device)

    @staticmethod
    def numpy(x) -> np.ndarray:
        return x.cpu().numpy() if torch.is_tensor(x) else np.asarray(x)

    @staticmethod
    def time_first(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1)

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.cfg.time_steps, *x.shape)

    @staticmethod
    def tokens(f: torch.Tensor) -> torch.Tensor:
        return f.flatten(2).transpose(1, 2)

    @staticmethod
    def lif(x: torch.Tensor, theta: int) -> torch.Tensor:
        return lif_int_torch(x, theta)

    @staticmethod
    def maxpool(x: torch.Tensor) -> torch.Tensor:  # float64 pads with -inf, as the integer model with INT_MIN
        return F.max_pool2d(x.double(), 3, stride=2, padding=1).long()

    @staticmethod
    def saturate(x: torch.Tensor, bits: int) -> torch.Tensor:
        return saturate_torch(x, bits)

    # ---- the blocks -----------------------------------------------------------------------------
    def synapse(self, name: str, x: torch.Tensor, spikes: bool = True) -> torch.Tensor:
        spec = self.ex.layer(name)
        w, b = self._params(name)
        if spec["kind"] in ("conv", "dwconv"):
            acc = F.conv2d(x.double(), w, padding=1, groups=spec["groups"]).long() + b[None, :, None, None]
        else:
            acc = (x.double() @ w.T).long() + b
        return shift_to_membrane_torch(acc, spec["out_shift"], self.qcfg.membrane_bits)

    def sasa(self, node, q: torch.Tensor, k: torch.Tensor) -> dict[str, torch.Tensor]:
        """saformer.quant.golden.sasa_core on tensors."""
        a = node.attrs
        t, b, n, d = q.shape
        n_agg = a["n_agg"]
        qc = q.long().reshape(t, b, n_agg, n // n_agg, d).sum(dim=3)
        kc = k.long().reshape(t, b, n_agg, n // n_agg, d).sum(dim=3)
        score = (qc * kc).sum(dim=2, keepdim=True)
        mask = self.lif(score, self.ex.theta(a["lif_a"]))
        if self.attention == "mask_ones":
            mask = torch.ones_like(mask)
        mem_frac, mem_bits = self.mem
        y = (mask.long() * k.long()) << mem_frac
        if node.layer is not None:
            gh, gw = a["grid"]
            w, bias = self._params(node.layer)
            grid_k = k.reshape(t * b, gh, gw, d).permute(0, 3, 1, 2).double()
            acc = F.conv2d(grid_k, w, padding=1, groups=d).long() + bias[None, :, None, None]
            f = shift_to_membrane_torch(acc, self.ex.layer(node.layer)["out_shift"], mem_bits)
            y = saturate_torch(y + f.permute(0, 2, 3, 1).reshape(t, b, n, d), mem_bits)
        return {"score": score, "mask": mask, "drive": y, "o": self.lif(y, self.ex.theta(a["lif_o"]))}

    def head(self, node, s: torch.Tensor) -> torch.Tensor:
        w, b = self._params(node.layer)
        steps = s.shape[0] * s.shape[2]
        bound = steps * s.shape[-1] * int(np.abs(self.ex.weight(node.layer)).max())
        if bound >= 2 ** EXACT_BITS:
            raise ConfigError(f"torch golden backend: head sums up to {bound} are past float64's exact integers")
        counts = s.double().sum(dim=(0, 2))  # (B, D): over steps and tokens
        return (counts @ w.T).long() + steps * b
