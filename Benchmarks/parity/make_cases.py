#!/usr/bin/env python3
"""Write attention-parity case directories from PyTorch (or, without it, from NumPy in float64).

    python3 Benchmarks/parity/make_cases.py OUT_DIR            # a standard set of cases
    python3 Benchmarks/parity/make_cases.py OUT_DIR --backend numpy
    swift run -c release attention-parity OUT_DIR/*

Each case directory gets q.npy, k.npy, v.npy and dout.npy (float32 [B, H, L, D]; packed [T, H, D];
with --dtype float16 or bfloat16, <f2 or bf16 bit patterns as <u2 named in case.json's "bfloat16"),
out.npy, lse.npy, the gradients dq.npy, dk.npy, dv.npy, and case.json with the
keys the README documents (scale, causal, window, softcap, alibi_slopes, query_lengths,
key_lengths, cu_seqlens_q/k, mask, block_mask) and the files they name. Every modifier becomes
one float64 bias added to the (soft-capped) scaled scores — ALiBi, masks, and -inf outside the
causal band, window, lengths and kept blocks. With PyTorch, out comes from
torch.nn.functional.scaled_dot_product_attention in float64 with that bias as its attn_mask
(soft-capping, which SDPA lacks, is written out with torch.tanh and torch.softmax), lse from
torch.logsumexp of the biased scores, and the gradients from autograd of sum(out * dout).
Packed cases compute each sequence alone and lay them back to back. Rows that see no key get
out = 0, lse = -inf and no gradient, the library's convention.

With --peer torch (the default when PyTorch is installed) or --peer numpy, each case also gets
peer_out.npy, peer_lse.npy, peer_dq.npy, peer_dk.npy and peer_dv.npy: the same computation in
float32 by PyTorch (SDPA and autograd) or by NumPy, and case.json's "peer" names it;
attention-parity then reports the peer's error against the float64 tensors beside ours.

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


def modifiers(b, hq, lq, lk, causal, window, alibi=None, query_lengths=None, key_lengths=None,
              mask=None, blocks=None):
    """What the library adds to the scaled (soft-capped) scores, as float64 [B, Hq, Lq, Lk]:
    ALiBi's -slope·|i + Lk_b − Lq_b − j|, an additive mask (a boolean one as 0 / -inf), and
    -inf outside the causal band, the window, the valid lengths and the kept blocks."""
    bias = np.zeros((b, hq, lq, lk))
    for e in range(b):
        ql = lq if query_lengths is None else query_lengths[e]
        kl = lk if key_lengths is None else key_lengths[e]
        seen = np.zeros((lq, lk), dtype=bool)
        seen[:ql, :kl] = visible_mask(ql, kl, causal, window) if ql and kl else False
        bias[e] = np.where(seen, 0.0, -np.inf)[None]
        if alibi is not None:
            i = np.arange(lq)[:, None]
            j = np.arange(lk)[None, :]
            bias[e] -= alibi[:, None, None] * np.abs(i + (kl - ql) - j)[None]
    if mask is not None:
        m = np.broadcast_to(mask, (b, hq, lq, lk))
        bias += np.where(m, 0.0, -np.inf) if m.dtype == bool else m
    if blocks is not None:
        kept, (bq, bk) = blocks
        kept = np.broadcast_to(kept, (b, hq) + kept.shape[2:])
        full = np.repeat(np.repeat(kept, bq, axis=2), bk, axis=3)[:, :, :lq, :lk]
        bias = np.where(full != 0, bias, -np.inf)
    return bias


def reference_numpy(q, k, v, dout, scale, bias, softcap=None, dtype=np.float64):
    """float64 attention with GQA: out [B,Hq,Lq,Dv], lse [B,Hq,Lq] and dq, dk, dv, for scores
    s = softcap·tanh(scale·q·k / softcap) (or scale·q·k) + bias. With dtype float32, the same
    arithmetic in float32 (the NumPy peer)."""
    q, k, v, dout = (x.astype(dtype) for x in (q, k, v, dout))
    bias = bias.astype(dtype)
    scale = dtype(scale)
    softcap = dtype(softcap) if softcap else None
    group = q.shape[1] // k.shape[1]
    kr = np.repeat(k, group, axis=1)
    vr = np.repeat(v, group, axis=1)
    s = scale * np.einsum("bhid,bhjd->bhij", q, kr)
    t = np.tanh(s / softcap) if softcap else None
    s = (softcap * t if softcap else s) + bias
    m = s.max(axis=-1, keepdims=True)
    seen = np.isfinite(m)
    m = np.where(seen, m, dtype(0))
    e = np.exp(s - m)
    total = e.sum(axis=-1, keepdims=True)
    p = e / np.where(seen, total, dtype(1))
    out = np.einsum("bhij,bhjd->bhid", p, vr)
    lse = np.where(seen[..., 0], m[..., 0] + np.log(np.where(seen[..., 0], total[..., 0], dtype(1))), -np.inf)
    # Backward: dS = P ∘ (dP − rowsum(dO ∘ O)), times 1 − tanh² under soft-capping; dK, dV
    # summed over each group's heads.
    dp = np.einsum("bhid,bhjd->bhij", dout, vr)
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    if softcap:
        ds = ds * (1.0 - t * t)
    dq = scale * np.einsum("bhij,bhjd->bhid", ds, kr)
    dk = scale * np.einsum("bhij,bhid->bhjd", ds, q)
    dv = np.einsum("bhij,bhid->bhjd", p, dout)
    b, hq = q.shape[:2]
    dk = dk.reshape(b, hq // group, group, *dk.shape[2:]).sum(axis=2)
    dv = dv.reshape(b, hq // group, group, *dv.shape[2:]).sum(axis=2)
    return out, lse, dq, dk, dv


def reference_torch(q, k, v, dout, scale, bias, softcap=None, dtype=np.float64):
    """The same in PyTorch float64 with autograd: scaled_dot_product_attention with the bias as
    its float attn_mask, or (soft-capping, which SDPA lacks) the scores written out. With dtype
    float32, PyTorch's own float32 path (the peer: its CPU SDPA kernel, its autograd)."""
    import torch

    tq, tk, tv = (torch.from_numpy(x.astype(dtype)).requires_grad_() for x in (q, k, v))
    bias = bias.astype(dtype)
    group = q.shape[1] // k.shape[1]
    kr = tk.repeat_interleave(group, dim=1)
    vr = tv.repeat_interleave(group, dim=1)
    tb = torch.from_numpy(bias)
    seen = torch.isfinite(tb).any(dim=-1)  # rows with no visible key: 0 and -inf, not NaN
    safe = torch.where(seen[..., None], tb, torch.zeros_like(tb))
    if softcap:
        s = softcap * torch.tanh(scale * tq @ kr.transpose(-1, -2) / softcap) + safe
        out = torch.softmax(s, dim=-1) @ vr
    else:
        out = torch.nn.functional.scaled_dot_product_attention(tq, kr, vr, attn_mask=safe, scale=scale)
    out = torch.where(seen[..., None], out, torch.zeros_like(out))
    (out * torch.from_numpy(dout.astype(dtype))).sum().backward()
    with torch.no_grad():
        s = scale * tq @ kr.transpose(-1, -2)
        if softcap:
            s = softcap * torch.tanh(s / softcap)
        lse = torch.logsumexp(s + tb, dim=-1)
    return (out.detach().numpy(), lse.numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy())


CASES = [
    # name, B, Hq, Hkv, Lq, Lk, Dqk, Dv, scale (None = 1/sqrt(Dqk)), causal, window, extras
    ("mha_none", 1, 4, 4, 64, 64, 32, 32, None, "none", None, {}),
    ("gqa_bottom_right", 2, 8, 2, 65, 129, 64, 64, None, "bottom_right", None, {}),
    ("mqa_top_left", 1, 8, 1, 127, 127, 40, 40, 0.2, "top_left", None, {}),
    ("decode_like", 2, 4, 4, 1, 300, 128, 128, None, "bottom_right", None, {}),
    ("lq_gt_lk_bottom_right", 1, 2, 2, 100, 17, 16, 24, None, "bottom_right", None, {}),
    ("sliding_window_causal", 1, 4, 2, 200, 200, 64, 64, None, "bottom_right", [32, 0], {}),
    ("sliding_window_two_sided", 1, 2, 2, 90, 120, 32, 32, None, "none", [8, 16], {}),
    ("softcap_alibi", 2, 4, 2, 63, 65, 32, 32, None, "bottom_right", None, {"softcap": 5.0, "alibi": True}),
    ("key_padding_bool_mask", 2, 4, 4, 17, 70, 32, 16, None, "none", None, {"mask": "key_padding"}),
    ("dense_additive_mask", 1, 2, 1, 65, 63, 16, 16, None, "top_left", None, {"mask": "additive"}),
    ("padded_lengths", 3, 4, 2, 40, 50, 24, 24, None, "bottom_right", None,
     {"query_lengths": [40, 1, 0], "key_lengths": [50, 7, 20]}),
    ("block_sparse", 1, 2, 2, 70, 100, 16, 16, None, "none", None, {"blocks": [16, 32]}),
    ("varlen_packed", 4, 4, 2, None, None, 32, 32, None, "bottom_right", None,
     {"seqlens": [(1, 1), (7, 9), (64, 64), (30, 100)]}),
    ("everything", 2, 4, 2, 65, 129, 64, 64, None, "bottom_right", [40, 0],
     {"softcap": 20.0, "alibi": True, "mask": "additive", "blocks": [32, 32]}),
    # Long causal rows (gradients summed over many tiles) and masks combined with causal.
    ("causal_long", 1, 2, 2, 1000, 1000, 64, 64, None, "bottom_right", None, {}),
    ("bool_mask_causal", 2, 4, 2, 129, 129, 64, 64, None, "top_left", None, {"mask": "key_padding"}),
    ("additive_mask_causal", 2, 2, 1, 65, 127, 32, 32, None, "bottom_right", None,
     {"mask": "additive"}),
]


def to_bf16_bits(x):
    """float32 → bfloat16 bit patterns (uint16), rounding to nearest even (NaN stays NaN)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def from_bf16_bits(h):
    return (h.astype(np.uint32) << 16).view(np.float32)


def round_inputs(files, params, dtype):
    """Stores q, k, v and dout in `dtype` (float16 as <f2; bfloat16 as its bits in <u2, named by
    case.json's "bfloat16" key) and returns the rounded values as float32 for the reference."""
    rounded = {}
    for name in ("q", "k", "v", "dout"):
        x = files[name]
        if dtype == "float16":
            files[name] = x.astype(np.float16)
            rounded[name] = files[name].astype(np.float32)
        else:
            files[name] = to_bf16_bits(x)
            rounded[name] = from_bf16_bits(files[name])
    if dtype == "bfloat16":
        params["bfloat16"] = ["q", "k", "v", "dout"]
    return rounded


def write_case(d, arrays, params):
    os.makedirs(d, exist_ok=True)
    for fname, arr in arrays.items():
        np.save(os.path.join(d, fname + ".npy"), arr)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(params, f)


def make_case(reference, rng, b, hq, hkv, lq, lk, dqk, dv, scale, causal, window, extras,
              dtype="float32", peer=None):
    """Inputs, expected tensors and case.json parameters of one padded-batch case. With a half
    dtype, q, k, v and dout are stored in it and the reference sees the rounded values."""
    q = rng.standard_normal((b, hq, lq, dqk)).astype(np.float32)
    k = rng.standard_normal((b, hkv, lk, dqk)).astype(np.float32)
    v = rng.standard_normal((b, hkv, lk, dv)).astype(np.float32)
    dout = rng.standard_normal((b, hq, lq, dv)).astype(np.float32)
    stored = {"q": q, "k": k, "v": v, "dout": dout}
    half_params = {}
    if dtype != "float32":
        r = round_inputs(stored, half_params, dtype)
        q, k, v, dout = r["q"], r["k"], r["v"], r["dout"]
    used_scale = scale if scale is not None else 1.0 / math.sqrt(dqk)
    params = {"scale": scale, "causal": causal, "window": window}
    files = {}
    alibi = mask = blocks = None
    if extras.get("softcap"):
        params["softcap"] = extras["softcap"]
    if extras.get("alibi"):
        alibi = np.array([2.0 ** (-8.0 * (h + 1) / hq) for h in range(hq)], dtype=np.float32)
        files["slopes"] = alibi
        params["alibi_slopes"] = "slopes.npy"
        alibi = alibi.astype(np.float64)
    for key in ("query_lengths", "key_lengths"):
        if key in extras:
            params[key] = extras[key]
    if extras.get("mask") == "key_padding":  # [B, 1, 1, Lk] booleans: the last keys of entry 1 off
        mask = np.ones((b, 1, 1, lk), dtype=bool)
        mask[1:, :, :, lk // 2:] = False
        files["mask"] = mask
        params["mask"] = {"file": "mask.npy", "kind": "bool"}
    elif extras.get("mask") == "additive":  # dense [B, Hq, Lq, Lk] in [-2, 2), 10 % -inf
        mask = rng.uniform(-2, 2, (b, hq, lq, lk)).astype(np.float32)
        mask[rng.uniform(size=mask.shape) < 0.1] = -np.inf
        files["mask"] = mask
        params["mask"] = {"file": "mask.npy", "kind": "additive"}
        mask = mask.astype(np.float64)
    if "blocks" in extras:  # [B, Hq, ⌈Lq/bq⌉, ⌈Lk/bk⌉] uint8, about half kept
        bq, bk = extras["blocks"]
        kept = (rng.uniform(size=(b, hq, -(-lq // bq), -(-lk // bk))) < 0.5).astype(np.uint8)
        files["blocks"] = kept
        params["block_mask"] = {"file": "blocks.npy", "block": [bq, bk]}
        blocks = (kept, (bq, bk))
    bias = modifiers(b, hq, lq, lk, causal, window, alibi, extras.get("query_lengths"),
                     extras.get("key_lengths"), mask, blocks)
    out, lse, dq, dk, dvg = reference(q, k, v, dout, used_scale, bias, extras.get("softcap"))
    files.update({"q": stored["q"], "k": stored["k"], "v": stored["v"], "out": out, "lse": lse,
                  "dout": stored["dout"], "dq": dq, "dk": dk, "dv": dvg})
    if peer is not None:  # another library's float32 results for the same inputs
        label, compute = peer
        results = compute(q, k, v, dout, used_scale, bias, extras.get("softcap"), dtype=np.float32)
        for name, x in zip(("out", "lse", "dq", "dk", "dv"), results):
            files["peer_" + name] = np.asarray(x, dtype=np.float32)
        params["peer"] = label
    params.update(half_params)
    return files, params


def make_packed_case(reference, rng, hq, hkv, dqk, dv, scale, causal, window, seqlens, peer=None):
    """Packed sequences: each (Lq_b, Lk_b) computed alone, then laid back to back in
    FlashAttention's varlen layout ([T, H, D] tensors, lse [Hq, T])."""
    parts = []
    for lq, lk in seqlens:
        files, params = make_case(reference, rng, 1, hq, hkv, lq, lk, dqk, dv, scale, causal, window, {},
                                  peer=peer)
        parts.append(files)
    files = {}
    prefixes = ("", "peer_") if peer is not None else ("",)
    for prefix in prefixes:
        for name in ("q", "k", "v", "out", "dout", "dq", "dk", "dv"):  # [1, H, L, D] → [L, H, D]
            if prefix + name in parts[0]:
                files[prefix + name] = np.concatenate([p[prefix + name][0].transpose(1, 0, 2) for p in parts], axis=0)
        files[prefix + "lse"] = np.concatenate([p[prefix + "lse"][0] for p in parts], axis=1)
    params["cu_seqlens_q"] = [int(x) for x in np.cumsum([0] + [lq for lq, _ in seqlens])]
    params["cu_seqlens_k"] = [int(x) for x in np.cumsum([0] + [lk for _, lk in seqlens])]
    return files, params


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--backend", choices=["auto", "torch", "numpy"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                    help="store q, k, v in this type (bfloat16: bit patterns as <u2, listed in "
                         "case.json's bfloat16); the reference is float64 on the rounded values, "
                         "and the library then runs in that type")
    ap.add_argument("--peer", choices=["auto", "torch", "numpy", "none"], default="auto",
                    help="also write another library's float32 results for the same inputs "
                         "(peer_out.npy, peer_lse.npy, peer_dq.npy, …; case.json \"peer\" names "
                         "it), which attention-parity reports beside ours: torch (PyTorch's float32 "
                         "SDPA and autograd), numpy (plain float32 NumPy), auto (torch if installed, "
                         "else none)")
    args = ap.parse_args()

    backend = args.backend
    if backend == "auto":
        try:
            import torch  # noqa: F401
            backend = "torch"
        except ImportError:
            backend = "numpy"
    reference = reference_torch if backend == "torch" else reference_numpy
    peer_kind = args.peer
    if peer_kind == "auto":
        peer_kind = "torch" if backend == "torch" else "none"
    peer = None
    if peer_kind == "torch":
        import torch
        peer = (f"pytorch {torch.__version__} float32", reference_torch)
    elif peer_kind == "numpy":
        peer = (f"numpy {np.__version__} float32", reference_numpy)
    rng = np.random.default_rng(args.seed)
    for name, b, hq, hkv, lq, lk, dqk, dv, scale, causal, window, extras in CASES:
        d = os.path.join(args.out_dir, name)
        if "seqlens" in extras:
            if args.dtype != "float32":
                continue  # packed cases stay float32
            files, params = make_packed_case(reference, rng, hq, hkv, dqk, dv, scale, causal, window,
                                             extras["seqlens"], peer)
        else:
            files, params = make_case(reference, rng, b, hq, hkv, lq, lk, dqk, dv, scale, causal,
                                      window, extras, args.dtype, peer)
        write_case(d, files, params)
        print(f"{d}: {backend} reference, {causal}, q {files['q'].shape} k {files['k'].shape} "
              f"{' '.join(sorted(set(params) - {'scale', 'causal', 'window'}))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
