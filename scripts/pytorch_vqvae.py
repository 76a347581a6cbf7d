#!/usr/bin/env python3
"""The VQ-VAE of src/vqvae in PyTorch (fp32, cuDNN): same modules, parameter names, initial
scheme, losses and training step, for the speed comparison with `deno task train-vqvae --bench`
and to load flowgpu checkpoints.

  # timing (the GPU machine): the same shapes as the Deno bench, in one call
  deno task train-vqvae --bench --image-size 32 --in-channels 3 --batch-size 128
  python3 scripts/pytorch_vqvae.py --bench --image-size 32 --in-channels 3 --batch-size 128

  # quick CPU check
  python3 scripts/pytorch_vqvae.py --bench --device cpu --channels 16 --groups 4 --batch-size 4 \
      --iters 2 --repeats 1

  # parity: load a flowgpu checkpoint (strict) and reconstruct raw float32 NCHW images
  python3 scripts/pytorch_vqvae.py --parity CKPT --input x.f32 --count N --output recon.f32

The step (as src/vqvae/trainer.ts): recon = model(x); loss = MSE(recon, x) + beta*MSE(z_e, sg(z_q))
with the straight-through estimator; backward; clip_grad_norm_(grad_clip); AdamW (fused on CUDA
when available); then the codebook's EMA update with Laplace smoothing and dead-code restarts.
TF32 is off (fp32 matmuls and convolutions), cudnn.benchmark on. Prints one final line
`JSON: {...}`.
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--in-channels", type=int, default=3)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--res-blocks", type=int, default=2)
    ap.add_argument("--groups", type=int, default=32)
    ap.add_argument("--act", default="silu", choices=["silu", "relu"])
    ap.add_argument("--codebook-size", type=int, default=512)
    ap.add_argument("--code-dim", type=int, default=4)
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--ema-decay", type=float, default=0.99)
    ap.add_argument("--dead-after", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bench", action="store_true", help="time the training step")
    ap.add_argument("--iters", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=5, help="measurements (median reported)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    ap.add_argument("--parity", metavar="CKPT", help="load a flowgpu VQ-VAE checkpoint")
    ap.add_argument("--input", help="--parity: raw little-endian float32 NCHW images")
    ap.add_argument("--count", type=int, help="--parity: number of images in --input")
    ap.add_argument("--output", help="--parity: write the reconstructions (raw float32 NCHW)")
    ap.add_argument("--codes-output", help="--parity: write the codes (raw int32, NHWC order)")
    return ap.parse_args()


class ResBlock(nn.Module):
    def __init__(self, c, groups, act):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c, eps=1e-6)
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, c, eps=1e-6)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.act = act

    def forward(self, x):
        h = self.conv1(self.act(self.norm1(x)))
        return x + self.conv2(self.act(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, a, act):
        super().__init__()
        c, h = a.channels, a.channels // 2
        self.down = nn.ModuleList([nn.Conv2d(a.in_channels, h, 4, 2, 1), nn.Conv2d(h, c, 4, 2, 1)])
        self.conv_mid = nn.Conv2d(c, c, 3, 1, 1)
        self.res = nn.ModuleList([ResBlock(c, a.groups, act) for _ in range(a.res_blocks)])
        self.norm_out = nn.GroupNorm(a.groups, c, eps=1e-6)
        self.conv_out = nn.Conv2d(c, a.code_dim, 1)
        self.act = act

    def forward(self, x):
        x = self.act(self.down[0](x))
        x = self.act(self.down[1](x))
        x = self.conv_mid(x)
        for r in self.res:
            x = r(x)
        return self.conv_out(self.act(self.norm_out(x)))


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, a, act):
        super().__init__()
        c, h = a.channels, a.channels // 2
        self.conv_in = nn.Conv2d(a.code_dim, c, 3, 1, 1)
        self.res = nn.ModuleList([ResBlock(c, a.groups, act) for _ in range(a.res_blocks)])
        self.norm_out = nn.GroupNorm(a.groups, c, eps=1e-6)
        self.up = nn.ModuleList([Up(c, h), Up(h, a.in_channels)])
        self.act = act

    def forward(self, z):
        x = self.conv_in(z)
        for r in self.res:
            x = r(x)
        x = self.act(self.norm_out(x))
        return self.up[1](self.act(self.up[0](x)))


class Quantizer(nn.Module):
    """Nearest code (ties to the lowest index), EMA codebook with Laplace smoothing and restarts."""

    def __init__(self, a):
        super().__init__()
        K, D = a.codebook_size, a.code_dim
        self.embedding = nn.Embedding(K, D)
        self.embedding.weight.requires_grad_(False)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1 / K, 1 / K)
        self.register_buffer("cluster_size", torch.ones(K))
        self.register_buffer("embed_avg", self.embedding.weight.detach().clone())
        self.register_buffer("unused", torch.zeros(K))
        self.decay, self.dead_after, self.eps = a.ema_decay, a.dead_after, 1e-5

    def forward(self, ze):
        B, D, h, w = ze.shape
        z = ze.permute(0, 2, 3, 1).reshape(-1, D)  # rows in NHWC order, as flowgpu
        E = self.embedding.weight
        dist = (E * E).sum(1)[None, :] - 2 * z @ E.t()
        idx = dist.argmin(1)
        zq = E[idx].view(B, h, w, D).permute(0, 3, 1, 2)
        return zq, idx, z

    @torch.no_grad()
    def update(self, z, idx, rand):
        K = self.cluster_size.numel()
        onehot = F.one_hot(idx, K).type(z.dtype)
        count = onehot.sum(0)
        self.cluster_size.mul_(self.decay).add_(count, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ z, alpha=1 - self.decay)
        used = count > 0
        self.unused.add_(1).masked_fill_(used, 0)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + K * self.eps) * total
        self.embedding.weight.copy_(self.embed_avg / smoothed[:, None])
        if self.dead_after > 0:
            dead = self.unused >= self.dead_after
            if dead.any():
                rows = z[rand[dead]]
                self.embedding.weight[dead] = rows
                self.embed_avg[dead] = rows
                self.cluster_size[dead] = 1
                self.unused[dead] = 0
        p = count / idx.numel()
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-30))).sum())
        return perplexity, used.sum()


class VQVAE(nn.Module):
    def __init__(self, a):
        super().__init__()
        act = nn.SiLU() if a.act == "silu" else nn.ReLU()
        self.encoder = Encoder(a, act)
        self.quantizer = Quantizer(a)
        self.decoder = Decoder(a, act)

    def forward(self, x):
        ze = self.encoder(x)
        zq, idx, z = self.quantizer(ze)
        zq_st = ze + (zq - ze).detach()
        return self.decoder(zq_st), ze, zq, idx, z


def read_safetensors(path):
    """A minimal safetensors reader (F32 only): {name: tensor}, metadata."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {t['dtype']}, only F32 is read here")
        b, e = t["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=torch.float32).reshape(
            t["shape"])
    return out, meta


def parity(a):
    tensors, meta = read_safetensors(a.parity)
    cfg = json.loads(meta["vqvae_config"])
    for k, v in cfg.items():
        setattr(a, k, v)
    model = VQVAE(a)
    state = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    n, C, H = a.count, cfg["in_channels"], cfg["image_size"]
    x = torch.frombuffer(bytearray(open(a.input, "rb").read()), dtype=torch.float32)
    x = x.reshape(n, C, H, H)
    with torch.no_grad():
        recon, _, _, idx, _ = model(x)
    open(a.output, "wb").write(recon.contiguous().numpy().astype("<f4").tobytes())
    if a.codes_output:
        open(a.codes_output, "wb").write(idx.to(torch.int32).numpy().astype("<i4").tobytes())
    print(f"JSON: {json.dumps({'images': n, 'parameters': sum(p.numel() for p in model.parameters() if p.requires_grad)})}")


def bench(a):
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    model = VQVAE(a).to(dev)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    params = [p for p in model.parameters() if p.requires_grad]
    kw = {"fused": True} if dev.type == "cuda" and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kw)
    B, C, H = a.batch_size, a.in_channels, a.image_size
    n = 8
    batches = [(torch.rand(B, C, H, H, device=dev) * 2 - 1).contiguous(memory_format=fmt)
               for _ in range(n)]
    rows = B * (H // 4) ** 2
    rands = [torch.randint(0, rows, (a.codebook_size,), device=dev) for _ in range(n)]
    K = a.codebook_size

    def step(i):
        x = batches[i % n]
        recon, ze, zq, idx, z = model(x)
        recon_loss = F.mse_loss(recon, x)
        commit = F.mse_loss(ze, zq.detach())
        loss = recon_loss + a.beta * commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        model.quantizer.update(z.detach(), idx, rands[i % n])
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for i in range(a.warmup):
        step(i)
    sync()
    ms = []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        for i in range(a.iters):
            loss = step(i)
        sync()
        ms.append((time.perf_counter() - t0) * 1e3 / a.iters)
    med = sorted(ms)[len(ms) // 2]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step(0)
        sync()
        mem = torch.cuda.max_memory_allocated()
    else:
        mem = None
    result = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "image_size": H,
        "in_channels": C,
        "channels": a.channels,
        "res_blocks": a.res_blocks,
        "codebook_size": K,
        "code_dim": a.code_dim,
        "batch_size": B,
        "channels_last": a.channels_last,
        "parameters": sum(p.numel() for p in params),
        "step_ms": med,
        "images_per_s": B / (med / 1e3),
        "peak_memory_bytes": mem,
        "final_loss": float(loss),
    }
    print(f"PyTorch VQ-VAE training step (fp32, TF32 off, cuDNN): {med:.2f} ms "
          f"(median of {a.repeats}x{a.iters}), {B / (med / 1e3):.0f} images/s")
    print(f"JSON: {json.dumps(result)}")


def main():
    a = parse_args()
    if a.parity:
        if not (a.input and a.count and a.output):
            raise SystemExit("--parity needs --input, --count and --output")
        return parity(a)
    if a.bench:
        return bench(a)
    raise SystemExit("give --bench or --parity (see --help)")


if __name__ == "__main__":
    sys.exit(main())
