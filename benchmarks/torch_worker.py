"""The PyTorch side of ``python -m vitnp bench``: the same ViT in torch eager on the CPU, timed on command.

vitnp itself never imports torch, so :mod:`vitnp.bench.run` starts this script as a subprocess and talks to
it over stdin/stdout, one JSON object per line:

    -> {"cmd": "train", "steps": 3}     <- {"times": [s, s, s], "loss": ...}   forward + backward + AdamW
    -> {"cmd": "infer", "steps": 3, "batch": 500}   <- {"times": [s, s, s]}    forward only, no autograd
    -> {"cmd": "rss"}                   <- {"max_rss_bytes": n}
    -> {"cmd": "quit"}

The model is the one vitnp builds for the same config, written the way a PyTorch user would:
``nn.Linear`` layers (a fused qkv projection of width 3D), ``nn.LayerNorm`` (ε from the config),
pre-LN blocks (Eq 2–3), exact GELU (``nn.GELU()``), a class token and learned position embeddings,
the final LayerNorm and a linear head, ``torch.optim.AdamW`` over all parameters, float32.
``--attention sdpa`` computes attention with ``F.scaled_dot_product_attention`` (what a PyTorch user picks, and
the bench's baseline); ``--attention explicit`` computes ``softmax(q kᵀ / √D_h) v`` with the weights
materialised, as vitnp does (it returns them).

Usage (normally started by vitnp.bench.run):
    python benchmarks/torch_worker.py --config '{"image_size": [28, 28], ...}' --batch-size 128 --threads 2
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitnp.bench.run import serve            # the worker protocol, shared with vitnp's own worker


class Attention(nn.Module):
    def __init__(self, dim, heads, sdpa):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.qkv = nn.Linear(dim, 3 * dim)                      # U_qkv (Eq 5)
        self.out = nn.Linear(dim, dim)                          # U_msa (Eq 8)

    def forward(self, z):
        B, T, D = z.shape
        k = self.heads
        qkv = self.qkv(z).reshape(B, T, 3, k, D // k).permute(2, 0, 3, 1, 4)   # (3, B, k, T, D_h)
        q, key, v = qkv[0], qkv[1], qkv[2]
        if self.sdpa:
            o = F.scaled_dot_product_attention(q, key, v)
        else:
            A = torch.softmax((q @ key.transpose(-2, -1)) * (1.0 / math.sqrt(D // k)), dim=-1)   # Eq 6
            o = A @ v                                                                       # Eq 7
        return self.out(o.transpose(1, 2).reshape(B, T, D))                                 # Eq 8


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_dim, eps, sdpa):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, sdpa)
        self.ln2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, z):
        z = z + self.attn(self.ln1(z))                          # Eq 2
        return z + self.mlp(self.ln2(z))                        # Eq 3


class ViT(nn.Module):
    def __init__(self, cfg, sdpa=False):
        super().__init__()
        H, W = cfg["image_size"]
        P, C, D = cfg["patch_size"], cfg["in_channels"], cfg["dim"]
        self.P = P
        N = (H // P) * (W // P)
        self.embed = nn.Linear(P * P * C, D)                    # E
        self.x_class = nn.Parameter(torch.zeros(1, 1, D))
        self.E_pos = nn.Parameter(torch.randn(1, N + 1, D) * 0.02)
        self.blocks = nn.ModuleList(Block(D, cfg["heads"], cfg["mlp_dim"], cfg["ln_eps"], sdpa)
                                    for _ in range(cfg["depth"]))
        self.ln_f = nn.LayerNorm(D, eps=cfg["ln_eps"])
        self.head = nn.Linear(D, cfg["num_classes"])

    def forward(self, x):                                       # x: (B, H, W, C), channels-last
        B, H, W, C = x.shape
        P = self.P
        x = x.reshape(B, H // P, P, W // P, P, C).permute(0, 1, 3, 2, 4, 5).reshape(B, -1, P * P * C)
        z = self.embed(x)
        z = torch.cat([self.x_class.expand(B, -1, -1), z], dim=1) + self.E_pos   # Eq 1
        for blk in self.blocks:
            z = blk(z)
        return self.head(self.ln_f(z)[:, 0])                    # Eq 4 and the head


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the ViTConfig as JSON (ViTConfig.to_dict())")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--attention", choices=("explicit", "sdpa"), default="explicit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="instead of serving: profile STEPS training steps and inference passes with "
                         "torch.profiler, print one JSON line and exit (vitnp bench --profile)")
    args = ap.parse_args()
    cfg = json.loads(args.config)
    if cfg.get("classifier", "token") != "token" or cfg.get("pos_embedding", "learned") != "learned" \
            or cfg.get("gelu", "exact") != "exact":
        raise SystemExit("torch_worker: only classifier='token', pos_embedding='learned', gelu='exact'")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = ViT(cfg, sdpa=args.attention == "sdpa")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    H, W = cfg["image_size"]
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, H, W, cfg["in_channels"], generator=g)
    y = torch.randint(0, cfg["num_classes"], (args.batch_size,), generator=g)

    def forward_backward():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    def train_step():
        loss = forward_backward()
        opt.step()
        return float(loss.detach())

    inputs = {args.batch_size: x}

    def infer_step(batch):
        if batch not in inputs:
            inputs[batch] = torch.randn(batch, H, W, cfg["in_channels"], generator=g)
        with torch.inference_mode():
            return model(inputs[batch])

    if args.profile:
        print(json.dumps(profile(forward_backward, lambda: infer_step(args.batch_size), opt.step, args.profile)))
        return
    serve(train_step, infer_step, {"torch": torch.__version__, "threads": torch.get_num_threads()})


def profile(forward_backward, infer, optimizer_step, steps):
    """{'train': {'self_ms': {aten op: ms per step}, 'optimizer_ms', 'wall_ms'}, 'infer': {...}}: the self CPU
    time of each op under torch.profiler (forward + backward; AdamW timed apart, outside the profiler); wall
    times are medians, with the profiler (wall_ms) and without it (plain_wall_ms); those of 'train' exclude
    AdamW."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    out = {}
    for kind, fn in (("train", forward_backward), ("infer", infer)):
        fn()                                                     # warm-up
        if kind == "train":
            optimizer_step()                                     # (AdamW makes its state on the first step)
        plain = [timed(fn) for _ in range(steps)]                # wall time without the profiler's overhead
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            walls = [timed(fn) for _ in range(steps)]
        opt_times = []
        for _ in range(steps if kind == "train" else 0):        # AdamW outside the profiler
            forward_backward()
            opt_times.append(timed(optimizer_step))
        self_ms = {}
        for e in prof.key_averages():
            self_ms[e.key] = self_ms.get(e.key, 0.0) + e.self_cpu_time_total / 1e3 / steps
        out[kind] = {"self_ms": self_ms, "wall_ms": 1e3 * statistics.median(walls),
                     "plain_wall_ms": 1e3 * statistics.median(plain),
                     "optimizer_ms": 1e3 * statistics.median(opt_times) if opt_times else 0.0}
    return out


if __name__ == "__main__":
    main()
