#!/usr/bin/env python3
"""Time PyTorch's CPU attention (torch.nn.functional.scaled_dot_product_attention, float32) on
the grid attention-bench sweeps, with attention-bench's conventions, so the two can be put side
by side from one machine and one session:

    python3 Benchmarks/compare/pytorch_sdpa.py --seq-lens 1024 2048 4096 8192 --head-dims 64
    swift run -c release attention-bench --seq-lens 1024,2048,4096,8192 --head-dims 64 --impl flash

Decode (one query token against a long K/V cache, grouped-query heads):

    python3 Benchmarks/compare/pytorch_sdpa.py --scenario decode --threads 2
    python3 Benchmarks/compare/pytorch_sdpa.py --seq-lens 1 --kv-lens 1024 4096 16384 32768 \\
        --heads 32 --kv-heads 8 --head-dims 128 --causal none --threads 2

Shapes: Q [B, Hq, Lq, D], K and V [B, Hkv, Lk, D]; Lk = Lq unless --kv-lens is given, Hkv = Hq
unless --kv-heads is given (combinations with Hq % Hkv != 0 are left out), and Hq != Hkv runs
with enable_gqa=True (PyTorch 2.15 sends that to its CPU flash kernel too, without repeating
K/V). --scenario decode is Lq = 1, Lk in {1024, 4096, 16384, 32768, 131072}, (Hq, Hkv) in
{(32, 8), (32, 32), (8, 1)}, B in {1, 8}, D in {64, 128}, non-causal; any list option given
explicitly replaces the scenario's (--heads/--kv-heads then form a grid, not pairs). Cases whose
K + V exceed --max-kv-bytes (default 6 GiB) are listed as skipped.

FLOPs = 2·(Dqk + Dv)·B·Hq·(visible query–key pairs) for the forward and 2.5× that for the
backward (autograd of sum(out · dout)). Causal is bottom-right: is_causal=True when Lq = Lk
(where PyTorch's top-left is the same), else an additive 0/−inf tril mask built once outside
the timing (the masked flash kernel). K+V GB/s = B·Hkv·Lk·(Dqk + Dv)·4 bytes / median time:
the bytes of K and V the pass has to read at least once (small caches stay in L2/L3 across
repeats, as they do in attention-bench). Times are medians after --warmup untimed runs over at
least --repeats timed runs, repeating until --min-time seconds were timed (as attention-bench
does), with torch.set_num_threads(--threads). Output is an aligned table, or CSV with --csv.
Needs torch (any recent CPU build) and nothing else.
"""
import argparse
import statistics
import time

SCENARIOS = {
    "decode": dict(seq_lens=[1], kv_lens=[1024, 4096, 16384, 32768, 131072],
                   head_pairs=[(32, 8), (32, 32), (8, 1)], batch=[1, 8], head_dims=[64, 128],
                   causal="none"),
}
DEFAULTS = dict(seq_lens=[256, 512, 1024, 2048, 4096, 8192], kv_lens=None, heads=[8], kv_heads=None,
                batch=[1], head_dims=[64, 128], causal="both")


def visible_pairs(lq, lk, causal):
    """Query–key pairs a bottom-right causal mask (j <= i + Lk - Lq) leaves visible."""
    if not causal:
        return lq * lk
    return sum(min(lk, max(0, i + lk - lq + 1)) for i in range(lq))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default=None,
                    help="a preset grid (see above); explicit list options override its lists")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=None, help="query lengths Lq")
    ap.add_argument("--kv-lens", type=int, nargs="+", default=None, help="key lengths Lk (default: Lk = Lq)")
    ap.add_argument("--head-dims", type=int, nargs="+", default=None)
    ap.add_argument("--heads", type=int, nargs="+", default=None, help="query heads Hq (default 8)")
    ap.add_argument("--kv-heads", type=int, nargs="+", default=None, help="key/value heads Hkv (default: Hq)")
    ap.add_argument("--batch", type=int, nargs="+", default=None)
    ap.add_argument("--causal", choices=["none", "causal", "both"], default=None)
    ap.add_argument("--pass", dest="passes", choices=["forward", "backward", "both"], default="forward")
    ap.add_argument("--threads", type=int, default=None, help="default: torch's own choice")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before each case")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case, at least")
    ap.add_argument("--min-time", type=float, default=0.25,
                    help="keep repeating a case until this many seconds were timed")
    ap.add_argument("--max-kv-bytes", type=int, default=6 << 30,
                    help="skip cases whose K + V exceed this many bytes (default 6 GiB)")
    ap.add_argument("--csv", action="store_true", help="CSV instead of the aligned table")
    args = ap.parse_args()

    preset = SCENARIOS.get(args.scenario, {})

    def pick(name):
        value = getattr(args, name)
        if value is not None:
            return value
        return preset.get(name, DEFAULTS[name])

    seq_lens, kv_lens, head_dims = pick("seq_lens"), pick("kv_lens"), pick("head_dims")
    batches, causal_choice = pick("batch"), pick("causal")
    if args.heads is None and args.kv_heads is None and "head_pairs" in preset:
        head_pairs = preset["head_pairs"]
    else:
        head_pairs = [(h, hkv) for h in (args.heads or DEFAULTS["heads"])
                      for hkv in (args.kv_heads or [h]) if hkv > 0 and h % hkv == 0]
    if not head_pairs:
        ap.error("no (--heads, --kv-heads) combination with Hq % Hkv == 0")
    if args.warmup < 0 or args.repeats < 1 or args.min_time < 0:
        ap.error("--warmup >= 0, --repeats >= 1 and --min-time >= 0")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    F = torch.nn.functional
    causals = {"none": [False], "causal": [True], "both": [False, True]}[causal_choice]
    passes = {"forward": ["forward"], "backward": ["backward"], "both": ["forward", "backward"]}[args.passes]

    columns = ["impl", "pass", "batch", "q_heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal",
               "threads", "median_ms", "min_ms", "max_ms", "samples", "gflops", "kv_gbps", "skipped"]
    widths = [10, 4, 2, 7, 6, 7, 3, 12, 2, 10, 21, 7, 8, 9]
    header = ["impl", "pass", "B", "Hq/Hkv", "Lq", "Lk", "D", "causal", "T", "median ms",
              "min–max ms", "samples", "GFLOP/s", "K+V GB/s"]

    print(f"# torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{threads} threads")
    if args.csv:
        print(",".join(columns), flush=True)
    else:
        print("# forward FLOPs = 2·(Dqk + Dv)·B·Hq·(visible query–key pairs), backward 2.5× that; "
              "K+V GB/s = B·Hkv·Lk·(Dqk + Dv)·4 bytes / median")
        print("  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))),
              flush=True)

    def emit(pas, b, hq, hkv, lq, lk, d, causal, times=None, flops=0.0, kv_bytes=0, skipped=""):
        causal_name = "bottom-right" if causal else "none"
        if times:
            median = statistics.median(times)
            lo, hi = min(times), max(times)
            stats = [f"{median * 1e3:.4f}", f"{lo * 1e3:.4f}", f"{hi * 1e3:.4f}", str(len(times)),
                     f"{flops / median / 1e9:.1f}", f"{kv_bytes / median / 1e9:.1f}"]
        else:
            stats = [""] * 6
        if args.csv:
            print(",".join(["torch-sdpa", pas, str(b), str(hq), str(hkv), str(lq), str(lk), str(d),
                            causal_name, str(threads)] + stats + [skipped]), flush=True)
            return
        cells = ["torch-sdpa", "fwd" if pas == "forward" else "bwd", str(b), f"{hq}/{hkv}", str(lq), str(lk),
                 str(d), causal_name, str(threads)]
        if times:
            cells += [stats[0], f"{stats[1]}–{stats[2]}", stats[3], stats[4], stats[5]]
        else:
            cells += ["skipped: " + skipped]
        line = "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        print(line.rstrip(), flush=True)

    for b in batches:
        for hq, hkv in head_pairs:
            for d in head_dims:
                for causal in causals:
                    for pas in passes:
                        for lq in seq_lens:
                            for lk in (kv_lens or [lq]):
                                kv_bytes = 2 * b * hkv * lk * d * 4
                                if kv_bytes > args.max_kv_bytes:
                                    emit(pas, b, hq, hkv, lq, lk, d, causal,
                                         skipped=f"K+V {kv_bytes / 2**30:.1f} GiB > --max-kv-bytes "
                                                 f"{args.max_kv_bytes / 2**30:.1f} GiB")
                                    continue
                                grad = pas == "backward"
                                q = torch.randn(b, hq, lq, d, requires_grad=grad)
                                k = torch.randn(b, hkv, lk, d, requires_grad=grad)
                                v = torch.randn(b, hkv, lk, d, requires_grad=grad)
                                dout = torch.randn(b, hq, lq, d) if grad else None
                                kwargs = {"enable_gqa": True} if hq != hkv else {}
                                if causal and lq == lk:
                                    kwargs["is_causal"] = True
                                elif causal:
                                    keep = torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
                                    kwargs["attn_mask"] = torch.zeros(lq, lk).masked_fill(~keep, float("-inf"))

                                def run():
                                    out = F.scaled_dot_product_attention(q, k, v, **kwargs)
                                    if grad:
                                        q.grad = k.grad = v.grad = None
                                        out.backward(dout)

                                for _ in range(args.warmup):
                                    run()
                                times = []
                                spent = 0.0
                                while len(times) < args.repeats or spent < args.min_time:
                                    t0 = time.perf_counter()
                                    run()
                                    t = time.perf_counter() - t0
                                    times.append(t)
                                    spent += t
                                flops = (4 * d * b * hq * visible_pairs(lq, lk, causal)
                                         * (2.5 if grad else 1))
                                emit(pas, b, hq, hkv, lq, lk, d, causal, times, flops, kv_bytes)
                                del q, k, v, dout, kwargs


if __name__ == "__main__":
    main()
