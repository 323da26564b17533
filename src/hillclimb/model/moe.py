"""Sparse Mixture-of-Experts feed-forward: router, routed SwiGLU experts, shared experts, balancing.

Routing is dropless token-choice top-k (every token gets exactly k experts; no capacity factor,
nothing dropped): softmax over all experts in fp32, top-k, top-k weights renormalised to sum 1 —
the Qwen3-MoE / OLMoE recipe, which is what makes our checkpoints loadable as Qwen3-MoE.

Expert weights are stored fused as 3-D tensors (`gate_up_proj` [E, 2I, D], `down_proj` [E, D, I])
so all experts run in one `torch._grouped_mm` over token rows sorted by expert. A per-expert loop
computes the identical result and is the fallback where grouped_mm is unavailable or its
constraints fail. Known torch 2.13 CPU pitfalls handled here: offsets must be int32; every stride
must be a multiple of 16 bytes (checked, else loop); backward fails on a stride-0 upstream gradient
(we never feed grouped_mm's output straight into a reduction: it is multiplied by the routing
weights first); bf16 is very slow on CPUs without AMX, so fp32 is the CPU default upstream.

Balancing: the Switch/OLMoE auxiliary loss (E · Σ f_e · P_e) and router z-loss (mean logsumexp²),
and optionally DeepSeek-V3's auxiliary-loss-free balancing: a per-expert bias added to the scores
only for *selection*, nudged after each optimizer step towards uniform load (`update_bias`). Gate
values always come from the unbiased probabilities.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hillclimb.model.config import ModelConfig


@dataclass
class RouterOutput:
    indices: torch.Tensor  # [N, k] selected experts
    weights: torch.Tensor  # [N, k] gate values (from unbiased probabilities)
    logits: torch.Tensor  # [N, E] fp32
    probs: torch.Tensor  # [N, E] fp32


class Router(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_experts = cfg.n_experts
        self.top_k = cfg.top_k
        self.norm_topk_prob = cfg.norm_topk_prob
        self.weight = nn.Parameter(torch.empty(cfg.n_experts, cfg.d_model))
        # Selection-only bias for auxiliary-loss-free balancing (a buffer: not trained by SGD).
        self.register_buffer("expert_bias", torch.zeros(cfg.n_experts), persistent=True)

    def forward(self, x: torch.Tensor) -> RouterOutput:
        logits = F.linear(x, self.weight).float()
        probs = logits.softmax(dim=-1)
        if bool(self.expert_bias.any()):
            _, idx = torch.topk(probs + self.expert_bias, self.top_k, dim=-1)
            w = probs.gather(-1, idx)
        else:
            w, idx = torch.topk(probs, self.top_k, dim=-1)
        if self.norm_topk_prob:
            w = w / w.sum(dim=-1, keepdim=True)
        return RouterOutput(indices=idx, weights=w.to(x.dtype), logits=logits, probs=probs)


class _PermuteRows(torch.autograd.Function):
    """y = x[perm] whose backward is the inverse gather (not a scatter-add)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(0, perm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        return grad.contiguous().index_select(0, inverse), None, None


def _permute_rows(x: torch.Tensor, perm: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    return _PermuteRows.apply(x, perm, inverse)


class _DispatchRows(torch.autograd.Function):
    """Rows of x [N, D] for the (token, slot) assignments in expert order: x[order // k].
    Backward gathers each assignment's gradient back into (token, slot) order and sums the k
    slots of a token — gathers and a reshape-sum, no scatter-add."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor, k: int
    ) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        ctx.k = k
        return x.index_select(0, torch.div(order, k, rounding_mode="floor"))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        g = grad.contiguous().index_select(0, inverse)
        return g.view(-1, ctx.k, g.shape[-1]).sum(dim=1), None, None, None


def _dispatch_rows(
    x: torch.Tensor, order: torch.Tensor, inverse: torch.Tensor, k: int
) -> torch.Tensor:
    return _DispatchRows.apply(x, order, inverse, k)


def _grouped_ok(*tensors: torch.Tensor) -> bool:
    for t in tensors:
        es = t.element_size()
        for s, n in zip(t.stride(), t.shape, strict=True):
            if n > 1 and s != 1 and (s * es) % 16 != 0:
                return False
        if t.data_ptr() % 16 != 0:
            return False
    return True


def _has_grouped_mm() -> bool:
    return hasattr(torch, "_grouped_mm")


class Experts(nn.Module):
    """E routed SwiGLU experts with fused gate/up weights."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_experts = cfg.n_experts
        self.d_expert = cfg.d_expert
        self.gate_up_proj = nn.Parameter(torch.empty(cfg.n_experts, 2 * cfg.d_expert, cfg.d_model))
        self.down_proj = nn.Parameter(torch.empty(cfg.n_experts, cfg.d_model, cfg.d_expert))
        self.impl = cfg.expert_impl

    def forward(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x_sorted [M, D]: token rows grouped by expert (expert 0 first); counts [E]."""
        impl = self.impl
        if impl == "auto":
            impl = "grouped" if self._grouped_usable(x_sorted) else "loop"
        if impl == "grouped":
            return self._grouped(x_sorted, counts)
        return self._loop(x_sorted, counts)

    def _grouped_usable(self, x: torch.Tensor) -> bool:
        if not _has_grouped_mm() or x.shape[0] == 0:
            return False
        if x.dtype != torch.bfloat16 and torch.compiler.is_compiling():
            return False  # torch 2.13's fake-tensor rule for grouped_mm accepts bf16 only
        if x.dtype not in (torch.float32, torch.bfloat16):
            return False
        if x.device.type == "cuda" and x.dtype != torch.bfloat16:
            return False  # CUDA grouped_mm kernels are bf16-only
        return _grouped_ok(x, self.gate_up_proj.transpose(1, 2), self.down_proj.transpose(1, 2))

    def _grouped(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        offs = torch.cumsum(counts, dim=0).to(torch.int32)
        h = torch._grouped_mm(x, self.gate_up_proj.transpose(1, 2), offs=offs)
        gate, up = h.chunk(2, dim=-1)
        h = (F.silu(gate) * up).contiguous()
        return torch._grouped_mm(h, self.down_proj.transpose(1, 2), offs=offs)

    def _loop(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        outs = []
        start = 0
        for e, n in enumerate(counts.tolist()):
            if n == 0:
                continue
            xe = x[start : start + n]
            gate, up = F.linear(xe, self.gate_up_proj[e]).chunk(2, dim=-1)
            outs.append(F.linear(F.silu(gate) * up, self.down_proj[e]))
            start += n
        if not outs:
            return x.new_zeros(0, self.down_proj.shape[1])
        return torch.cat(outs, dim=0)


class SwiGLU(nn.Module):
    """Dense SwiGLU MLP: the dense first layers and the shared experts."""

    def __init__(self, d_model: int, d_hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_hidden, bias=False)
        self.up_proj = nn.Linear(d_model, d_hidden, bias=False)
        self.down_proj = nn.Linear(d_hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


@dataclass
class MoEStats:
    """Per-layer routing statistics for one forward (detached)."""

    tokens_per_expert: torch.Tensor  # [E] assignments (each token counts k times)
    aux_loss: torch.Tensor  # scalar, unweighted
    z_loss: torch.Tensor  # scalar, unweighted
    entropy: torch.Tensor  # mean router entropy (nats)


class MoE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = Router(cfg)
        self.experts = Experts(cfg)
        self.shared = (
            SwiGLU(cfg.d_model, cfg.n_shared_experts * cfg.d_shared_eff)
            if cfg.n_shared_experts > 0
            else None
        )
        self.last_stats: MoEStats | None = None
        self.last_aux: torch.Tensor | None = None  # weighted aux + z loss, with grad
        # routing replay (`routing_replay`): recorded expert ids [B·T, k] for the next forward,
        # whether to use them, and (tokens whose own top-k set equals the record, tokens compared)
        self.replay: torch.Tensor | None = None
        self.replay_apply = True
        self.last_agreement: tuple[float, float] | None = None

    def forward(self, x: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        flat = x.reshape(-1, D)
        if self.replay is None:
            r = self.gate(flat)
        else:
            r = self._replayed(flat, self.replay)
        k = r.indices.shape[1]
        E = self.cfg.n_experts
        flat_idx = r.indices.reshape(-1)
        order = torch.argsort(flat_idx, stable=True)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        counts = torch.bincount(flat_idx, minlength=E)
        # Dispatch and combine as row permutations (gathers both ways): scatter-adds are slow on
        # CPU, and every token has exactly k assignments, so combining is a reshape + sum.
        y = self.experts(_dispatch_rows(flat, order, inverse, k), counts)
        y = _permute_rows(y, inverse, order).view(-1, k, D)
        out = torch.einsum("nkd,nk->nd", y, r.weights)
        if self.shared is not None:
            out = out + self.shared(flat)
        self._balance(r, counts, token_mask)
        return out.view(B, T, D)

    def _replayed(self, flat: torch.Tensor, replay: torch.Tensor) -> RouterOutput:
        """Route with the recorded experts (when `replay_apply`) and measure how many tokens'
        own top-k set equals the record (the router agreement RL logs)."""
        if replay.shape != (flat.shape[0], self.gate.top_k):
            raise ValueError(
                f"routing replay has shape {tuple(replay.shape)}, the forward routes "
                f"{flat.shape[0]} tokens to {self.gate.top_k} experts"
            )
        own = self.gate(flat)
        have = replay[:, :1] >= 0
        with torch.no_grad():
            same = (own.indices.sort(dim=-1).values == replay.sort(dim=-1).values).all(dim=-1)
            self.last_agreement = (float((same & have[:, 0]).sum()), float(have.sum()))
        if not self.replay_apply:
            return own
        # the recorded experts; gate values from this forward's probabilities (the router keeps
        # its gradient), renormalised as the router does
        idx = torch.where(have, replay, own.indices)
        w = own.probs.gather(-1, idx)
        if self.gate.norm_topk_prob:
            w = w / w.sum(dim=-1, keepdim=True)
        return RouterOutput(
            indices=idx, weights=w.to(flat.dtype), logits=own.logits, probs=own.probs
        )

    def _balance(
        self, r: RouterOutput, counts: torch.Tensor, token_mask: torch.Tensor | None
    ) -> None:
        E, k = self.cfg.n_experts, self.cfg.top_k
        probs, logits = r.probs, r.logits
        if token_mask is not None:
            keep = token_mask.reshape(-1).to(torch.bool)
            probs, logits = probs[keep], logits[keep]
            sel = r.indices[keep].reshape(-1)
            counts = torch.bincount(sel, minlength=E)
        n = max(probs.shape[0], 1)
        frac = counts.to(probs.dtype) / (n * k)
        aux = E * (frac.detach() * probs.mean(dim=0)).sum() if probs.shape[0] else probs.sum() * 0
        z = torch.logsumexp(logits, dim=-1).pow(2).mean() if probs.shape[0] else logits.sum() * 0
        if self.training:
            self.last_aux = self.cfg.aux_loss_coef * aux + self.cfg.z_loss_coef * z
        else:
            self.last_aux = None
        with torch.no_grad():
            ent = (
                -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
                if probs.shape[0]
                else aux.new_zeros(())
            )
            self.last_stats = MoEStats(counts.detach(), aux.detach(), z.detach(), ent.detach())

    @torch.no_grad()
    def update_bias(self, counts: torch.Tensor | None = None) -> None:
        """Auxiliary-loss-free balancing step (DeepSeek-V3): raise the bias of under-loaded
        experts, lower it for over-loaded ones, by a fixed rate times the sign of the error."""
        if not self.cfg.bias_balancing:
            return
        if counts is None:
            if self.last_stats is None:
                return
            counts = self.last_stats.tokens_per_expert
        counts = counts.float()
        err = counts.mean() - counts
        self.gate.expert_bias.add_(self.cfg.bias_update_rate * torch.sign(err))


@contextlib.contextmanager
def routing_replay(
    layers: list[MoE], routes: torch.Tensor | None, apply: bool = True
) -> Iterator[None]:
    """Within the block, the forward of `layers` replays `routes` [B, T, n_layers, k] (expert
    ids per token and MoE layer, −1 where nothing was recorded, e.g. padding) — or, with
    `apply=False`, routes as usual and only measures agreement with the record. RL uses it so
    the training forward routes each token to the experts that generated it (arXiv 2510.11370):
    in an MoE a tiny change in router logits flips a top-k choice and with it the token's
    log-probability, which the importance ratio would read as a policy change."""
    if routes is None:
        yield
        return
    if routes.dim() != 4 or routes.shape[2] != len(layers):
        raise ValueError(
            f"routes must be [batch, tokens, {len(layers)} MoE layers, k], got {tuple(routes.shape)}"
        )
    try:
        for j, m in enumerate(layers):
            m.replay = routes[:, :, j, : m.gate.top_k].reshape(-1, m.gate.top_k).long()
            m.replay_apply = apply
            m.last_agreement = None
        yield
    finally:
        for m in layers:
            m.replay = None
