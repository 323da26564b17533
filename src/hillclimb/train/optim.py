"""Optimizers: AdamW with sane decay groups, and Muon for the hidden matrices.

AdamW groups (the GPT-2/nanoGPT convention): weight decay on 2-D+ weight matrices only; norms,
embeddings (and the tied output head, which *is* the embedding), biases, the router's selection
bias (a buffer, not trained) get none — decaying a norm's gain or an embedding row towards zero
only fights the loss.

Muon (Jordan et al. 2024; used by modded-nanogpt and nanochat): momentum SGD whose update is
replaced by its nearest semi-orthogonal matrix, computed with a few Newton–Schulz iterations of a
quintic polynomial (coefficients 3.4445, -4.7750, 2.0315, tuned to push all singular values
towards 1 quickly rather than exactly). It applies to the hidden 2-D matrices — attention
projections, dense/shared MLPs — and to the routed experts' 3-D tensors *per expert* (the batched
matmuls below orthogonalise each [out, in] slice separately, which is what "one matrix per
expert" means). Embeddings, the output head, norms and the router stay on AdamW, as in the
references: they are not hidden linear maps. The update is scaled by sqrt(max(1, out/in)) so tall
and wide matrices move at a comparable RMS.

The Newton–Schulz iteration runs in bf16 on CUDA (as the references do) and in fp32 on CPU, where
bf16 matmuls are slow and we promise bitwise-reproducible runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximate U·Vᵀ of g = U·S·Vᵀ over the last two dims (batched over leading dims)."""
    a, b, c = NS_COEFFS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        poly = b * s + c * (s @ s)
        x = a * x + poly @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum-orthogonalised SGD for matrices (2-D, or 3-D stacks of per-expert matrices)."""

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch.optim signature
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            mom = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim < 2:
                    raise ValueError("Muon only handles matrices; route vectors to AdamW")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.lerp_(g, 1 - mom)
                update = g.lerp(buf, mom) if group["nesterov"] else buf
                update = orthogonalize(update, group["ns_steps"])
                scale = max(1.0, p.size(-2) / p.size(-1)) ** 0.5
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"] * scale)
        return loss


@dataclass
class ParamSplit:
    decay: list[nn.Parameter]
    no_decay: list[nn.Parameter]
    muon: list[nn.Parameter]
    names: dict[str, str]  # param name -> "decay" | "no_decay" | "muon"


def _is_embedding_like(name: str) -> bool:
    return name.endswith("embed_tokens.weight") or name.endswith("lm_head.weight")


def split_params(model: nn.Module, use_muon: bool) -> ParamSplit:
    """Assign every trainable parameter to exactly one group (tied weights once)."""
    seen: set[int] = set()
    decay, no_decay, muon = [], [], []
    names: dict[str, str] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        hidden_matrix = (
            p.ndim >= 2 and not _is_embedding_like(name) and not name.endswith("gate.weight")
        )
        if use_muon and hidden_matrix:
            muon.append(p)
            names[name] = "muon"
        elif p.ndim >= 2 and not _is_embedding_like(name):
            decay.append(p)
            names[name] = "decay"
        else:
            no_decay.append(p)
            names[name] = "no_decay"
    return ParamSplit(decay, no_decay, muon, names)


def decay_param_ids(model: nn.Module, optimizer: str = "adamw") -> frozenset[int]:
    """Identities of the parameters in AdamW's decay group (`split_params`' `decay`).

    Why by parameter and not by group: `load_state_dict` replaces each group's dict with the
    saved one (extra keys included), so a marker kept on the group would vanish on resume from a
    checkpoint written without it; the parameters themselves stay the model's."""
    return frozenset(id(p) for p in split_params(model, use_muon=optimizer == "muon").decay)


def set_weight_decay(optimizers: list, decay_ids: frozenset[int], weight_decay: float) -> None:
    """Set `weight_decay` on every param group holding the decay group's parameters
    (`decay_param_ids`); norms, embeddings, biases and Muon's matrices keep theirs.

    Why a setter, called before each step like `schedule.apply_lr`: pre-training's copy warm-up
    may decay matrices at another rate than the corpus phase after it
    (`TrainConfig.copy_warmup_weight_decay`), and the rate in force is then a pure function of
    the step and the warm-up's end (checkpoint state), so a resumed run matches one never
    interrupted whatever rate the checkpoint's groups were saved with."""
    for opt in optimizers:
        for group in opt.param_groups:
            if any(id(p) in decay_ids for p in group["params"]):
                group["weight_decay"] = weight_decay


def build_optimizers(
    model: nn.Module,
    *,
    optimizer: str = "adamw",
    lr: float = 3e-3,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    muon_lr: float = 0.02,
    muon_momentum: float = 0.95,
    fused: bool = False,
) -> list[torch.optim.Optimizer]:
    """[AdamW] or [AdamW, Muon]. Each group records `initial_lr` for the schedule."""
    split = split_params(model, use_muon=optimizer == "muon")
    groups = [
        g
        for g in (
            {"params": split.decay, "weight_decay": weight_decay},
            {"params": split.no_decay, "weight_decay": 0.0},
        )
        if g["params"]
    ]
    for g in groups:
        g["initial_lr"] = lr
    kw = {"fused": True} if fused else {}
    opts: list[torch.optim.Optimizer] = [
        torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kw)
    ]
    if split.muon:
        m = Muon(
            [{"params": split.muon, "initial_lr": muon_lr}], lr=muon_lr, momentum=muon_momentum
        )
        opts.append(m)
    return opts
