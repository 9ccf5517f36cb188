"""Ranger: RAdam + Lookahead + gradient centralisation (GLR2021 top-100, ``custom/optimizer.py``).

Seed system: GLR2021 top-100 (vadimtimakin/Kaggle-Google-Landmark, README: Ranger lr 0.003).
Defaults follow that optimizer: betas (0.95, 0.999), eps 1e-5, Lookahead alpha 0.5 every k=6 steps,
RAdam's variance-rectification threshold N_sma > 5, gradient centralisation on every gradient with
more than one dimension (conv and linear weights), decoupled-from-nothing L2 weight decay
``p -= wd * lr * p`` applied before the update as the upstream code does.

Written from the published algorithms (Liu et al. 2019 RAdam; Zhang et al. 2019 Lookahead; Yong et al.
2020 gradient centralisation); every state entry is a tensor or an int so it serialises to
safetensors + JSON.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch.optim import Optimizer


class Ranger(Optimizer):
    """RAdam with Lookahead (alpha, k) and gradient centralisation.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate (top-100 README: 3e-3).
        alpha: Lookahead interpolation factor towards the fast weights (0.5).
        k: Lookahead synchronisation period in steps (6).
        n_sma_threshold: RAdam rectification threshold (5).
        betas: Adam moment decay rates ((0.95, 0.999)).
        eps: denominator epsilon (1e-5).
        weight_decay: L2 factor applied as ``p -= wd * lr * p`` (0).
        use_gc: centralise gradients of tensors with ``ndim > 1`` (True).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        alpha: float = 0.5,
        k: int = 6,
        n_sma_threshold: float = 5.0,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        use_gc: bool = True,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Ranger: alpha must be in [0, 1], got {alpha}")
        if int(k) < 1:
            raise ValueError(f"Ranger: k must be >= 1, got {k}")
        if lr <= 0:
            raise ValueError(f"Ranger: lr must be > 0, got {lr}")
        defaults = dict(
            lr=lr, alpha=alpha, k=int(k), n_sma_threshold=n_sma_threshold, betas=tuple(betas),
            eps=eps, weight_decay=weight_decay, use_gc=use_gc,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            n_sma_max = 2.0 / (1.0 - beta2) - 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                if grad.is_sparse:
                    raise RuntimeError("Ranger does not support sparse gradients")
                if group["use_gc"] and grad.dim() > 1:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    state["slow_buffer"] = p.detach().float().clone()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] = int(state["step"]) + 1
                step = state["step"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)

                beta2_t = beta2**step
                n_sma = n_sma_max - 2.0 * step * beta2_t / (1.0 - beta2_t)
                if n_sma > group["n_sma_threshold"]:
                    step_size = math.sqrt(
                        (1.0 - beta2_t)
                        * (n_sma - 4.0) / (n_sma_max - 4.0)
                        * (n_sma - 2.0) / n_sma
                        * n_sma_max / (n_sma_max - 2.0)
                    ) / (1.0 - beta1**step)
                else:
                    step_size = 1.0 / (1.0 - beta1**step)

                p_fp32 = p.detach().float()
                if wd != 0:
                    p_fp32.add_(p_fp32, alpha=-wd * lr)
                if n_sma > group["n_sma_threshold"]:
                    denom = exp_avg_sq.sqrt().add_(eps)
                    p_fp32.addcdiv_(exp_avg, denom, value=-step_size * lr)
                else:
                    p_fp32.add_(exp_avg, alpha=-step_size * lr)

                if step % group["k"] == 0:  # Lookahead: slow += alpha * (fast - slow); fast = slow
                    slow = state["slow_buffer"]
                    slow.add_(p_fp32 - slow, alpha=group["alpha"])
                    p_fp32.copy_(slow)
                p.copy_(p_fp32)
        return loss
