#!/usr/bin/env python3
"""PyTorch baseline for `deno task bench`: the same DiT (scripts/pytorch_dit.py), shapes and step.

Requires Python 3 with PyTorch (pip install torch; a CUDA build for GPU figures): not needed
by flowgpu itself, only to compare with it.

  python3 scripts/pytorch_bench.py --preset S --batch-size 128            # on the GPU machine
  python3 scripts/pytorch_bench.py --preset tiny --batch-size 4 --image-size 16 --device cpu \
      --iters 2 --warmup 1                                                # quick CPU check

Measures, per mode (fp32 with TF32 off; bf16 = autocast around forward+loss; compiled-fp32 and
compiled-bf16 = the same under torch.compile, skipped if compiling fails):
  (a) one training step as flowgpu's trainer: x1 in [-1,1], x0 ~ N(0,1), t ~ U(0,1), labels with
      10% replaced by the null class K; xt = (1-t)x0 + t x1; MSE(model(xt,t,y), x1-x0); backward;
      clip_grad_norm_(1.0); AdamW(lr 1e-4, betas (0.9, 0.999), wd 0, fused on CUDA); EMA 0.9999.
      The batches are made on the device before timing. Median step time, images/s = B/median.
  (b) sampling: 50 Euler steps with CFG (one forward over [cond; null], 2B), images/s.
  (d) peak memory of a training step (max_memory_allocated after a reset; CUDA only).
and (c) matmul TFLOP/s, fp32 (TF32 off) and bf16, at N^3 and at the model's linear shapes
(forward, dX, dW; M/N/K named as in tasks/bench.ts). Prints a table and one final line `JSON: {...}`.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("error: scripts/pytorch_bench.py needs PyTorch: pip install torch")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_dit import PRESETS, build_dit  # noqa: E402

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="S", choices=list(PRESETS))
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--patch-size", type=int, help="override the preset's patch size")
    ap.add_argument("--t-scale", type=float, default=1000.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20, help="timed training steps per mode")
    ap.add_argument("--sample-runs", type=int, default=3, help="timed sampling runs per mode")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default="fp32,bf16", help="comma list of fp32,bf16,compiled-fp32,compiled-bf16")
    ap.add_argument("--sampling-steps", type=int, default=50)
    ap.add_argument("--cfg-scale", type=float, default=3.0)
    ap.add_argument("--matmul-size", type=int,
                    help="square matmul side (default 4096 on CUDA, 512 on CPU)")
    ap.add_argument("--matmul-repeats", type=int, default=5)
    ap.add_argument("--no-matmul", action="store_true")
    ap.add_argument("--json-out", help="also write the JSON to this file")
    return ap.parse_args()


class Timer:
    """Elapsed milliseconds of fn(): CUDA events on CUDA, perf_counter on CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def time_many(self, fn, n):
        """Times n separate calls; returns the list of milliseconds."""
        if self.cuda:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
            ev[0].record()
            for i in range(n):
                fn()
                ev[i + 1].record()
            torch.cuda.synchronize()
            return [ev[i].elapsed_time(ev[i + 1]) for i in range(n)]
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return out


def make_batches(cfg, B, device, n=4, p_drop=0.1):
    """A few fixed batches (x1, x0, t, y), made on the device so that no data loading is timed."""
    g = torch.Generator(device=device).manual_seed(1)
    C, H, K = cfg["in_channels"], cfg["image_size"], cfg["num_classes"]
    out = []
    for _ in range(n):
        x1 = torch.rand(B, C, H, H, device=device, generator=g) * 2 - 1
        x0 = torch.randn(B, C, H, H, device=device, generator=g)
        t = torch.rand(B, device=device, generator=g)
        y = torch.randint(0, max(K, 1), (B,), device=device, generator=g)
        if K > 0:
            y = torch.where(torch.rand(B, device=device, generator=g) < p_drop, K, y)
        out.append((x1, x0, t, y))
    return out


def autocast(device, mode):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.endswith("bf16"))


def bench_mode(mode, cfg, args, device, timer):
    torch.manual_seed(0)
    model = build_dit(cfg).to(device)
    if model.y_embedder is not None:
        model.y_embedder.dropout_prob = 0.0  # labels are dropped in make_batches (as flowgpu does)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    ema = [p.detach().clone() for p in model.parameters()]
    ema_src = [p.detach() for p in model.parameters()]
    extra = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0, **extra)
    net = torch.compile(model) if mode.startswith("compiled") else model
    batches = make_batches(cfg, args.batch_size, device)
    state = {"i": 0}

    def step():
        x1, x0, t, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        tt = t.view(-1, 1, 1, 1)
        xt = (1 - tt) * x0 + tt * x1
        with autocast(device, mode):
            v = net(xt, t, y)
            loss = F.mse_loss(v.float(), x1 - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(ema, ema_src, 1 - 0.9999)
            else:
                torch._foreach_mul_(ema, 0.9999)
                torch._foreach_add_(ema, ema_src, alpha=1 - 0.9999)

    timer.time_many(step, args.warmup)
    peak = None
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    step_ms = statistics.median(timer.time_many(step, args.iters))
    res = {"step_ms": step_ms, "images_per_s": args.batch_size / step_ms * 1e3,
           "peak_mem_bytes": peak}
    del opt, batches

    # (b) sampling: Euler from noise (t=0) to data (t=1) with batched CFG.
    model.eval()
    B, C, H, K = args.batch_size, cfg["in_channels"], cfg["image_size"], cfg["num_classes"]
    g = torch.Generator(device=device).manual_seed(2)
    noise = torch.randn(B, C, H, H, device=device, generator=g)
    y = torch.randint(0, max(K, 1), (B,), device=device, generator=g)
    y2 = torch.cat([y, torch.full_like(y, K)]) if K > 0 else y
    n, s = args.sampling_steps, args.cfg_scale

    def sample():
        x = noise.clone()
        with torch.inference_mode(), autocast(device, mode):
            for i in range(n):
                if K > 0:
                    t = torch.full((2 * B,), i / n, device=device)
                    vc, vu = net(torch.cat([x, x]), t, y2).float().chunk(2)
                    v = vu + s * (vc - vu)
                else:
                    v = net(x, torch.full((B,), i / n, device=device), y2).float()
                x = x + v / n
        return x

    try:
        timer.time_many(sample, 1)
        sample_ms = statistics.median(timer.time_many(sample, args.sample_runs))
        res.update(sample_ms=sample_ms, sample_images_per_s=B / sample_ms * 1e3)
    except Exception as e:  # noqa: BLE001 (e.g. a compiled model failing under inference_mode)
        res.update(sample_ms=None, sample_images_per_s=None, sample_error=repr(e)[:300])
    return res


def model_shapes(B, T, D, P):
    """As tasks/bench.ts modelShapes: (name, M, N, K) of forward, dX and dW of each linear."""
    M = B * T
    out = []
    for name, m, n, k in [("qkv", M, 3 * D, D), ("proj", M, D, D), ("fc1", M, 4 * D, D),
                          ("fc2", M, D, 4 * D), ("adaLN", B, 6 * D, D), ("final", M, P, D),
                          ("patch", M, D, P)]:
        out += [(f"{name} fwd", m, n, k), (f"{name} dX", m, k, n), (f"{name} dW", n, k, m)]
    return out


def bench_matmul(name, M, N, K, device, timer, repeats, dtype=torch.float32):
    """TFLOP/s of the product with the layouts autograd uses. fwd: X[M,K]·W[N,K]ᵀ;
    dX: dY[M,K']·W[K',N] (M,N,K as named); dW: dY[K,M]ᵀ·X[K,N]."""
    kind = name.split()[-1]
    r = lambda *s: torch.randn(*s, device=device, dtype=dtype)  # noqa: E731
    if kind == "dW":
        a, b = r(K, M).t(), r(K, N)
    elif kind == "fwd":
        a, b = r(M, K), r(N, K).t()
    else:
        a, b = r(M, K), r(K, N)
    reps = 1

    def run():
        for _ in range(reps):
            torch.mm(a, b)

    timer.time_many(run, 1)  # warm-up
    reps = max(1, min(200, math.ceil(2.0 / min(timer.time_many(run, 3)))))  # ~2 ms per sample
    ms = statistics.median(timer.time_many(run, repeats)) / reps
    flops = 2.0 * M * N * K
    return flops / (ms * 1e-3) / 1e12


def main():
    args = parse_args()
    device = torch.device(args.device)
    # Fairness: true fp32 matmuls (no TF32) everywhere; bf16 comes only from autocast.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    timer = Timer(device)

    cfg = dict(image_size=args.image_size, in_channels=args.channels, num_classes=args.num_classes,
               t_scale=args.t_scale, mlp_ratio=4, **PRESETS[args.preset])
    if args.patch_size:
        cfg["patch_size"] = args.patch_size
    T = (cfg["image_size"] // cfg["patch_size"]) ** 2
    dev_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"cpu ({platform.processor() or platform.machine()}, "
                     f"{torch.get_num_threads()} threads)")
    nparams = sum(p.numel() for p in build_dit(cfg).parameters() if p.requires_grad)
    print(f"device {dev_name}, torch {torch.__version__}")
    print(f"config preset {args.preset} {cfg}, tokens {T}, params {nparams / 1e6:.2f}M, "
          f"batch {args.batch_size}")

    modes = {}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("fp32", "bf16", "compiled-fp32", "compiled-bf16"):
            sys.exit(f"unknown mode {mode!r}")
        try:
            if mode.startswith("compiled") and not hasattr(torch, "compile"):
                raise RuntimeError("torch.compile is not available")
            modes[mode] = bench_mode(mode, cfg, args, device, timer)
        except Exception as e:  # noqa: BLE001 (compile failures: report and go on)
            if not mode.startswith("compiled"):
                raise
            modes[mode] = {"error": repr(e)[:300]}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        r = modes[mode]
        if "error" in r:
            print(f"  {mode:14s} skipped: {r['error']}")
            continue
        mem = f"{r['peak_mem_bytes'] / 2**20:8.1f} MiB" if r["peak_mem_bytes"] else "      n/a"
        smp = (f"{r['sample_images_per_s']:9.1f} img/s ({r['sample_ms']:.1f} ms)"
               if r["sample_ms"] else f"failed: {r.get('sample_error')}")
        print(f"  {mode:14s} train {r['step_ms']:9.2f} ms/step {r['images_per_s']:9.1f} img/s"
              f"  peak {mem}  | sample {args.sampling_steps} steps cfg {args.cfg_scale}: {smp}")

    matmul = []
    if not args.no_matmul:
        n = args.matmul_size or (4096 if device.type == "cuda" else 512)
        P = cfg["in_channels"] * cfg["patch_size"] ** 2
        shapes = [(f"{n}³", n, n, n)] + model_shapes(args.batch_size, T, cfg["hidden_size"], P)
        print(f"\nmatmul TFLOP/s (fp32 with TF32 off; bf16), median of {args.matmul_repeats}:")
        print(f"  {'product':12s} {'M':>7s} {'N':>6s} {'K':>7s} {'GFLOP':>8s} {'fp32':>8s}"
              f" {'bf16':>8s}")
        for name, M, N, K in shapes:
            tf = bench_matmul(name, M, N, K, device, timer, args.matmul_repeats)
            bf = (bench_matmul(name, M, N, K, device, timer, args.matmul_repeats, torch.bfloat16)
                  if device.type == "cuda" else float("nan"))
            matmul.append({"name": name, "M": M, "N": N, "K": K, "tflops": tf, "tflops_bf16": bf})
            print(f"  {name:12s} {M:7d} {N:6d} {K:7d} {2 * M * N * K / 1e9:8.3g} {tf:8.3g}"
                  f" {bf:8.3g}")

    first = next((r for r in modes.values() if "error" not in r), {})
    result = {
        "device": dev_name,
        "torch": torch.__version__,
        "config": dict(cfg, preset=args.preset, batch_size=args.batch_size, tokens=T,
                       params=nparams, sampling_steps=args.sampling_steps,
                       cfg_scale=args.cfg_scale, warmup=args.warmup, iters=args.iters),
        "modes": modes,
        "matmul": matmul,
        "peak_mem_bytes": first.get("peak_mem_bytes"),
    }
    line = json.dumps(result, separators=(",", ":"))
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    print("JSON: " + line)


if __name__ == "__main__":
    main()
