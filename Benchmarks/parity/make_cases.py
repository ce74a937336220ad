#!/usr/bin/env python3
"""Write attention-parity case directories from PyTorch (or, without it, from NumPy in float64).

    python3 Benchmarks/parity/make_cases.py OUT_DIR            # a standard set of cases
    python3 Benchmarks/parity/make_cases.py OUT_DIR --backend numpy
    swift run -c release attention-parity OUT_DIR/*

Each case directory gets q.npy, k.npy, v.npy (float32 [B, H, L, D]), out.npy, lse.npy,
dout.npy with the gradients dq.npy, dk.npy, dv.npy, and case.json ({"scale": ...,
"causal": "none" | "bottom_right" | "top_left", "window": [left, right] or null}). With PyTorch, out comes from
torch.nn.functional.scaled_dot_product_attention in float64 (top-left causal is its is_causal;
bottom-right is an explicit boolean mask), lse from torch.logsumexp of the scaled, masked
scores, and the gradients from autograd of sum(out * dout). Rows that see no key get out = 0,
lse = -inf and no gradient, the library's convention.

Not needed to build or test the package; it only needs numpy (and torch, if you want the
PyTorch reference).
"""
import argparse
import json
import math
import os
import sys

import numpy as np


def visible_mask(lq, lk, causal, window=None):
    """[lq, lk] booleans: may query i see key j? window = [left, right], -1 = unbounded."""
    i = np.arange(lq)[:, None]
    j = np.arange(lk)[None, :]
    if causal == "none":
        mask = np.ones((lq, lk), dtype=bool)
    elif causal == "bottom_right":
        mask = j <= i + (lk - lq)
    elif causal == "top_left":
        mask = j <= i
    else:
        raise ValueError(causal)
    if window is not None:
        left, right = window
        if left >= 0:
            mask &= j >= i + (lk - lq) - left
        if right >= 0:
            mask &= j <= i + (lk - lq) + right
    return mask


def reference_numpy(q, k, v, dout, scale, causal, window=None):
    """float64 attention with GQA: out [B,Hq,Lq,Dv], lse [B,Hq,Lq] and dq, dk, dv."""
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    group = q.shape[1] // k.shape[1]
    kr = np.repeat(k, group, axis=1)
    vr = np.repeat(v, group, axis=1)
    s = scale * np.einsum("bhid,bhjd->bhij", q, kr)
    mask = visible_mask(q.shape[2], k.shape[2], causal, window)
    s = np.where(mask, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    seen = np.isfinite(m)
    m = np.where(seen, m, 0.0)
    e = np.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(seen, total, 1.0)
    out = np.einsum("bhij,bhjd->bhid", p, vr)
    lse = np.where(seen[..., 0], m[..., 0] + np.log(np.where(seen[..., 0], total[..., 0], 1.0)), -np.inf)
    # Backward: dS = P ∘ (dP − rowsum(dO ∘ O)); dK, dV summed over each group's heads.
    dp = np.einsum("bhid,bhjd->bhij", dout, vr)
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    dq = scale * np.einsum("bhij,bhjd->bhid", ds, kr)
    dk = scale * np.einsum("bhij,bhid->bhjd", ds, q)
    dv = np.einsum("bhij,bhid->bhjd", p, dout)
    b, hq = q.shape[:2]
    dk = dk.reshape(b, hq // group, group, *dk.shape[2:]).sum(axis=2)
    dv = dv.reshape(b, hq // group, group, *dv.shape[2:]).sum(axis=2)
    return out, lse, dq, dk, dv


def reference_torch(q, k, v, dout, scale, causal, window=None):
    import torch

    tq, tk, tv = (torch.from_numpy(x.astype(np.float64)).requires_grad_() for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    kr = tk.repeat_interleave(group, dim=1)
    vr = tv.repeat_interleave(group, dim=1)
    mask = torch.from_numpy(visible_mask(q.shape[2], k.shape[2], causal, window))
    seen = mask.any(dim=-1)  # rows with no visible key: 0 and -inf, not NaN
    safe = mask | ~seen[:, None]  # SDPA gives NaN on fully masked rows; zeroed below
    out = torch.nn.functional.scaled_dot_product_attention(
        tq, kr, vr, attn_mask=None if causal == "none" and window is None else safe, scale=scale)
    out = torch.where(seen[None, None, :, None], out, torch.zeros_like(out))
    (out * torch.from_numpy(dout.astype(np.float64))).sum().backward()
    with torch.no_grad():
        scores = scale * tq @ kr.transpose(-1, -2)
        lse = torch.logsumexp(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return (out.detach().numpy(), lse.numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy())


CASES = [
    # name, B, Hq, Hkv, Lq, Lk, Dqk, Dv, scale (None = 1/sqrt(Dqk)), causal, window
    ("mha_none", 1, 4, 4, 64, 64, 32, 32, None, "none", None),
    ("gqa_bottom_right", 2, 8, 2, 65, 129, 64, 64, None, "bottom_right", None),
    ("mqa_top_left", 1, 8, 1, 127, 127, 40, 40, 0.2, "top_left", None),
    ("decode_like", 2, 4, 4, 1, 300, 128, 128, None, "bottom_right", None),
    ("lq_gt_lk_bottom_right", 1, 2, 2, 100, 17, 16, 24, None, "bottom_right", None),
    ("sliding_window_causal", 1, 4, 2, 200, 200, 64, 64, None, "bottom_right", [32, 0]),
    ("sliding_window_two_sided", 1, 2, 2, 90, 120, 32, 32, None, "none", [8, 16]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--backend", choices=["auto", "torch", "numpy"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    backend = args.backend
    if backend == "auto":
        try:
            import torch  # noqa: F401
            backend = "torch"
        except ImportError:
            backend = "numpy"
    reference = reference_torch if backend == "torch" else reference_numpy
    rng = np.random.default_rng(args.seed)
    for name, b, hq, hkv, lq, lk, dqk, dv, scale, causal, window in CASES:
        d = os.path.join(args.out_dir, name)
        os.makedirs(d, exist_ok=True)
        q = rng.standard_normal((b, hq, lq, dqk)).astype(np.float32)
        k = rng.standard_normal((b, hkv, lk, dqk)).astype(np.float32)
        v = rng.standard_normal((b, hkv, lk, dv)).astype(np.float32)
        dout = rng.standard_normal((b, hq, lq, dv)).astype(np.float32)
        used_scale = scale if scale is not None else 1.0 / math.sqrt(dqk)
        out, lse, dq, dk, dvg = reference(q, k, v, dout, used_scale, causal, window)
        for fname, arr in (("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse),
                           ("dout", dout), ("dq", dq), ("dk", dk), ("dv", dvg)):
            np.save(os.path.join(d, fname + ".npy"), arr)
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump({"scale": scale, "causal": causal, "window": window}, f)
        print(f"{d}: {backend} reference, {causal}, q {q.shape} k {k.shape} v {v.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
