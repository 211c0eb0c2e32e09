"""The optimizer step, built the same way on every device: AdamW (fused where torch has the kernel),
gradient clipping done here rather than by Lightning, and a non-finite guard that never syncs the host.

Why not Lightning's gradient_clip_val: under a mixed-precision plugin Lightning refuses to clip for an
optimizer that "performs unscaling internally" (fused AdamW advertises that), so bf16-mixed + fused +
clipping failed on its first step. Clipping before the step ourselves is exact under bf16 (no loss
scaling, nothing to unscale) and keeps the fused kernel.

Why found_inf: fused AdamW takes a device tensor `found_inf` (the hook GradScaler uses) and skips the
update on the device when it is non-zero. Setting it from the gradient norm makes a non-finite loss or
gradient skip its step without a host sync; the flag is sticky, so once a trial has gone non-finite no
later step changes the weights."""
from __future__ import annotations

import torch

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def fused_supported(device: torch.device) -> bool:
    # torch ships fused AdamW kernels for CUDA, CPU (>= 2.4), MPS and XPU
    return device.type in ("cuda", "cpu", "mps", "xpu")


def adamw(model: torch.nn.Module, *, lr: float, weight_decay: float, fused: bool) -> torch.optim.AdamW:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    # fused: one kernel for the whole update instead of a few per parameter tensor
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


class StepGuard:
    """Clip to `max_norm` (None: no clipping) and arm `found_inf` on a fused optimizer, all on the device.
    `tripped()` is the only host sync; call it every few steps, not every step."""

    def __init__(self, max_norm: float | None):
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"gradient_clip_val must be > 0 or null, got {max_norm}")
        self.max_norm = max_norm
        self.nonfinite: torch.Tensor | None = None

    def _flag(self, device: torch.device) -> torch.Tensor:
        if self.nonfinite is None or self.nonfinite.device != device:
            self.nonfinite = torch.zeros((), dtype=torch.float32, device=device)
        return self.nonfinite

    def watch_loss(self, loss: torch.Tensor) -> None:
        flag = self._flag(loss.device)
        torch.maximum(flag, (~torch.isfinite(loss.detach())).float(), out=flag)

    def before_step(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> torch.Tensor:
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        flag = self._flag(norm.device)
        torch.maximum(flag, (~torch.isfinite(norm)).float(), out=flag)
        if self.max_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.max_norm, norm, foreach=True)
        if optimizer.defaults.get("fused"):
            optimizer.found_inf = flag  # read by the fused kernel: non-zero skips the update
        # Without the fused kernel nothing skips the update on the device, and skipping it from the host
        # would cost a sync every step. The module reads the flag every few steps and before every dev
        # pass, and stops the trial as diverged: weights updated after the bad step are never scored.
        return norm

    def tripped(self) -> bool:
        return self.nonfinite is not None and bool(self.nonfinite.item())
