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

It handles steps where every new token is real (decode, speculative verification, catch-up of
the draft): no padding inside the step. It reads the model's own parameters (plus the fused QKV
copy), its rotary tables and its expert kernels, so results match the reference forward to
floating-point rounding (tests compare the two; `refresh()` after in-place weight updates).
"""

from __future__ import annotations

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


def _rms(x: torch.Tensor, w: torch.Tensor | None, eps: float) -> torch.Tensor:
    """`RMSNorm.forward` without the module call (same math, fp32 statistics for bf16)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), w, eps)
    y = F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)
    return y if w is None else w * y


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
                    rec.gate_w = mlp.gate.weight
                    rec.top_k = mlp.gate.top_k
                    rec.norm_topk = mlp.gate.norm_topk_prob
                    # selection bias of auxiliary-loss-free balancing: fixed at inference
                    rec.bias = mlp.gate.expert_bias if bool(mlp.gate.expert_bias.any()) else None
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

    def refresh(self) -> None:
        """Re-fuse the weights (call after the model's weights change in place)."""
        self.__init__(self.model, self.max_len)

    def __call__(
        self,
        ids: torch.Tensor,
        cache: KVCache,
        slot_ids: torch.Tensor | None,
        last_only: bool = True,
        single_slot: int | None = None,
        dense: bool = False,
        slot_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """ids [B, T] (all real tokens) → logits [B, 1 or T, V]; advances the cache like
        `Transformer.forward(..., cache=cache, slot_ids=slot_ids)` without padding.

        Call under `torch.inference_mode()` (the engine's loop runs in it).
        `single_slot` (B = 1) reads the slot's cache by slicing instead of gathering; `dense`
        (with single_slot) promises that every cell before the slot's cursor is valid (no
        padding holes), so a one-token step needs no attention mask. `slot_range` (a, b) says
        that `slot_ids` is exactly a, a+1, ..., b-1: the cached K/V and validity are then read as
        slice views instead of being gathered (copied) per layer."""
        B, T = ids.shape
        dev = ids.device
        if single_slot is not None:
            s = single_slot
            c0, p0 = int(cache.cursor[s]), int(cache.seen[s])
            L = c0 + T
            if cache.max_len < L:
                raise ValueError(f"KV cache overflow: need {L} cells, have {cache.max_len}")
            cache.valid[s, c0:L] = True
            cache.cursor[s] = L
            cache.seen[s] = p0 + T
            cos, sin = self.cos[p0 : p0 + T][None], self.sin[p0 : p0 + T][None]
            if dense and T == 1:
                mask = None
            else:
                cells = torch.arange(L, device=dev)
                wi = torch.arange(c0, L, device=dev)
                mask = ((cells[None, :] <= wi[:, None]) & cache.valid[s, :L][None, :])[None, None]
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
            x = x + self._ffn(layer, h)
        if last_only:
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

        The same function as `__call__(ids [[token]], single_slot=slot, dense=True)`, written
        on 1-D vectors: a single-stream decode step is pure per-op overhead (~150 eager ops of a
        few µs each against ~0.25 ms of actual GEMV work on thinking-tiny), so this drops every
        reshape/view/transpose it can and fuses the residual adds into the projections
        (`addmv`: attention output, each routed expert's down projection, scaled by its gate
        weight). fp32 only (the engine's CPU dtype); other dtypes use `__call__`."""
        s, c0, p0 = slot, int(cache.cursor[slot]), int(cache.seen[slot])
        L = c0 + 1
        if cache.max_len < L:
            raise ValueError(f"KV cache overflow: need {L} cells, have {cache.max_len}")
        cache.valid[s, c0] = True
        cache.cursor[s] = L
        cache.seen[s] = p0 + 1
        cos, sin = self.cos[p0], self.sin[p0]  # [D]
        H, KVH, D = self.H, self.KVH, self.D
        qk_end = self.q_dim + self.kv_dim
        shape, eps, half = (self.cfg.d_model,), self.cfg.norm_eps, self.D // 2
        gqa = KVH != H
        x = self.embed_w[token]  # a view: never written in place below
        for li, layer in enumerate(self.layers):
            h = F.rms_norm(x, shape, layer.ln1, eps)
            qkv = torch.mv(self.wqkv[li], h)
            qk = qkv[:qk_end].view(H + KVH, D)
            if self.qk_w is not None:
                qk = F.rms_norm(qk, (D,), None, eps) * self.qk_w[li]
            qk = torch.addcmul(qk * cos, qk.roll(half, dims=-1), sin)
            kc, vc = cache.k[li], cache.v[li]
            kc[s, :, c0] = qk[H:]
            vc[s, :, c0] = qkv[qk_end:].view(KVH, D)
            # 4-D operands: SDPA's fused CPU kernel (3-D ones fall back to the math path)
            o = F.scaled_dot_product_attention(
                qk[:H].view(1, H, 1, D), kc[s : s + 1, :, :L], vc[s : s + 1, :, :L], enable_gqa=gqa
            )
            x = torch.addmv(x, layer.wo, o.view(-1))
            h = F.rms_norm(x, shape, layer.ln2, eps)
            x = self._ffn_one(layer, h, x)
        return torch.mv(self.lm_w, F.rms_norm(x, shape, self.norm_w, eps))[None]

    def _ffn_one(self, layer: _Layer, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x + FFN(h) for one token (1-D vectors); see `decode_one`."""
        if not layer.is_moe:
            return x + layer.mlp(h[None])[0]
        logits = torch.mv(layer.gate_w, h)
        k = layer.top_k
        if layer.bias is None and layer.norm_topk:
            top, idx = torch.topk(logits, k)
            w = top.softmax(dim=-1)
        else:
            probs = logits.softmax(dim=-1)
            if layer.bias is not None:
                _, idx = torch.topk(probs + layer.bias, k)
                w = probs.gather(-1, idx)
            else:
                w, idx = torch.topk(probs, k)
            if layer.norm_topk:
                w = w / w.sum()
        y = x
        for eid, wj in zip(idx.tolist(), w.tolist(), strict=True):
            g, u = torch.mv(layer.gate_up[eid], h).chunk(2)
            y = torch.addmv(y, layer.down[eid], F.silu(g).mul_(u), alpha=wj)
        if layer.shared is not None:
            y = y + layer.shared(h[None])[0]
        return y

    def _ffn(self, layer: _Layer, h: torch.Tensor) -> torch.Tensor:
        if not layer.is_moe:
            return layer.mlp(h)
        B, T, Dm = h.shape
        n = B * T
        k = layer.top_k
        flat = h.reshape(n, Dm)
        logits = _lin(flat, layer.gate_w).float()
        if layer.bias is None and layer.norm_topk:
            # renormalised top-k probabilities = softmax over the top-k logits (fewer kernels)
            top, idx = torch.topk(logits, k, dim=-1)
            w = top.softmax(dim=-1)
        else:
            probs = logits.softmax(dim=-1)
            if layer.bias is not None:
                _, idx = torch.topk(probs + layer.bias, k, dim=-1)
                w = probs.gather(-1, idx)
            else:
                w, idx = torch.topk(probs, k, dim=-1)
            if layer.norm_topk:
                w = w / w.sum(dim=-1, keepdim=True)
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
