#!/usr/bin/env python3
"""PyTorch parity for flowgpu's DiT.

Requires Python 3 with PyTorch (pip install torch numpy; a CUDA build for GPU figures): not needed
by flowgpu itself, only to compare with it.

A copy of facebookresearch/DiT models.py (learn_sigma=False) with timm's PatchEmbed, Attention
and Mlp inlined (no timm needed), plus:
  * t_scale: the timestep embedder sees t_scale * t (flow time t in [0, 1]);
  * num_classes = 0: no y_embedder at all (c = t_emb);
  * the timestep frequency embedding is computed in t's dtype (DiT casts it to float32, which
    would break a float64 model; in float32 the result is DiT's).

Modes (needs only torch + numpy; safetensors read/written by hand):
  python3 scripts/pytorch_dit.py fixture [--out tests/fixtures/dit_parity.safetensors] [--seed N]
      float64 model of the odd config with random non-zero weights everywhere, random inputs;
      writes weights (DiT names), in.x, in.t, in.y (as f32), in.dout, out.v and grad.<name> of
      loss = sum(v * in.dout) for each trainable parameter; config metadata as checkpoint.ts.
  python3 scripts/pytorch_dit.py check CKPT [--io FILE] [--ema] [--tol 1e-4]
      loads a checkpoint written by flowgpu into DiT with strict=True ("ema."/"opt."/"vqvae."
      prefixed names filtered out; --ema loads the "ema." weights instead), runs it in float64 on
      in.x/in.t/in.y (from CKPT or --io) and compares with the stored out.v; with no stored
      inputs, runs random inputs and prints output statistics. A latent model's VQ-VAE ("vqvae."
      names, "flowgpu.latent" metadata) loads strictly into scripts/pytorch_vqvae.py's VQVAE,
      which decodes the DiT's output (un-scaled, snapped to the codebook) as a check that the
      file generates. Exit status 1 on a mismatch.
  python3 scripts/pytorch_dit.py spec [--config JSON]
      prints the state_dict names and shapes (for checking paramSpecs order).
"""
import argparse
import json
import math
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
except ImportError:
    sys.exit("error: scripts/pytorch_dit.py needs PyTorch and NumPy: pip install torch numpy")


# ----------------------------------------------------------------------------------------------
# timm layers (timm.models.vision_transformer / timm.layers), inlined
# ----------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """Image to patch embedding (timm PatchEmbed, flatten=True, no norm)."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, bias=True):
        super().__init__()
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size,
                              bias=bias)

    def forward(self, x):
        x = self.proj(x)
        x = x.flatten(2).transpose(1, 2)  # NCHW -> NLC
        return x


class Attention(nn.Module):
    """timm Attention (qk_norm=False, no dropout), non-fused path."""

    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        assert dim % num_heads == 0, 'dim should be divisible by num_heads'
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x


class Mlp(nn.Module):
    """timm Mlp (no dropout, no norm)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 drop=0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ----------------------------------------------------------------------------------------------
# DiT models.py
# ----------------------------------------------------------------------------------------------

def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """Embeds scalar timesteps into vector representations."""

    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        # DiT: dtype=torch.float32 and t.float(); here t's dtype (float64 parity).
        dtype = t.dtype if t.is_floating_point() else torch.float32
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(start=0, end=half, dtype=dtype) / half
        ).to(device=t.device)
        args = t[:, None].to(dtype) * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t):
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)
        t_emb = self.mlp(t_freq)
        return t_emb


class LabelEmbedder(nn.Module):
    """Embeds class labels; handles label dropout for classifier-free guidance."""

    def __init__(self, num_classes, hidden_size, dropout_prob):
        super().__init__()
        use_cfg_embedding = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + use_cfg_embedding, hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels, force_drop_ids=None):
        if force_drop_ids is None:
            drop_ids = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
        else:
            drop_ids = force_drop_ids == 1
        labels = torch.where(drop_ids, self.num_classes, labels)
        return labels

    def forward(self, labels, train, force_drop_ids=None):
        use_dropout = self.dropout_prob > 0
        if (train and use_dropout) or (force_drop_ids is not None):
            labels = self.token_drop(labels, force_drop_ids)
        embeddings = self.embedding_table(labels)
        return embeddings


class DiTBlock(nn.Module):
    """A DiT block with adaptive layer norm zero (adaLN-Zero) conditioning."""

    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_hidden_dim = int(hidden_size * mlp_ratio)
        approx_gelu = lambda: nn.GELU(approximate="tanh")  # noqa: E731
        self.mlp = Mlp(in_features=hidden_size, hidden_features=mlp_hidden_dim,
                       act_layer=approx_gelu, drop=0)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(),
            nn.Linear(hidden_size, 6 * hidden_size, bias=True)
        )

    def forward(self, x, c):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(
            nn.SiLU(),
            nn.Linear(hidden_size, 2 * hidden_size, bias=True)
        )

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = modulate(self.norm_final(x), shift, scale)
        x = self.linear(x)
        return x


class DiT(nn.Module):
    def __init__(
        self,
        input_size=32,
        patch_size=2,
        in_channels=4,
        hidden_size=1152,
        depth=28,
        num_heads=16,
        mlp_ratio=4.0,
        class_dropout_prob=0.1,
        num_classes=1000,
        learn_sigma=True,
        t_scale=1.0,
    ):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.t_scale = t_scale

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = (LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
                           if num_classes > 0 else None)
        num_patches = self.x_embedder.num_patches
        # Will use fixed sin-cos embedding:
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size),
                                      requires_grad=False)

        self.blocks = nn.ModuleList([
            DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)
        ])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
        self.apply(_basic_init)

        pos_embed = get_2d_sincos_pos_embed(self.pos_embed.shape[-1],
                                            int(self.x_embedder.num_patches ** 0.5))
        self.pos_embed.data.copy_(torch.from_numpy(pos_embed).float().unsqueeze(0))

        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))

        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)

        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

        for block in self.blocks:
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)

        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x):
        c = self.out_channels
        p = self.x_embedder.patch_size[0]
        h = w = int(x.shape[1] ** 0.5)
        assert h * w == x.shape[1]

        x = x.reshape(shape=(x.shape[0], h, w, p, p, c))
        x = torch.einsum('nhwpqc->nchpwq', x)
        imgs = x.reshape(shape=(x.shape[0], c, h * p, h * p))
        return imgs

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        t = self.t_embedder(t * self.t_scale)
        if self.y_embedder is not None:
            y = self.y_embedder(y, self.training)
            c = t + y
        else:
            c = t
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)
        x = self.unpatchify(x)
        return x


def get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False, extra_tokens=0):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0)

    grid = grid.reshape([2, 1, grid_size, grid_size])
    pos_embed = get_2d_sincos_pos_embed_from_grid(embed_dim, grid)
    if cls_token and extra_tokens > 0:
        pos_embed = np.concatenate([np.zeros([extra_tokens, embed_dim]), pos_embed], axis=0)
    return pos_embed


def get_2d_sincos_pos_embed_from_grid(embed_dim, grid):
    assert embed_dim % 2 == 0
    emb_h = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[0])  # (H*W, D/2)
    emb_w = get_1d_sincos_pos_embed_from_grid(embed_dim // 2, grid[1])  # (H*W, D/2)
    emb = np.concatenate([emb_h, emb_w], axis=1)  # (H*W, D)
    return emb


def get_1d_sincos_pos_embed_from_grid(embed_dim, pos):
    assert embed_dim % 2 == 0
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.
    omega = 1. / 10000**omega  # (D/2,)
    pos = pos.reshape(-1)  # (M,)
    out = np.einsum('m,d->md', pos, omega)  # (M, D/2), outer product
    emb_sin = np.sin(out)  # (M, D/2)
    emb_cos = np.cos(out)  # (M, D/2)
    emb = np.concatenate([emb_sin, emb_cos], axis=1)  # (M, D)
    return emb


# ----------------------------------------------------------------------------------------------
# flowgpu config + safetensors (by hand)
# ----------------------------------------------------------------------------------------------

CONFIG_KEYS = ["image_size", "in_channels", "patch_size", "hidden_size", "depth", "num_heads",
               "num_classes", "t_scale"]

# src/model/config.ts PRESETS (patch_size 2 unless the preset says otherwise).
PRESETS = {
    "tiny": dict(hidden_size=64, depth=2, num_heads=2, patch_size=4),
    "small": dict(hidden_size=256, depth=6, num_heads=4, patch_size=2),
    "S": dict(hidden_size=384, depth=12, num_heads=6, patch_size=2),
    "B": dict(hidden_size=768, depth=12, num_heads=12, patch_size=2),
    "L": dict(hidden_size=1024, depth=24, num_heads=16, patch_size=2),
}


def build_dit(cfg):
    if cfg.get("mlp_ratio", 4) != 4:
        raise ValueError("only mlp_ratio 4 is supported")
    return DiT(input_size=cfg["image_size"], patch_size=cfg["patch_size"],
               in_channels=cfg["in_channels"], hidden_size=cfg["hidden_size"],
               depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=4.0,
               class_dropout_prob=0.1, num_classes=cfg["num_classes"], learn_sigma=False,
               t_scale=cfg["t_scale"])


DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8")}


def read_safetensors(path):
    """Returns (dict name -> float64 numpy array, metadata dict). F32/F16/BF16/F64."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[base + b: base + e]
        dt = info["dtype"]
        if dt == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif dt in DTYPES:
            arr = np.frombuffer(raw, dtype=DTYPES[dt])
        else:
            raise ValueError(f"{name}: unsupported dtype {dt}")
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out, meta


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, array); all stored as F32, in the given order."""
    header = {"__metadata__": metadata}
    blobs = []
    off = 0
    for name, arr in tensors:
        a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def f32(t):
    """Round a float64 tensor to float32 values (kept float64)."""
    return t.float().double()


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------

def mode_fixture(args):
    cfg = dict(image_size=12, in_channels=3, patch_size=2, hidden_size=48, depth=args.depth,
               num_heads=3, num_classes=5, t_scale=1000.0)
    torch.manual_seed(args.seed)
    model = build_dit(cfg).double()
    model.eval()
    # Random non-zero weights everywhere (DiT's zero init would hide bugs), rounded to f32.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "pos_embed":
                p.copy_(f32(p))
                continue
            if name.endswith(".bias"):
                v = torch.randn_like(p) * 0.2
            elif name == "y_embedder.embedding_table.weight":
                v = torch.randn_like(p) * 0.5
            else:
                fan_in = p[0].numel()
                v = torch.randn_like(p) / math.sqrt(fan_in)
            p.copy_(f32(v))
    B, C, H = 2, cfg["in_channels"], cfg["image_size"]
    x = f32(torch.randn(B, C, H, H, dtype=torch.float64))
    t = f32(torch.rand(B, dtype=torch.float64) * 0.98 + 0.01)
    y = torch.tensor([2, cfg["num_classes"]], dtype=torch.long)  # second: the null label
    dout = f32(torch.randn(B, C, H, H, dtype=torch.float64))
    v = model(x, t, y)
    loss = (v * dout).sum()
    loss.backward()

    tensors = []
    for name, p in model.state_dict().items():
        tensors.append((name, p.detach().numpy()))
    tensors.append(("in.x", x.numpy()))
    tensors.append(("in.t", t.numpy()))
    tensors.append(("in.y", y.double().numpy()))
    tensors.append(("in.dout", dout.numpy()))
    tensors.append(("out.v", v.detach().numpy()))
    for name, p in model.named_parameters():
        if p.requires_grad:
            tensors.append(("grad." + name, p.grad.numpy()))
    meta = {"config": json.dumps({k: cfg[k] for k in CONFIG_KEYS}, separators=(",", ":")),
            "generator": "scripts/pytorch_dit.py fixture (float64 DiT, seed %d)" % args.seed}
    write_safetensors(args.out, tensors, meta)
    print(f"wrote {args.out}: {len(tensors)} tensors, loss {loss.item():.6f}, "
          f"max|v| {v.abs().max().item():.4f}")


def load_state(tensors, ema):
    state = {}
    for name, a in tensors.items():
        if ema:
            if name.startswith("ema."):
                state[name[4:]] = torch.from_numpy(a)
        elif not name.startswith(("ema.", "opt.", "vqvae.", "in.", "out.", "grad.")):
            state[name] = torch.from_numpy(a)
    return state


def check_latent(tensors, meta, ckpt, z):
    """A latent model's VQ-VAE: strict load into pytorch_vqvae.VQVAE; decode z (the DiT's
    output, scaled latents) un-scaled and snapped to the codebook; returns the images."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import pytorch_vqvae  # noqa: E402 (the VQ-VAE module of the same repository)
    latent = json.loads(meta["flowgpu.latent"])
    cfg, scale = latent["vqvae_config"], latent["scale"]
    vq = pytorch_vqvae.VQVAE(argparse.Namespace(**cfg)).double()
    state = {name[len("vqvae."):]: torch.from_numpy(a).double()
             for name, a in tensors.items() if name.startswith("vqvae.")}
    vq.load_state_dict(state, strict=True)
    vq.eval()
    print(f"loaded the latent VQ-VAE of {ckpt} (strict): {cfg}, latent scale {scale}")
    with torch.no_grad():
        zq, _, _ = vq.quantizer((z / scale).double())
        images = vq.decoder(zq)
    print(f"decoded {list(z.shape)} latents to images {list(images.shape)}: "
          f"mean {images.mean().item():.4f}, std {images.std().item():.4f}")
    return images


def mode_check(args):
    tensors, meta = read_safetensors(args.ckpt)
    if "config" not in meta:
        sys.exit(f"{args.ckpt}: no 'config' metadata")
    cfg = json.loads(meta["config"])
    model = build_dit(cfg).double()
    model.eval()
    own_pos = model.pos_embed.detach().clone()
    model.load_state_dict(load_state(tensors, args.ema), strict=True)
    print(f"loaded {args.ckpt} into DiT (strict): config {cfg}")
    pos_err = (model.pos_embed.detach() - own_pos).abs().max().item()
    print(f"pos_embed vs DiT's get_2d_sincos_pos_embed: max abs difference {pos_err:.3e}")
    if pos_err > 1e-5:
        sys.exit("pos_embed differs from DiT's sin-cos table")
    io = tensors
    if args.io:
        io, _ = read_safetensors(args.io)
    if all(k in io for k in ("in.x", "in.t", "in.y")):
        x = torch.from_numpy(io["in.x"])
        t = torch.from_numpy(io["in.t"]).reshape(-1)
        y = torch.from_numpy(io["in.y"]).reshape(-1).round().long()
        with torch.no_grad():
            v = model(x, t, y)
        print(f"output: shape {list(v.shape)}, mean {v.mean().item():.6f}, "
              f"std {v.std().item():.6f}")
        if "out.v" in io:
            ref = torch.from_numpy(io["out.v"]).reshape(v.shape)
            err = (v - ref).abs().max().item()
            scale = v.abs().max().item()
            rel = err / max(scale, 1e-30)
            ok = err <= args.tol * scale + 1e-6
            print(f"out.v vs PyTorch DiT: max abs error {err:.3e}, relative {rel:.3e} "
                  f"(tol {args.tol}): {'OK' if ok else 'MISMATCH'}")
            if not ok:
                sys.exit(1)
    else:
        g = torch.Generator().manual_seed(0)
        n, C, H = 2, cfg["in_channels"], cfg["image_size"]
        x = torch.randn(n, C, H, H, generator=g, dtype=torch.float64)
        t = torch.rand(n, generator=g, dtype=torch.float64)
        y = torch.tensor([0, cfg["num_classes"]])[:n]
        with torch.no_grad():
            v = model(x, t, y)
        print(f"no stored inputs; random inputs give output mean {v.mean().item():.6f}, "
              f"std {v.std().item():.6f}, max|v| {v.abs().max().item():.6f}")
    if "flowgpu.latent" in meta:
        check_latent(tensors, meta, args.ckpt, v.detach())


def mode_spec(args):
    cfg = dict(image_size=12, in_channels=3, patch_size=2, hidden_size=48, depth=2,
               num_heads=3, num_classes=5, t_scale=1000.0)
    cfg.update(json.loads(args.config or "{}"))
    model = build_dit(cfg)
    for name, p in model.state_dict().items():
        print(name, list(p.shape))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("fixture")
    f.add_argument("--out", default="tests/fixtures/dit_parity.safetensors")
    f.add_argument("--seed", type=int, default=1234)
    f.add_argument("--depth", type=int, default=2)
    c = sub.add_parser("check")
    c.add_argument("ckpt")
    c.add_argument("--io")
    c.add_argument("--ema", action="store_true")
    c.add_argument("--tol", type=float, default=1e-4)
    s = sub.add_parser("spec")
    s.add_argument("--config")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    {"fixture": mode_fixture, "check": mode_check, "spec": mode_spec}[args.mode](args)


if __name__ == "__main__":
    main()
