"""A lean decode forward over the model's own weights and KV cache, for the engine's hot loop.

Why it exists: at serving batch sizes a decode step of a small MoE is pure framework overhead —
~150 tiny kernels, each costing more to launch than to run. The general `Transformer.forward`
also builds masks for padding, computes MoE balancing statistics that only training needs, and
routes tokens with an argsort/bincount/grouped-GEMM pipeline that pays off only for many tokens.
This path computes the same function with far fewer ops:

- Q, K and V come from one fused GEMM (the three projection weights concatenated once);
- rotary cos/sin come from a table precomputed for every cache position;
- K/V are written straight into the shared `KVCache` (same layout, cursors, validity), so
  prefill by the model's forward, decode by this path, and `KVCache.truncate` rollbacks mix freely;
- routed experts: ≤ 4 token-expert pairs run as GEMVs on the chosen experts' weight views (no
  copies); more pairs run the model's own expert kernels over expert-sorted rows. Neither
  computes the balancing statistics `MoE.forward` keeps for training.

Single-slot steps (one stream: `decode_one`, and `extend_one` for speculative verification and
the draft's catch-up) have their own CPU fp32 code: per-op dispatch is most of their cost, so
they use fewer, larger ops (host-side routing, attention as two batched matmuls over the slot's
cache views), and `enable_compile()` turns the one-token step into one inductor-compiled graph
(≈1.35x faster on thinking-tiny; `hillclimb serve` does this by default on CPU).

It handles steps where every new token is real (decode, speculative verification, catch-up of
the draft), and batched prefill with right padding (`attention_mask`: padding cells reserved but
invalid, as `KVCache.prepare` does). The batched one-token step compiles too
(`enable_compile_batch`). It reads the model's own parameters (plus the fused QKV
copy), its rotary tables and its expert kernels, so results match the reference forward to
floating-point rounding (tests compare the two; `refresh()` after in-place weight updates).
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hillclimb.model.kv_cache import KVCache


def _lin(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`F.linear` without bias; a single row goes through `torch.mv` (cheaper GEMV dispatch)."""
    if x.numel() == x.shape[-1]:
        return torch.mv(w, x.reshape(-1)).view(*x.shape[:-1], w.shape[0])
    return F.linear(x, w)


@dataclass
class _Layer:
    ln1: torch.Tensor
    ln2: torch.Tensor
    wo: torch.Tensor
    is_moe: bool
    mlp: Any = None
    gate_w: torch.Tensor | None = None
    top_k: int = 1
    norm_topk: bool = True
    bias: torch.Tensor | None = None
    gate_up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    n_experts: int = 1
    shared: Any = None
    bias_list: list[float] | None = None
    moe_i: int = -1  # index among the MoE layers (the route log's layer axis)


def _rms(x: torch.Tensor, w: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`RMSNorm.forward` without the module call (same math, fp32 statistics for bf16)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    y = F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)
    return y if w is None else w * y


def _rms_rows(x: torch.Tensor, w: torch.Tensor, eps: float, n: int) -> torch.Tensor:
    """RMSNorm of the rows of x [T, n] (fp32). One row: the statistic is one dot product read
    back as a float (3 small ops instead of `rms_norm`'s reductions); more rows: `rms_norm`."""
    if x.shape[0] == 1:
        r = x[0]
        return (x * w).mul_((float(torch.dot(r, r)) / n + eps) ** -0.5)
    return F.rms_norm(x, (n,), w, eps)


def _route(layer: _Layer, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The router's rule on device (`moe.Router`: softmax, top-k selection with the balancing
    bias, optional renormalisation) → (gate weights, expert ids), both [..., top_k]. Traceable:
    the compiled graph uses it too."""
    k = layer.top_k
    if layer.bias is None and layer.norm_topk:
        # renormalised top-k probabilities = softmax over the top-k logits (fewer kernels)
        top, idx = torch.topk(logits, k, dim=-1)
        return top.softmax(dim=-1), idx
    probs = logits.softmax(dim=-1)
    sel = probs if layer.bias is None else probs + layer.bias
    idx = torch.topk(sel, k, dim=-1).indices
    w = probs.gather(-1, idx)
    if layer.norm_topk:
        w = w / w.sum(dim=-1, keepdim=True)
    return w, idx


def _experts_rows(
    h: torch.Tensor, w: torch.Tensor, idx: torch.Tensor, gu_t: torch.Tensor, dn_t: torch.Tensor
) -> torch.Tensor:
    """Σ_j w[t, j] · expert_idx[t, j](h[t]) for rows h [N, dm] (w, idx [N, k]) with the experts'
    weights transposed for right-multiplication, gu_t [E, dm, 2·d_expert] and dn_t
    [E, d_expert, dm]: rows sorted by expert, one grouped GEMM per projection
    (`torch._grouped_mm`, else a loop over the touched experts), scattered back. Same math as
    `MoE.forward` without its balancing statistics."""
    N, k = idx.shape
    e = idx.reshape(-1)
    order = torch.argsort(e, stable=True)
    counts = torch.bincount(e, minlength=gu_t.shape[0])
    tok = order // k
    x = h.index_select(0, tok)
    if hasattr(torch, "_grouped_mm") and h.dtype in (torch.float32, torch.bfloat16):
        offs = torch.cumsum(counts, dim=0).to(torch.int32)
        g, u = torch._grouped_mm(x, gu_t, offs=offs).chunk(2, dim=-1)
        y = torch._grouped_mm((F.silu(g) * u).contiguous(), dn_t, offs=offs)
    else:
        outs, a = [], 0
        for eid, n in enumerate(counts.tolist()):
            if n:
                g, u = (x[a : a + n] @ gu_t[eid]).chunk(2, dim=-1)
                outs.append((F.silu(g) * u) @ dn_t[eid])
                a += n
        y = torch.cat(outs)
    y = y * w.reshape(-1)[order, None].to(y.dtype)
    return torch.zeros_like(h).index_add_(0, tok, y)


# The routed experts as one opaque op inside the compiled batched step: their row grouping is
# data-dependent (which rows go to which expert), which inductor cannot trace into static loops;
# as a custom op the graph calls the grouped GEMMs above and fuses everything around them.
@torch.library.custom_op("hillclimb::routed_experts", mutates_args=())
def routed_experts(
    h: torch.Tensor, w: torch.Tensor, idx: torch.Tensor, gu_t: torch.Tensor, dn_t: torch.Tensor
) -> torch.Tensor:
    return _experts_rows(h, w, idx, gu_t, dn_t)


@routed_experts.register_fake
def _routed_experts_fake(h, w, idx, gu_t, dn_t):  # noqa: ANN001, ANN202 - torch.library API
    return torch.empty_like(h)


_EXPERT_COPY_MAX_BYTES = 256 << 20


def _graph_timer(progress: Callable[[str, float], None] | None) -> Callable[[str], None]:
    """`done(what)`: report `what` and the seconds since the previous report (or the start)."""
    t = [time.perf_counter()]

    def done(what: str) -> None:
        now = time.perf_counter()
        if progress is not None:
            progress(what, now - t[0])
        t[0] = now

    return done


# One copy of a compiled graph method's code per model *structure* (config, and which layer
# records hold a tensor or None). Why: the compiled steps keep only tensor guards (the per-call
# cost of ~100 attribute guards was ≈0.1 ms of a 0.8 ms step), and dynamo caches compiled
# graphs on the code object, which every FastForward shares — so a graph traced for one model
# was replayed for another whose tensors matched in shape but whose structure differed (a
# selection-bias tensor where the first had None: "Could not infer dtype of NoneType", seen when
# engines of two such models compiled in one process). Instances of one structure still share
# graphs (their tensors are lifted inputs, so that is correct); different structures never do.
_GRAPH_COPIES: dict[tuple[str, str], Any] = {}


def _per_structure(obj: Any, name: str, key: str) -> Any:
    """`obj.<name>` bound to a copy of the method's function whose code object is unique to
    `key` (a separate dynamo cache per structure)."""
    import types

    fn = _GRAPH_COPIES.get((name, key))
    if fn is None:
        base = getattr(type(obj), name)
        fn = types.FunctionType(
            base.__code__.replace(), base.__globals__, base.__name__, base.__defaults__,
            base.__closure__,
        )  # fmt: skip
        fn.__kwdefaults__ = base.__kwdefaults__
        _GRAPH_COPIES[(name, key)] = fn
    return types.MethodType(fn, obj)


class FastForward:
    def __init__(self, model: torch.nn.Module, max_len: int):
        self.model = model
        cfg = model.cfg
        self.cfg = cfg
        self.H, self.KVH, self.D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_dim, self.kv_dim = self.H * self.D, self.KVH * self.D
        dev = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            self.wqkv = [
                torch.cat(
                    [
                        b.self_attn.q_proj.weight,
                        b.self_attn.k_proj.weight,
                        b.self_attn.v_proj.weight,
                    ],
                    dim=0,
                ).contiguous()
                for b in model.layers
            ]
            # per-head q/k norm weights stacked [H + KVH, D] (QK-norm is per head_dim)
            self.qk_w = None
            if cfg.qk_norm:
                self.qk_w = [
                    torch.cat(
                        [
                            b.self_attn.q_norm.weight.expand(self.H, self.D),
                            b.self_attn.k_norm.weight.expand(self.KVH, self.D),
                        ]
                    ).contiguous()
                    for b in model.layers
                ]
            # Plain per-layer records: no nn.Module attribute lookups in the hot loop.
            self.layers = []
            for b in model.layers:
                mlp = b.mlp
                rec = _Layer(
                    ln1=b.input_layernorm.weight,
                    ln2=b.post_attention_layernorm.weight,
                    wo=b.self_attn.o_proj.weight,
                    is_moe=b.is_moe,
                )
                if b.is_moe:
                    rec.moe_i = sum(r.is_moe for r in self.layers)
                    rec.gate_w = mlp.gate.weight
                    rec.top_k = mlp.gate.top_k
                    rec.norm_topk = mlp.gate.norm_topk_prob
                    # selection bias of auxiliary-loss-free balancing: fixed at inference
                    rec.bias = mlp.gate.expert_bias if bool(mlp.gate.expert_bias.any()) else None
                    rec.bias_list = None if rec.bias is None else rec.bias.float().tolist()
                    rec.gate_up, rec.down = mlp.experts.gate_up_proj, mlp.experts.down_proj
                    rec.n_experts = mlp.cfg.n_experts
                    rec.shared = mlp.shared
                rec.mlp = mlp
                self.layers.append(rec)
            pos = torch.arange(max_len, device=dev)[None]
            cos, sin = model.rotary(pos, dtype)
        half = self.D // 2
        # sin with the rotate-half sign folded in: roll(x)·[-sin₁, sin₂] = [-x₂, x₁]·sin
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)
        self.norm_w, self.lm_w, self.embed_w = (
            model.norm.weight,
            model.lm_head.weight,
            model.embed_tokens.weight,
        )
        self.max_len = max_len
        # `extend_one` folds attention's 1/√D into the query rows: of the QK-norm weights when
        # the model has QK-norm (the norm would undo a scale on the projection), else of W_q.
        scale = self.D**-0.5
        with torch.no_grad():
            if self.qk_w is not None:
                self.wqkv_s = self.wqkv
                self.qk_w_s = [
                    torch.cat([w[: self.H] * scale, w[self.H :]]).contiguous() for w in self.qk_w
                ]
            else:
                self.wqkv_s = [
                    torch.cat([w[: self.q_dim] * scale, w[self.q_dim :]]).contiguous()
                    for w in self.wqkv
                ]
                self.qk_w_s = None
        self._bias_key: tuple[int, int] | None = None
        self._bias = torch.empty(0)
        self._compiled: Any = None
        self._compiled_multi = False
        self._compiled_batch: Any = None
        self._experts_t: list[Any] = []  # per layer (gate_up, down) transposed (batched graph)
        self._batch_cache: weakref.ref[KVCache] | None = None
        self.compile_error: str | None = None
        self._views: weakref.WeakKeyDictionary[KVCache, dict[int, Any]] = (
            weakref.WeakKeyDictionary()
        )
        # Route log (RL routing replay, `enable_route_log`): expert ids per (slot, cache cell,
        # MoE layer), written by the eager steps; `_rec` = (slots, cells) of the step running.
        self.routes: torch.Tensor | None = getattr(self, "routes", None)
        self._rec: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def lean(self) -> bool:
        """Whether the single-slot steps (`decode_one`, `extend_one`) apply: CPU fp32 weights."""
        return self.embed_w.device.type == "cpu" and self.embed_w.dtype == torch.float32

    def enable_route_log(self, n_slots: int) -> None:
        """Record every token's expert choices: `routes[slot, cell, moe_layer]` = the top-k
        expert ids the router picked for the token in that cache cell (−1 = none). RL reads a
        finished request's routes (`slot_routes`) so the training forward can replay them
        (routing replay). Only the eager steps log; the engine refuses to compile with it."""
        n_moe = sum(rec.is_moe for rec in self.layers)
        k = max((rec.top_k for rec in self.layers if rec.is_moe), default=1)
        self.routes = torch.full((n_slots, self.max_len, max(n_moe, 1), k), -1, dtype=torch.int16)

    def slot_routes(self, cache: KVCache, slot: int) -> torch.Tensor:
        """The routes of slot's tokens in order ([n_tokens, n_moe, k], int16): its valid cells
        before the cursor (prompt, then every token fed back; the last sampled token never is)."""
        assert self.routes is not None
        cur = int(cache.cursor[slot])
        cells = cache.valid[slot, :cur].nonzero().squeeze(1).cpu()
        return self.routes[slot, cells].clone()

    def _log_routes(self, layer: _Layer, idx: torch.Tensor) -> None:
        if self._rec is not None and self.routes is not None:
            slots, cells = self._rec
            self.routes[slots, cells, layer.moe_i] = idx.reshape(-1, layer.top_k).to(
                device="cpu", dtype=torch.int16
            )

    def _set_rec(self, slots: torch.Tensor | int, cells: torch.Tensor) -> None:
        if self.routes is None:
            return
        cells = cells.reshape(-1).cpu()
        if isinstance(slots, int):
            slots = torch.full_like(cells, slots)
        self._rec = (slots.reshape(-1).cpu(), cells)

    def refresh(self) -> None:
        """Re-fuse the weights (call after the model's weights change in place); a compiled step
        is compiled again (its graph read the old fused weights)."""
        compiled, multi = self._compiled is not None, self._compiled_multi
        bcache = (
            self._batch_cache() if self._compiled_batch is not None and self._batch_cache else None
        )
        self.__init__(self.model, self.max_len)
        if compiled:
            self.enable_compile(multi=multi)
        if bcache is not None:
            self.enable_compile_batch(bcache)

    def sync(self) -> bool:
        """Bring the derived tensors up to date after the model's weights changed in place (an
        optimizer step): the fused QKV (and its pre-scaled copy), stacked QK-norm weights, the
        transposed expert copies and the host copy of the selection biases are rewritten *into
        the same tensors*, so compiled graphs, which hold references to them, stay valid without
        a recompilation. Only a change in which layers use a selection bias (all zeros ↔ not)
        changes the graphs' structure; then this falls back to `refresh()` (recompiles).
        Returns True when it could sync in place."""
        model = self.model
        for rec, b in zip(self.layers, model.layers, strict=True):
            if rec.is_moe and (rec.bias is None) == bool(b.mlp.gate.expert_bias.any()):
                self.refresh()
                return False
        scale = self.D**-0.5
        with torch.no_grad():
            for i, b in enumerate(model.layers):
                a = b.self_attn
                torch.cat(
                    [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight], dim=0, out=self.wqkv[i]
                )
                if self.qk_w is not None:
                    assert self.qk_w_s is not None
                    qk = self.qk_w[i]
                    qk[: self.H].copy_(a.q_norm.weight.expand(self.H, self.D))
                    qk[self.H :].copy_(a.k_norm.weight.expand(self.KVH, self.D))
                    self.qk_w_s[i][: self.H].copy_(qk[: self.H] * scale)
                    self.qk_w_s[i][self.H :].copy_(qk[self.H :])
                else:
                    w = self.wqkv[i]
                    self.wqkv_s[i][: self.q_dim].copy_(w[: self.q_dim] * scale)
                    self.wqkv_s[i][self.q_dim :].copy_(w[self.q_dim :])
            for rec in self.layers:
                if rec.is_moe and rec.bias is not None:
                    rec.bias_list = rec.bias.float().tolist()
            for rec, te in zip(self.layers, self._experts_t, strict=False):
                if te is None or not rec.is_moe:
                    continue
                gu_t, dn_t = te
                if gu_t.data_ptr() != rec.gate_up.data_ptr():  # a copy, not a view
                    gu_t.copy_(rec.gate_up.transpose(1, 2))
                    dn_t.copy_(rec.down.transpose(1, 2))
        return True

    def __call__(
        self,
        ids: torch.Tensor,
        cache: KVCache,
        slot_ids: torch.Tensor | None,
        last_only: bool = True,
        single_slot: int | None = None,
        dense: bool = False,
        slot_range: tuple[int, int] | None = None,
        attention_mask: torch.Tensor | None = None,
        real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ids [B, T] (all real tokens) → logits [B, 1 or T, V]; advances the cache like
        `Transformer.forward(..., cache=cache, slot_ids=slot_ids)` without padding.

        Call under `torch.inference_mode()` (the engine's loop runs in it).
        `single_slot` (B = 1) reads the slot's cache by slicing instead of gathering; `dense`
        (with single_slot) promises that every cell before the slot's cursor is valid (no
        padding holes), so a one-token step needs no attention mask. `slot_range` (a, b) says
        that `slot_ids` is exactly a, a+1, ..., b-1: the cached K/V and validity are then read as
        slice views instead of being gathered (copied) per layer. `attention_mask` [B, T] (1 =
        real, 0 = right padding; batched prefill of prompts of different lengths): padding cells
        are reserved but stay invalid, as `KVCache.prepare` does for the model's forward, and
        with `last_only` each row's logits are those of its last real token. `real` [B, T] bool
        (ragged speculative verification, rows of different draft lengths filled up to T with
        filler tokens *after* their real ones, so causality keeps the fillers out of the real
        tokens' attention; the caller truncates them away): the FFN and the LM head run only on
        the real tokens, and the result is their logits packed row-major, [n_real, V]."""
        B, T = ids.shape
        ridx = torch.nonzero(real.reshape(-1)).flatten() if real is not None else None
        # (route logging wants every token's experts: then the fillers run the FFN too)
        pack = ridx if self.routes is None else None
        dev = ids.device
        if single_slot is not None:
            s = single_slot
            c0, p0, L = self._advance(cache, s, T)
            cos, sin = self.cos[p0 : p0 + T][None], self.sin[p0 : p0 + T][None]
            if dense and T == 1:
                mask = None
            else:
                cells = torch.arange(L, device=dev)
                wi = torch.arange(c0, L, device=dev)
                mask = ((cells[None, :] <= wi[:, None]) & cache.valid[s, :L][None, :])[None, None]
        elif attention_mask is not None:
            assert slot_ids is not None
            write_idx, positions, key_mask, L = cache.prepare(slot_ids, attention_mask)
            rows = slot_ids[:, None].expand(B, T)
            sel = slice(slot_range[0], slot_range[1]) if slot_range is not None else slot_ids
            mask = key_mask[:, None]  # [B, 1, T, L]
            cos, sin = self.cos[positions], self.sin[positions]
        else:
            cursor = cache.cursor[slot_ids]
            seen = cache.seen[slot_ids]
            ar = torch.arange(T, device=dev)
            write_idx = cursor[:, None] + ar[None]  # [B, T]
            positions = seen[:, None] + ar[None]
            L = int(write_idx.max()) + 1
            if cache.max_len < L:
                raise ValueError(f"KV cache overflow: need {L} cells, have {cache.max_len}")
            rows = slot_ids[:, None].expand(B, T)
            cache.valid[rows, write_idx] = True
            cache.cursor[slot_ids] = cursor + T
            cache.seen[slot_ids] = seen + T
            sel: slice | torch.Tensor = (
                slice(slot_range[0], slot_range[1]) if slot_range is not None else slot_ids
            )
            cells = torch.arange(L, device=dev)
            mask = (cells[None, None, :] <= write_idx[:, :, None]) & cache.valid[sel, :L][
                :, None, :
            ]
            mask = mask[:, None]  # [B, 1, T, L]
            cos, sin = self.cos[positions], self.sin[positions]  # [B, T, D]
        if self.routes is not None:
            if single_slot is not None:
                self._set_rec(single_slot, torch.arange(c0, L))
            else:
                self._set_rec(rows, write_idx)
        x = F.embedding(ids, self.embed_w)
        gqa = self.KVH != self.H
        # Batched one-token steps: attention as two small matmuls with the padding mask filled in
        # (SDPA's CPU kernel with a boolean mask costs ~2x more at these sizes).
        small_q = single_slot is None and T == 1 and mask is not None
        drop = ~mask if small_q else None
        eps = self.cfg.norm_eps
        for li, layer in enumerate(self.layers):
            h = _rms(x, layer.ln1, eps)
            qkv = _lin(h, self.wqkv[li])
            # q and k heads side by side: one norm and one rotary for both
            qk = qkv[..., : self.q_dim + self.kv_dim].view(B, T, self.H + self.KVH, self.D)
            v = qkv[..., self.q_dim + self.kv_dim :].view(B, T, self.KVH, self.D)
            if self.qk_w is not None:
                qk = _rms(qk, None, eps) * self.qk_w[li]
            qk = qk.transpose(1, 2)
            # rotate-half rotary as x·cos + roll(x, D/2)·(±sin): same values as `apply_rotary`
            qk = qk * cos[:, None] + qk.roll(self.D // 2, dims=-1) * sin[:, None]
            q, k = qk[:, : self.H], qk[:, self.H :]
            kc, vc = cache.k[li], cache.v[li]
            if single_slot is not None:
                kc[s, :, c0:L] = k[0].to(kc.dtype)
                vc[s, :, c0:L] = v[0].transpose(0, 1).to(vc.dtype)
                kk, vv = kc[s : s + 1, :, :L], vc[s : s + 1, :, :L]
            else:
                kc[rows, :, write_idx] = k.transpose(1, 2).to(kc.dtype)
                vc[rows, :, write_idx] = v.to(vc.dtype)
                kk, vv = kc[sel, :, :L], vc[sel, :, :L]
            if small_q:
                o = self._attend_one(q, kk.to(q.dtype), vv.to(q.dtype), drop)
            else:
                o = F.scaled_dot_product_attention(
                    q, kk.to(q.dtype), vv.to(q.dtype), attn_mask=mask, enable_gqa=gqa
                )
            x = x + _lin(o.transpose(1, 2).reshape(B, T, self.q_dim), layer.wo)
            h = _rms(x, layer.ln2, eps)
            if pack is not None:  # fillers skip the FFN (their outputs are never read)
                hp = h.reshape(B * T, -1).index_select(0, pack)[None]
                y = self._ffn(layer, hp)[0]
                x = x.reshape(B * T, -1).index_add(0, pack, y).view(B, T, -1)
            else:
                x = x + self._ffn(layer, h)
        self._rec = None
        if ridx is not None:
            x = x.reshape(B * T, -1).index_select(0, ridx)
            return _lin(_rms(x, self.norm_w, eps), self.lm_w)
        if last_only and attention_mask is not None:
            last = attention_mask.sum(dim=1) - 1
            x = x[torch.arange(B, device=dev), last][:, None]
        elif last_only:
            x = x[:, -1:]
        return _lin(_rms(x, self.norm_w, eps), self.lm_w)

    def _attend_one(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, drop: torch.Tensor
    ) -> torch.Tensor:
        """Attention of one query per row: q [B, H, 1, D], k/v [B, KVH, L, D], drop [B, 1, 1, L]
        (True = masked) → [B, H, 1, D]. Query heads are grouped per KV head (head h reads KV
        head h // (H / KVH), as `enable_gqa` does), so K/V are never repeated."""
        B, KVH, L, D = k.shape
        qq = q.reshape(B, KVH, self.H // KVH, D)
        sc = torch.matmul(qq, k.transpose(-1, -2)).mul_(D**-0.5)
        sc = sc.masked_fill_(drop, float("-inf")).softmax(dim=-1)
        return torch.matmul(sc, v).view(B, self.H, 1, D)

    def decode_one(self, token: int, cache: KVCache, slot: int) -> torch.Tensor:
        """One token for one slot whose cells before the cursor are all valid → logits [1, V].

        The same function as `__call__(ids [[token]], single_slot=slot, dense=True)`: the
        compiled graph when `enable_compile()` succeeded, else `extend_one` with T = 1."""
        if self._compiled is None:
            return self.extend_one([token], cache, slot)
        return self._run_compiled([token], cache, slot)

    def _advance(self, cache: KVCache, s: int, T: int) -> tuple[int, int, int]:
        """Reserve T cells of slot s: returns (first cell, first position, new length)."""
        c0, p0 = int(cache.cursor[s]), int(cache.seen[s])
        L = c0 + T
        if cache.max_len < L:
            raise ValueError(f"KV cache overflow: need {L} cells, have {cache.max_len}")
        cache.valid[s, c0:L] = True
        cache.cursor[s] = L
        cache.seen[s] = p0 + T
        return c0, p0, L

    def _run_compiled(self, tokens: list[int], cache: KVCache, slot: int) -> torch.Tensor:
        c0, p0, L = self._advance(cache, slot, len(tokens))
        ks, vs = self._slot_views(cache, slot)
        try:
            return self._compiled(
                torch.tensor(tokens), torch.tensor([p0, c0]), torch.empty(L, 0), ks, vs
            )
        except Exception as exc:  # noqa: BLE001 - never fail a request over the compiled path
            # (e.g. an input layout the graph was not compiled for): undo the reservation
            # (the K/V cells written past c0 are invalid again), go eager from now on.
            cache.valid[slot, c0:L] = False
            cache.cursor[slot] = c0
            cache.seen[slot] = p0
            self._compiled, self._compiled_multi = None, False
            self.compile_error = f"compiled step failed, eager from now on: {exc}"
            logging.getLogger("hillclimb.serve").warning("%s", self.compile_error)
            return self.extend_one(tokens, cache, slot, last_only=False)

    def _slot_views(self, cache: KVCache, s: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The slot's per-layer K/V views, made once per (cache, slot); held weakly by cache, so
        a dropped cache takes its views with it."""
        per_slot = self._views.get(cache)
        if per_slot is None:
            per_slot = self._views[cache] = {}
        v = per_slot.get(s)
        if v is None:
            v = per_slot[s] = ([k[s] for k in cache.k], [x[s] for x in cache.v])
        return v

    def enable_compile(
        self,
        multi: bool = False,
        cache: KVCache | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> bool:
        """Compile the single-slot step (`_graph_extend`) with inductor's C++ backend: the
        one-token decode step, and with `multi` also steps of T ≥ 2 tokens (speculative
        verification, the draft's catch-up).

        Why: a single-stream step of a small MoE is ~120 eager ops whose dispatch costs as much
        as streaming the weights; compiled, the elementwise work fuses into a few C++ kernels
        (thinking-tiny on one core: 0.65 vs 0.98 ms per decode token; verifying 5 tokens
        1.29 vs 2.32 ms; `bench/serve_steps.py`). CPU fp32 only. The number of cells in use and T are dynamic sizes, so
        one compilation serves every position; T = 1 and T ≥ 2 are two specialisations. The
        KV cache's shape is static (dynamic strides cost 20% per step): warm-up runs on slot 0
        of `cache` (the engine's own, empty at that point; reset afterwards), and a cache of
        another length later compiles once more. Each compilation takes ≈10–15 s on 2 cores
        (inductor caches it on disk for the next process) and is checked against the eager
        step; any failure (no C++ compiler, unsupported op) leaves the eager path in place
        (`compile_error` says why). Returns whether the compiled step is active. `progress`
        is called with (which graph, seconds) after each one is compiled and checked: a cold
        start on a loaded machine spends minutes here, and a user should see it is alive."""
        if not self.lean:
            return False
        done = _graph_timer(progress)
        try:
            if self._compiled is None:
                # Guards only on the tensor arguments: the weights, configuration and layer
                # records read through `self` are fixed for this object's life (`refresh`
                # builds a new one), and checking ~100 attribute guards per call cost ≈0.1 ms
                # of a 0.8 ms step.
                opts = {
                    "cpp_wrapper": True,
                    "guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe,
                }
                graph = _per_structure(self, "_graph_extend", self._structure_key())
                fn = torch.compile(graph, dynamic=None, options=opts)
                self._warm(fn, 1, cache)
                self._compiled = fn
            elif cache is not None:
                self._warm(self._compiled, 1, cache)  # this cache's shape, if new
            done("single-stream decode step")
            if multi and (not self._compiled_multi or cache is not None):
                self._warm(self._compiled, 3, cache)
                self._compiled_multi = True
                done("multi-token step (speculative verification, short prefills)")
        except Exception as exc:  # noqa: BLE001 - any failure: keep the eager path
            self.compile_error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def _structure_key(self) -> str:
        """What a compiled graph depends on beyond tensor shapes: the model config and, per
        layer record, which fields are None, their non-tensor values and tensor ranks."""

        def field(v: Any) -> Any:
            if v is None or isinstance(v, bool | int | float | str):
                return v
            if isinstance(v, torch.Tensor):
                return ("tensor", str(v.dtype), v.dim())
            if isinstance(v, list | tuple):
                return ("seq", len(v))
            return type(v).__name__

        layers = [tuple((k, field(v)) for k, v in sorted(vars(lr).items())) for lr in self.layers]
        return repr((repr(self.cfg), self.lean, self.max_len, layers))

    def _warm(self, fn: Any, T: int, cache: KVCache | None) -> None:
        """Compile fn for T new tokens after 2 cached ones on slot 0 of `cache` (a fresh
        one-slot cache of `max_len` cells when None; slot 0 is reset afterwards) and compare it
        with the eager step. The used length (and T when > 1) are marked dynamic; duck sizing is
        off while tracing, or a length equal to a model dimension would be tied to it."""
        import torch.fx.experimental._config as fx_config

        dev = self.embed_w.device
        V = self.cfg.vocab_size
        ids = [(7 * i + 1) % V for i in range(2 + T)]
        got_c = cache if cache is not None else KVCache(self.cfg, 1, self.max_len, device=dev)
        ref_c = KVCache(self.cfg, 1, 8, device=dev)
        try:
            with torch.inference_mode(), fx_config.patch(use_duck_shape=False):
                want = self.extend_one(ids, ref_c, 0, last_only=False)[2:]
                got_c.reset([0])
                self.extend_one(ids[:2], got_c, 0)
                c0, p0, L = self._advance(got_c, 0, T)
                ks, vs = [k[0] for k in got_c.k], [v[0] for v in got_c.v]
                x, span = torch.tensor(ids[2:]), torch.empty(L, 0)
                torch._dynamo.mark_dynamic(span, 0)
                if T > 1:
                    torch._dynamo.mark_dynamic(x, 0)
                got = fn(x, torch.tensor([p0, c0]), span, ks, vs)
        finally:
            got_c.reset([0])
        if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
            raise RuntimeError(f"compiled step differs by {(got - want).abs().max():.3g}")

    @property
    def compiled_batch(self) -> bool:
        """Whether batched one-token steps over contiguous slots run compiled (`decode_batch`)."""
        return self._compiled_batch is not None

    def enable_compile_batch(
        self, cache: KVCache, progress: Callable[[str, float], None] | None = None
    ) -> bool:
        """Compile the batched one-token step (`_graph_batch`) for `cache` (its shape is static
        in the graph; the number of rows B and of cells in use are dynamic sizes).

        Why: a batched decode step of a small MoE is still mostly dispatch of small ops around
        a few GEMMs (norms, rotary, masks, softmax, residuals, routing); compiled, they fuse
        into C++ kernels and the routed experts run as one custom op over grouped GEMMs
        (code-flash-tiny on one core: 2.11 vs 2.80 ms per step at 32 rows, 1.32 vs 1.76 at 8;
        `bench/serve_steps.py`).
        Warm-up runs on the first slots of `cache`, which must be free (they are reset
        afterwards): one compilation with B marked dynamic, then B = 2, 3 and the full batch,
        each checked against the eager batched step. CPU fp32 only; a failure
        leaves the eager step (`compile_error` says why). Returns whether it is active.
        `progress` as in `enable_compile`."""
        if not self.lean or cache.n_slots < 2:
            return False
        done = _graph_timer(progress)
        try:
            if not self._experts_t:
                # grouped GEMMs read [E, in, out] weights 1.4-1.9x faster when contiguous than
                # as transposed views of the model's [E, out, in]: a transposed copy when the
                # experts are small (CPU-served models), views otherwise
                n = sum(lr.gate_up.numel() + lr.down.numel() for lr in self.layers if lr.is_moe)
                copy = n * self.embed_w.element_size() <= _EXPERT_COPY_MAX_BYTES

                def t(w: torch.Tensor) -> torch.Tensor:
                    return w.transpose(1, 2).contiguous() if copy else w.transpose(1, 2)

                self._experts_t = [
                    (t(lr.gate_up), t(lr.down)) if lr.is_moe else None for lr in self.layers
                ]
            if self._compiled_batch is None:
                opts = {
                    "cpp_wrapper": True,
                    "guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe,
                }
                graph = _per_structure(self, "_graph_batch", self._structure_key())
                fn = torch.compile(graph, dynamic=None, options=opts)
            else:
                fn = self._compiled_batch
            for B in sorted({2, min(3, cache.n_slots), cache.n_slots}):
                self._warm_batch(fn, B, cache)
            self._compiled_batch = fn
            self._batch_cache = weakref.ref(cache)
            done(f"batched decode step ({cache.n_slots} slots)")
        except Exception as exc:  # noqa: BLE001 - any failure: keep the eager path
            self.compile_error = f"{type(exc).__name__}: {exc}"
            return False
        return True

    def _warm_batch(self, fn: Any, B: int, cache: KVCache) -> None:
        """Run fn on slots 0..B-1 of `cache` (prompts of different lengths, so rows attend to
        different spans) and compare with the eager batched step on a fresh cache."""
        import torch.fx.experimental._config as fx_config

        dev = self.embed_w.device
        V = self.cfg.vocab_size
        ref = KVCache(self.cfg, B, 16, device=dev)
        slots = list(range(B))
        try:
            with torch.inference_mode(), fx_config.patch(use_duck_shape=False):
                cache.reset(slots)
                for c in (cache, ref):
                    for b in slots:
                        self.extend_one([(5 * b + 3 * i + 1) % V for i in range(2 + b % 5)], c, b)
                toks = [(11 * b + 2) % V for b in slots]
                ids = torch.tensor(toks, device=dev)
                want = self(ids[:, None], ref, torch.tensor(slots), slot_range=(0, B))[:, -1]
                got = fn(*self._batch_args(toks, cache, 0, mark=True))
        finally:
            cache.reset(slots)
        if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
            raise RuntimeError(f"compiled batched step differs by {(got - want).abs().max():.3g}")

    def _batch_args(
        self, tokens: list[int], cache: KVCache, a: int, mark: bool = False
    ) -> tuple[Any, ...]:
        """`_graph_batch`'s arguments for slots a..a+B-1 (raises on a KV cache overflow before
        anything is reserved)."""
        B = len(tokens)
        b = a + B
        L = int(cache.cursor[a:b].max()) + 1
        if cache.max_len < L:
            raise ValueError(f"KV cache overflow: need {L} cells, have {cache.max_len}")
        ids, span = torch.tensor(tokens, device=self.embed_w.device), torch.empty(L, 0)
        ks, vs = [k[a:b] for k in cache.k], [v[a:b] for v in cache.v]
        cur, seen, valid = cache.cursor[a:b], cache.seen[a:b], cache.valid[a:b]
        if mark:  # the row count B on every argument, the used length on span
            for t in (span, ids, cur, seen, valid, *ks, *vs):
                torch._dynamo.maybe_mark_dynamic(t, 0)
        return ids, span, cur, seen, valid, ks, vs

    def decode_batch(self, tokens: list[int], cache: KVCache, a: int) -> torch.Tensor:
        """One token for each of the contiguous slots a, a+1, …, a+B-1 (B = len(tokens)) →
        logits [B, V]: the compiled batched graph (`enable_compile_batch`), else the eager
        batched step. Advances the slots' cursors like `__call__`."""
        B = len(tokens)
        fn = self._compiled_batch
        if fn is not None:
            args = self._batch_args(tokens, cache, a)
            saved = cache.cursor[a : a + B].clone(), cache.seen[a : a + B].clone()
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - never fail a request over the compiled path
                rows = torch.arange(a, a + B)
                cache.valid[rows, saved[0]] = False  # undo the reservation, then go eager
                cache.cursor[a : a + B], cache.seen[a : a + B] = saved
                self._compiled_batch = None
                self.compile_error = f"compiled batched step failed, eager from now on: {exc}"
                logging.getLogger("hillclimb.serve").warning("%s", self.compile_error)
        ids = torch.tensor(tokens, device=self.embed_w.device)[:, None]
        slots = torch.arange(a, a + B, device=ids.device)
        return self(ids, cache, slots, slot_range=(a, a + B))[:, -1]

    def _graph_batch(
        self,
        ids: torch.Tensor,
        span: torch.Tensor,
        cursor: torch.Tensor,
        seen: torch.Tensor,
        valid: torch.Tensor,
        kcs: list[torch.Tensor],
        vcs: list[torch.Tensor],
    ) -> torch.Tensor:
        """The batched one-token step as one traceable graph → logits [B, V]. ids [B] (one new
        token per row), span an empty [L, 0] tensor whose length is the number of cells any row
        uses after this step (a dynamic size), cursor/seen/valid/kcs/vcs the rows' views of the
        cache's cursors, rotary positions, validity [B, S] and per-layer K/V [B, KVH, S, D],
        all advanced in place (the step reserves one cell per row, as `__call__` does). Row b
        attends to its valid cells up to its new one, so right-padding holes stay masked. The
        1/√D scale is folded into the query weights, as in `_graph_extend`."""
        B, L = ids.shape[0], span.shape[0]
        H, KVH, D = self.H, self.KVH, self.D
        G = H // KVH
        dm, eps = self.cfg.d_model, self.cfg.norm_eps
        cur, pos = cursor.clone(), seen.clone()
        rows = torch.arange(B, device=ids.device)
        valid[rows, cur] = True
        cursor.add_(1)
        seen.add_(1)
        every = torch.arange(L, device=ids.device)
        ok = valid[:, :L] & (every[None, :] <= cur[:, None])
        bias = torch.where(ok, 0.0, float("-inf"))[:, None, None, :]  # [B, 1, 1, L]
        x = self.embed_w[ids]  # [B, dm]
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [B, 1, D]
        for li, layer in enumerate(self.layers):
            qk, v = self._graph_qkv(li, layer, x, cos, sin)
            kcs[li][rows, :, cur] = qk[:, H:]
            vcs[li][rows, :, cur] = v
            q = qk[:, :H].view(B, KVH, G, D)
            sc = torch.matmul(q, kcs[li][:, :, :L].transpose(-1, -2)) + bias  # [B, KVH, G, L]
            o = torch.matmul(sc.softmax(dim=-1), vcs[li][:, :, :L])  # [B, KVH, G, D]
            x = x + o.reshape(B, H * D) @ layer.wo.t()
            h = F.rms_norm(x, (dm,), layer.ln2, eps)
            if not layer.is_moe:
                x = x + layer.mlp(h)
                continue
            w, idx = _route(layer, (h @ layer.gate_w.t()).float())
            gu_t, dn_t = self._experts_t[li]
            x = x + routed_experts(h, w.to(h.dtype), idx, gu_t, dn_t)
            if layer.shared is not None:
                x = x + layer.shared(h)
        return F.rms_norm(x, (dm,), self.norm_w, eps) @ self.lm_w.t()

    def _graph_qkv(
        self, li: int, layer: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows x [N, dm] → (q and k heads side by side [N, H + KVH, D], normed and rotated,
        q pre-scaled; v [N, KVH, D]): the attention input of both compiled graphs."""
        H, KVH, D, eps = self.H, self.KVH, self.D, self.cfg.norm_eps
        N, qk_end = x.shape[0], self.q_dim + self.kv_dim
        qkv = F.rms_norm(x, (self.cfg.d_model,), layer.ln1, eps) @ self.wqkv_s[li].t()
        qk = qkv[:, :qk_end].view(N, H + KVH, D)
        if self.qk_w_s is not None:
            qk = F.rms_norm(qk, (D,), None, eps) * self.qk_w_s[li]
        qk = qk * cos + qk.roll(D // 2, dims=-1) * sin
        return qk, qkv[:, qk_end:].view(N, KVH, D)

    def _graph_extend(
        self,
        ids: torch.Tensor,
        pc: torch.Tensor,
        span: torch.Tensor,
        kcs: list[torch.Tensor],
        vcs: list[torch.Tensor],
    ) -> torch.Tensor:
        """The single-slot step as one traceable graph → logits [T, V] for the T new tokens
        `ids`. pc = [first rotary position, first cache cell] (a small tensor, so no guard
        depends on their values), span an empty [L, 0] tensor whose length L = first cell + T
        is the number of cells in use (a tensor size, so it is a dynamic dimension from the
        first compilation — an int argument would first be specialised), kcs/vcs the slot's
        per-layer K/V views
        [KVH, max_len, D]. Routing stays on device (top-k, then the chosen experts' weights
        gathered inside the contractions, which inductor fuses rather than copies) so nothing
        breaks the graph. Same math as `extend_one`."""
        T, L = ids.shape[0], span.shape[0]
        H, KVH, D = self.H, self.KVH, self.D
        G = H // KVH
        dm, eps = self.cfg.d_model, self.cfg.norm_eps
        ar = torch.arange(T, device=ids.device)
        pos, cells = pc[0] + ar, pc[1] + ar
        x = self.embed_w[ids]  # [T, dm]
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # [T, 1, D]
        every = torch.arange(L, device=ids.device)
        causal = torch.where(every[None, :] > cells[:, None], float("-inf"), 0.0)  # [T, L]
        for li, layer in enumerate(self.layers):
            qk, v = self._graph_qkv(li, layer, x, cos, sin)
            kcs[li].index_copy_(1, cells, qk[:, H:].transpose(0, 1))
            vcs[li].index_copy_(1, cells, v.transpose(0, 1))
            q = qk[:, :H].view(T, KVH, G, D).permute(1, 2, 0, 3).reshape(KVH, G * T, D)
            sc = torch.bmm(q, kcs[li][:, :L].transpose(1, 2)).view(KVH, G, T, L) + causal
            o = torch.bmm(sc.softmax(dim=-1).view(KVH, G * T, L), vcs[li][:, :L])
            x = x + o.view(KVH, G, T, D).permute(2, 0, 1, 3).reshape(T, H * D) @ layer.wo.t()
            h = F.rms_norm(x, (dm,), layer.ln2, eps)
            if not layer.is_moe:
                x = x + layer.mlp(h)
                continue
            w, idx = _route(layer, (h @ layer.gate_w.t()).float())
            g, u = torch.einsum("td,tkfd->tkf", h, layer.gate_up[idx]).chunk(2, dim=-1)
            y = torch.einsum("tkf,tkdf->tkd", F.silu(g) * u, layer.down[idx])
            x = x + (w.to(y.dtype)[..., None] * y).sum(dim=1)
            if layer.shared is not None:
                x = x + layer.shared(h)
        return F.rms_norm(x, (dm,), self.norm_w, eps) @ self.lm_w.t()

    def extend_one(
        self, tokens: list[int], cache: KVCache, slot: int, last_only: bool = True
    ) -> torch.Tensor:
        """T tokens appended to one slot whose cells before the cursor are all valid (no padding
        holes) → logits [1 or T, V]. This is the step of single-stream decoding (T = 1), of
        speculative verification (T = γ + 1) and of the draft's catch-up and drafting.

        At these sizes a step is per-op overhead plus streaming the weights it touches, so it is
        written for few ops on CPU fp32: the RMS statistic is one dot product read back as a
        Python float (no reduction kernels), attention is two batched matmuls per layer over the
        slot's cache views (the 1/√D scale is folded into the query weights; a causal mask only
        when T > 1), the router's top-k for a handful of experts is done on the host, and each
        touched expert runs once over all of its rows (expert weights are read once per step,
        which is what verification of γ + 1 tokens costs in bandwidth). Residual adds are fused
        into the projections (`addmm`/`addmv`)."""
        T = len(tokens)
        if T > 1 and self._compiled_multi:
            out = self._run_compiled(tokens, cache, slot)
            return out[-1:] if last_only else out
        s = slot
        c0, p0, L = self._advance(cache, s, T)
        if self.routes is not None:
            self._set_rec(s, torch.arange(c0, L))
        H, KVH, D = self.H, self.KVH, self.D
        G = H // KVH
        qk_end = self.q_dim + self.kv_dim
        dm, eps, half = self.cfg.d_model, self.cfg.norm_eps, self.D // 2
        if T == 1:
            x = self.embed_w[tokens[0]][None]  # a view: never written in place below
            cos, sin = self.cos[p0 : p0 + 1], self.sin[p0 : p0 + 1]
            bias = None
        else:
            x = self.embed_w[torch.tensor(tokens, device=self.embed_w.device)]
            cos, sin = self.cos[p0 : p0 + T, None], self.sin[p0 : p0 + T, None]
            # row i (cell c0 + i) sees cells ≤ c0 + i: an additive causal mask over the new cells
            bias = self._causal_bias(T, L)
        for li, layer in enumerate(self.layers):
            h = _rms_rows(x, layer.ln1, eps, dm)
            qkv = F.linear(h, self.wqkv_s[li])  # [T, (H + 2·KVH)·D], q rows pre-scaled
            qk = qkv[:, :qk_end].view(T, H + KVH, D)
            if self.qk_w is not None:
                qk = F.rms_norm(qk, (D,), None, eps).mul_(self.qk_w_s[li])
            qk = torch.addcmul(qk * cos, qk.roll(half, dims=-1), sin)  # rotate-half rotary
            kc, vc = cache.k[li], cache.v[li]
            kc[s, :, c0:L] = qk[:, H:].transpose(0, 1)
            vc[s, :, c0:L] = qkv[:, qk_end:].view(T, KVH, D).transpose(0, 1)
            # queries grouped per KV head: [KVH, G·T, D] (head h reads KV head h // G)
            q = qk[:, :H].view(T, KVH, G, D).permute(1, 2, 0, 3).reshape(KVH, G * T, D)
            sc = torch.bmm(q, kc[s, :, :L].transpose(1, 2))  # [KVH, G·T, L]
            if bias is not None:
                sc = sc.view(KVH, G, T, L).add_(bias).view(KVH, G * T, L)
            o = torch.bmm(sc.softmax(dim=-1), vc[s, :, :L])  # [KVH, G·T, D]
            if T > 1:
                o = o.view(KVH, G, T, D).permute(2, 0, 1, 3)
            x = torch.addmm(x, o.reshape(T, H * D), layer.wo.t())
            h = _rms_rows(x, layer.ln2, eps, dm)
            x = self._ffn_rows(layer, h, x)
        self._rec = None
        if last_only:
            x = x[-1:]
        return F.linear(_rms_rows(x, self.norm_w, eps, dm), self.lm_w)

    def _causal_bias(self, T: int, L: int) -> torch.Tensor:
        key = (T, L)
        if self._bias_key != key:
            cells = torch.arange(L, device=self.embed_w.device)
            rows = torch.arange(L - T, L, device=self.embed_w.device)
            self._bias = torch.zeros(T, L, device=self.embed_w.device).masked_fill_(
                cells[None, :] > rows[:, None], float("-inf")
            )
            self._bias_key = key
        return self._bias

    def _route_host(self, layer: _Layer, logits: torch.Tensor) -> list[list[tuple[int, float]]]:
        """Per row, the chosen (expert, gate weight) pairs — the router's rule (softmax, biased
        top-k selection, optional renormalisation) computed on the host for few experts."""
        k = layer.top_k
        bias = layer.bias_list
        out = []
        for row in logits.tolist():
            m = max(row)
            ex = [math.exp(v - m) for v in row]
            z = sum(ex)
            probs = [e / z for e in ex]
            key = probs if bias is None else [p + b for p, b in zip(probs, bias, strict=True)]
            top = sorted(range(len(row)), key=key.__getitem__, reverse=True)[:k]
            ws = [probs[e] for e in top]
            if layer.norm_topk:
                t = sum(ws)
                ws = [w / t for w in ws]
            out.append(list(zip(top, ws, strict=True)))
        return out

    def _ffn_rows(self, layer: _Layer, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x + FFN(h) for the T rows of one slot's step (see `extend_one`)."""
        if not layer.is_moe:
            return x + layer.mlp(h)
        logits = F.linear(h, layer.gate_w)
        if layer.n_experts <= 64:
            pairs = self._route_host(layer, logits)
        else:
            w, idx = _route(layer, logits.float())
            pairs = [
                list(zip(i, ww, strict=True))
                for i, ww in zip(idx.tolist(), w.tolist(), strict=True)
            ]
        if self._rec is not None:
            self._log_routes(layer, torch.tensor([[e for e, _ in row] for row in pairs]))
        if len(pairs) == 1:  # one token: GEMVs on the chosen experts' weight views, no copies
            y = x[0]
            hv = h[0]
            for eid, wj in pairs[0]:
                g, u = torch.mv(layer.gate_up[eid], hv).chunk(2)
                y = torch.addmv(y, layer.down[eid], F.silu(g).mul_(u), alpha=wj)
            y = y[None]
        else:  # each touched expert once over all its rows (weights read once per step)
            by_e: dict[int, tuple[list[int], list[float]]] = {}
            for t, row in enumerate(pairs):
                for eid, wj in row:
                    rs = by_e.setdefault(eid, ([], []))
                    rs[0].append(t)
                    rs[1].append(wj)
            y = x.clone()
            for eid, (rows, ws) in by_e.items():
                ri = torch.tensor(rows, device=h.device)
                g, u = F.linear(h.index_select(0, ri), layer.gate_up[eid]).chunk(2, dim=-1)
                o = F.linear(F.silu(g).mul_(u), layer.down[eid])
                o.mul_(torch.tensor(ws, device=h.device, dtype=o.dtype)[:, None])
                y.index_add_(0, ri, o)
        if layer.shared is not None:
            y = y + layer.shared(h)
        return y

    def _ffn(self, layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        if not layer.is_moe:
            return layer.mlp(h)
        B, T, Dm = h.shape
        n = B * T
        k = layer.top_k
        flat = h.reshape(n, Dm)
        w, idx = _route(layer, _lin(flat, layer.gate_w).float())
        if self._rec is not None:
            self._log_routes(layer, idx)
        w = w.to(h.dtype)
        if n * k <= 4:
            # A handful of token-expert pairs: plain GEMVs on the selected experts' weight views
            # (no copies); expert ids come to the host, which a decode step syncs on anyway.
            rows = []
            for i, (ids, ws) in enumerate(zip(idx.tolist(), w.tolist(), strict=True)):
                acc = None
                for eid, wj in zip(ids, ws, strict=True):
                    g, u = torch.mv(layer.gate_up[eid], flat[i]).chunk(2, dim=-1)
                    o = torch.mv(layer.down[eid], F.silu(g) * u) * wj
                    acc = o if acc is None else acc + o
                rows.append(acc)
            y = rows[0][None] if n == 1 else torch.stack(rows)
        else:
            # More pairs: the model's own expert kernels (grouped GEMM) over rows sorted by
            # expert, without the balancing statistics of `MoE.forward`.
            e = idx.reshape(-1)
            order = torch.argsort(e, stable=True)
            counts = torch.bincount(e, minlength=layer.n_experts)
            token_of = order // k
            y = layer.mlp.experts(flat[token_of], counts) * w.reshape(-1)[order, None]
            y = torch.zeros_like(flat).index_add_(0, token_of, y)
        if layer.shared is not None:
            y = y + layer.shared(flat)
        return y.view(B, T, Dm)
