#!/usr/bin/env python3
"""The recipe of `deno task train` in PyTorch, for scoring both with `deno task eval`.

Same model (scripts/pytorch_dit.py: facebookresearch/DiT models.py, learn_sigma=False, DiT's
initialisation), same defaults as the trainer's GPU defaults (src/train/options.ts GPU_DEFAULTS):
  x1 = images in [-1, 1], x0 ~ N(0, 1), t ~ U(0, 1), labels replaced by the null class K with
  probability 0.1; xt = (1 - t) x0 + t x1; loss = mean((model(xt, t, y) - (x1 - x0))^2);
  AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0) with linear warmup over 1,000 steps
  (then constant, or cosine to --min-lr), clip_grad_norm_(1.0), EMA with decay
  min(0.9999, (1 + step) / (10 + step)) over every parameter; fp32 (TF32 off) or --bf16 autocast
  around forward and loss.
Writes a flowgpu run directory: OUT/checkpoints/final.safetensors holds the weights under DiT's
names, the EMA weights as "ema.<name>", and the model config under metadata "config" (the format
src/io/checkpoint.ts reads), so `deno task eval --checkpoint OUT` and `deno task generate
--checkpoint OUT` load it; OUT/metrics.jsonl has the loss every --log-every steps.

  python3 scripts/pytorch_train.py --preset S --steps 3000 --out runs/pytorch-S   # GPU machine
  python3 scripts/pytorch_train.py --preset S --steps 3000 --bf16 --out runs/pytorch-S-bf16
  python3 scripts/pytorch_train.py --preset tiny --steps 5 --batch-size 8 --device cpu \\
      --out /tmp/pt-tiny                                                        # quick CPU check
Prints a last line `JSON: {...}` (steps, wall time, images/s, final loss).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit("error: scripts/pytorch_train.py needs PyTorch: pip install torch")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_dit import CONFIG_KEYS, PRESETS, build_dit, write_safetensors  # noqa: E402

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="B", choices=list(PRESETS))
    ap.add_argument("--patch-size", type=int, help="override the preset's patch size")
    ap.add_argument("--t-scale", type=float, default=1000.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--steps", "--train-steps", dest="steps", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"])
    ap.add_argument("--min-lr", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--ema-decay", type=float, default=0.9999)
    ap.add_argument("--label-dropout", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                    help="folder with train-images-idx3-ubyte(.gz) and train-labels-idx1-ubyte(.gz)")
    ap.add_argument("--out", required=True, help="run directory to write")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast around forward and loss")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off by default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap.parse_args()


def read_idx(path):
    """An IDX file of unsigned bytes (gzipped or not) as a numpy array."""
    for p in (path, path[:-3] if path.endswith(".gz") else path + ".gz"):
        if os.path.exists(p):
            with (gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")) as f:
                data = f.read()
            break
    else:
        sys.exit(f"error: {path} not found (give the Fashion-MNIST folder with --data)")
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        sys.exit(f"error: {path}: not an IDX file of unsigned bytes")
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def learning_rate(a, step):
    """src/train/options.ts learningRate: warmup, then constant or cosine to min_lr."""
    warm = min(1.0, step / a.warmup) if a.warmup > 0 else 1.0
    if a.lr_schedule != "cosine" or step <= a.warmup:
        return a.lr * warm
    prog = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    return a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * prog))


def ema_decay_at(a, step):
    """src/train/options.ts emaDecayAt."""
    return min(a.ema_decay, (1 + step) / (10 + step))


def main():
    a = parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32

    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
    n, H, W = images.shape
    if labels.shape[0] != n:
        sys.exit(f"error: {n} images but {labels.shape[0]} labels")
    x_all = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).reshape(n, 1, H, W).to(dev)
    y_all = torch.from_numpy(labels.astype(np.int64)).to(dev)
    K = int(y_all.max().item()) + 1

    cfg = dict(image_size=H, in_channels=1, num_classes=K, t_scale=a.t_scale, **PRESETS[a.preset])
    if a.patch_size:
        cfg["patch_size"] = a.patch_size
    model = build_dit(cfg).to(dev)
    # Label dropout is done here (as flowgpu's FlowPath does), not again inside the embedder; its
    # table keeps the null row K (sized when it was built with dropout 0.1).
    model.y_embedder.dropout_prob = 0.0
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    kw = dict(lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=a.weight_decay)
    try:
        opt = torch.optim.AdamW(params, fused=dev.type == "cuda", **kw)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, **kw)
    ema = [p.detach().clone() for p in model.parameters()]
    live = list(model.parameters())
    fwd = torch.compile(model) if a.compile else model
    n_params = sum(p.numel() for p in params)
    print(f"PyTorch {torch.__version__} on {dev}"
          f"{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''}; "
          f"DiT {a.preset} {cfg}, {n_params / 1e6:.2f}M parameters; {n} images, batch "
          f"{a.batch_size}, {a.steps} steps, {'bf16 autocast' if a.bf16 else 'fp32'}")

    os.makedirs(os.path.join(a.out, "checkpoints"), exist_ok=True)
    metrics = open(os.path.join(a.out, "metrics.jsonl"), "w")
    g = torch.Generator(device=dev)
    g.manual_seed(a.seed)
    perm, pos = torch.randperm(n, device=dev, generator=g), 0
    B = a.batch_size
    smooth, last_loss = None, float("nan")
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        if pos + B > n:
            perm, pos = torch.randperm(n, device=dev, generator=g), 0
        idx = perm[pos:pos + B]
        pos += B
        x1, y = x_all[idx], y_all[idx]
        x0 = torch.randn(x1.shape, device=dev, generator=g)
        t = torch.rand(B, device=dev, generator=g)
        drop = torch.rand(B, device=dev, generator=g) < a.label_dropout
        y = torch.where(drop, torch.full_like(y, K), y)
        tb = t.view(B, 1, 1, 1)
        xt = (1 - tb) * x0 + tb * x1
        target = x1 - x0
        for group in opt.param_groups:
            group["lr"] = learning_rate(a, step)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            pred = fwd(xt, t, y)
            loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = (torch.nn.utils.clip_grad_norm_(params, a.grad_clip) if a.grad_clip > 0
                 else torch.zeros((), device=dev))
        opt.step()
        with torch.no_grad():
            d = ema_decay_at(a, step)
            torch._foreach_mul_(ema, d)
            torch._foreach_add_(ema, live, alpha=1 - d)
        if step % a.log_every == 0 or step == a.steps:
            last_loss = loss.item()  # the one sync per log interval
            smooth = last_loss if smooth is None else 0.9 * smooth + 0.1 * last_loss
            el = time.perf_counter() - t0
            ips = step * B / el
            eta = (a.steps - step) * B / ips
            print(f"step {step}/{a.steps}  loss {smooth:.4f}  grad {gnorm.item():.3f}  "
                  f"lr {learning_rate(a, step):.2e}  {ips:.1f} img/s  ETA {eta / 60:.1f} min",
                  flush=True)
            metrics.write(json.dumps(dict(step=step, loss=last_loss, loss_smooth=smooth,
                                          grad_norm=gnorm.item(), lr=learning_rate(a, step),
                                          images_per_s=ips, elapsed_s=el)) + "\n")
            metrics.flush()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    metrics.close()

    names = list(model.state_dict().keys())
    state = model.state_dict()
    tensors = [(name, state[name].detach().float().cpu().numpy()) for name in names]
    pnames = [name for name, _ in model.named_parameters()]
    if set(pnames) != set(names):
        sys.exit("error: state_dict and parameters differ (buffers?)")
    tensors += [("ema." + name, e.float().cpu().numpy()) for name, e in zip(pnames, ema)]
    meta = {
        "config": json.dumps({k: cfg[k] for k in CONFIG_KEYS}, separators=(",", ":")),
        "pytorch.train": json.dumps(dict(vars(a), torch=torch.__version__, wall_s=wall)),
    }
    path = os.path.join(a.out, "checkpoints", "final.safetensors")
    tmp = path + ".tmp"
    write_safetensors(tmp, tensors, meta)
    os.replace(tmp, path)  # atomic: never a partial final.safetensors
    summary = dict(steps=a.steps, wall_s=round(wall, 2), images_per_s=round(a.steps * B / wall, 1),
                   final_loss=last_loss, loss_smooth=smooth, precision="bf16" if a.bf16 else "fp32",
                   checkpoint=path)
    print(f"done: {a.steps} steps in {wall / 60:.2f} min; {path}")
    print(f"eval: deno task eval --checkpoint {a.out}")
    print("JSON: " + json.dumps(summary))


if __name__ == "__main__":
    main()
