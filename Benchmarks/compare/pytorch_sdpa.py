#!/usr/bin/env python3
"""Time PyTorch's CPU attention (torch.nn.functional.scaled_dot_product_attention, float32) on
the grid attention-bench sweeps, with attention-bench's conventions, so the two can be put side
by side from one machine and one session:

    python3 Benchmarks/compare/pytorch_sdpa.py --seq-lens 1024 2048 4096 8192 --head-dims 64
    swift run -c release attention-bench --seq-lens 1024,2048,4096,8192 --head-dims 64 --impl flash

FLOPs = 2·(Dqk + Dv)·B·Hq·(visible query–key pairs) for the forward and 2.5× that for the
backward (autograd of sum(out · dout)); causal is PyTorch's is_causal (top-left, equal to
bottom-right when Lq = Lk). Times are medians over --repeats runs after one warm-up, with
torch.set_num_threads(--threads). Needs torch (any recent CPU build) and nothing else.
"""
import argparse
import statistics
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    ap.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--causal", choices=["none", "causal", "both"], default="both")
    ap.add_argument("--pass", dest="passes", choices=["forward", "backward", "both"], default="forward")
    ap.add_argument("--threads", type=int, default=None, help="default: torch's own choice")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    print("impl,pass,batch,q_heads,seq_len,head_dim,causal,threads,median_ms,gflops")
    causals = {"none": [False], "causal": [True], "both": [False, True]}[args.causal]
    passes = {"forward": ["forward"], "backward": ["backward"], "both": ["forward", "backward"]}[args.passes]
    for d in args.head_dims:
        for causal in causals:
            for pas in passes:
                for n in args.seq_lens:
                    shape = (args.batch, args.heads, n, d)
                    q, k, v = (torch.randn(shape, requires_grad=pas == "backward") for _ in range(3))
                    dout = torch.randn(shape)

                    def run():
                        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        if pas == "backward":
                            q.grad = k.grad = v.grad = None
                            out.backward(dout)

                    run()
                    times = []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        run()
                        times.append(time.perf_counter() - t0)
                    median = statistics.median(times)
                    pairs = n * (n + 1) // 2 if causal else n * n
                    flops = 4 * d * args.batch * args.heads * pairs * (2.5 if pas == "backward" else 1)
                    print(f"torch-sdpa,{pas},{args.batch},{args.heads},{n},{d},"
                          f"{'bottom-right' if causal else 'none'},{torch.get_num_threads()},"
                          f"{median * 1e3:.3f},{flops / median / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
