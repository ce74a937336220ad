#!/usr/bin/env python3
"""Write attention-parity cases whose peer is one chosen PyTorch SDPA backend, to see which of
PyTorch's CPU kernels an accuracy ratio is measured against.

    python3 Benchmarks/parity/torch_backend_cases.py OUT_DIR --backend flash --seeds 8
    swift run -c release attention-parity OUT_DIR/* --impl flash --json

make_cases.py passes every case's modifiers as an attn_mask, and with one PyTorch's CPU SDPA runs
its math path (the softmax materialised and kept for the backward). Forced to its flash kernel
(torch.nn.attention.sdpa_kernel; it needs Dv = Dqk), the same inputs show how a FlashAttention
backward, which recomputes P from a float32 log-sum-exp, compares. Each seed gets a directory
OUT_DIR/<backend><seed> with q, k, v, dout, the float64 reference (make_cases.reference_torch:
out, lse, dq, dk, dv) and the backend's float32 results as the peer tensors.
"""
import argparse
import importlib.util
import json
import os

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("make_cases", os.path.join(HERE, "make_cases.py"))
make_cases = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_cases)

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "math": SDPBackend.MATH}


def run_backend(backend, q, k, v, dout, scale, bias):
    """float32 SDPA on one backend with the bias as its attn_mask; rows that see no key get 0."""
    tq, tk, tv = (torch.from_numpy(x).requires_grad_() for x in (q, k, v))
    tb = torch.from_numpy(bias).float()
    seen = torch.isfinite(tb).any(dim=-1)
    safe = torch.where(seen[..., None], tb, torch.zeros_like(tb))
    with sdpa_kernel([BACKENDS[backend]]):
        out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=safe, scale=scale)
    out = torch.where(seen[..., None], out, torch.zeros_like(out))
    (out * torch.from_numpy(dout)).sum().backward()
    return out.detach().numpy(), tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--backend", choices=sorted(BACKENDS), default="flash")
    ap.add_argument("--shape", type=int, nargs=5, default=[1, 2, 100, 17, 16], metavar=("B", "H", "LQ", "LK", "D"),
                    help="batch, heads, query and key lengths, head dim (default: make_cases.py's "
                         "lq_gt_lk_bottom_right with Dv = Dqk)")
    ap.add_argument("--causal", choices=["none", "bottom_right", "top_left"], default="bottom_right")
    ap.add_argument("--seeds", type=int, default=8)
    args = ap.parse_args()
    b, h, lq, lk, d = args.shape
    scale = 1.0 / np.sqrt(d)
    for seed in range(args.seeds):
        rng = np.random.default_rng(100 + seed)
        q, k, v, dout = (rng.standard_normal(s).astype(np.float32)
                         for s in ((b, h, lq, d), (b, h, lk, d), (b, h, lk, d), (b, h, lq, d)))
        bias = make_cases.modifiers(b, h, lq, lk, args.causal, None)
        out, lse, dq, dk, dv = make_cases.reference_torch(q, k, v, dout, scale, bias)
        po, pq, pk, pv = run_backend(args.backend, q, k, v, dout, scale, bias)
        case = os.path.join(args.out_dir, f"{args.backend}{seed}")
        os.makedirs(case, exist_ok=True)
        arrays = dict(q=q, k=k, v=v, dout=dout, out=out, lse=lse, dq=dq, dk=dk, dv=dv,
                      peer_out=po, peer_dq=pq, peer_dk=pk, peer_dv=pv)
        for name, a in arrays.items():
            np.save(os.path.join(case, name + ".npy"), a)
        with open(os.path.join(case, "case.json"), "w") as f:
            json.dump({"scale": None, "causal": args.causal, "window": None,
                       "peer": f"pytorch {torch.__version__} float32, {args.backend} backend"}, f)
        print(case)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
