"""``python -m vitnp bench --profile``: where one training step and one inference pass spend their time, op by op,
in vitnp's fast path and in PyTorch, on one thread.

vitnp's side wraps the fast path's functions (``vitnp.fast.block``, ``.attention``, ``.ln_linear``, ``.model``)
in timers that keep a stack, so each op's time is its own (LayerNorm's normalisation inside the folded
LN → linear op counts as "layernorm", the rest of that op, the GEMM with γ, β and b folded in, as "linear").
PyTorch's side is ``torch.profiler`` on the same model in ``benchmarks/torch_worker.py`` (``--profile``): the
self CPU time of each aten op, put in the same rows by :data:`TORCH_ROWS`.  Both run on one thread (BLAS and
torch), so that the times add up to the step's wall time and no op hides behind another thread.  The AdamW
update is timed apart on both sides.
"""
from __future__ import annotations

import contextlib
import functools
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np

ROWS = ("linear (GEMM + bias)", "attention (q kᵀ, A v)", "softmax", "layernorm", "gelu", "copies",
        "embed + head (Eq 1, 4)", "residuals and the rest", "AdamW")
REST, ADAMW = ROWS[7], ROWS[8]          # what no timed op took; the optimiser step, timed apart

# PyTorch aten ops -> rows (the self time of every other op goes to "residuals and the rest")
TORCH_ROWS = {
    "aten::addmm": "linear (GEMM + bias)", "aten::mm": "linear (GEMM + bias)",
    "aten::bmm": "attention (q kᵀ, A v)", "aten::baddbmm": "attention (q kᵀ, A v)",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention (q kᵀ, A v)",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": "attention (q kᵀ, A v)",
    "aten::_softmax": "softmax", "aten::_softmax_backward_data": "softmax",
    "aten::native_layer_norm": "layernorm", "aten::native_layer_norm_backward": "layernorm",
    "aten::gelu": "gelu", "aten::gelu_backward": "gelu",
    "aten::copy_": "copies", "aten::clone": "copies", "aten::cat": "copies", "aten::_unsafe_view": "copies",
}


class OpTimer:
    """Exclusive wall time per label of nested calls (a stack: time inside a child is the child's)."""

    def __init__(self):
        self.totals = defaultdict(float)
        self._stack = []

    def wrap(self, fn, label):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            now = time.perf_counter()
            if self._stack:
                self.totals[self._stack[-1][0]] += now - self._stack[-1][1]
            self._stack.append([label, now])
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                name, start = self._stack.pop()
                self.totals[name] += end - start
                if self._stack:
                    self._stack[-1][1] = end
        return timed


@contextlib.contextmanager
def _timed_fast_path(timer):
    """Within the block the fast path's ops are wrapped in ``timer``; the originals are restored after."""
    from ..fast import attention as fa, block as fb, ln_linear as fl, model as fm
    targets = []
    for d in ("forward", "backward"):
        targets += [(fb, f"linear_{d}", ROWS[0]), (fb, f"ln_linear_{d}", ROWS[0]),   # GEMMs, bias, γ/β fold
                    (fb, f"qkv_attention_{d}", ROWS[1]), (fa, f"attention_{d}", ROWS[1]),
                    (fa, f"softmax_{d}", ROWS[2]), (fl, f"normalize_{d}", ROWS[3]), (fb, f"gelu_{d}", ROWS[4]),
                    (fm, f"embed_{d}", ROWS[6]), (fm, f"head_{d}", ROWS[6]), (fb, f"encoder_block_{d}", REST)]
    targets = [t for t in targets if hasattr(t[0], t[1])]   # the student edition withholds some of them
    saved = [(m, name, getattr(m, name)) for m, name, _ in targets]
    try:
        for m, name, label in targets:
            setattr(m, name, timer.wrap(getattr(m, name), label))
        yield
    finally:
        for m, name, fn in saved:
            setattr(m, name, fn)


def profile_vitnp(cfg, batch, steps=3, seed=0) -> dict:
    """{'train': {row: ms per step}, 'infer': {...}, 'train_ms', 'infer_ms'} of the fast path on one thread."""
    from .. import init_params
    from ..fast import model as fm, parallel
    from ..ops.loss import softmax_cross_entropy
    from ..optim import AdamW
    rng = np.random.default_rng(seed)
    params = init_params(cfg, seed)
    opt = AdamW(params, lr=1e-3, weight_decay=0.05)
    x = rng.standard_normal((batch, *cfg.hw, cfg.in_channels)).astype(cfg.np_dtype)
    y = rng.integers(0, cfg.num_classes, batch)

    def step(kind):
        """One training step (or inference pass); returns when its forward (+ backward) ended, before AdamW."""
        if kind == "infer":
            fm.vit_predict(params, x, cfg)
            return time.perf_counter()
        logits, cache = fm.vit_forward(params, x, cfg, train=True)
        grads = fm.vit_backward(softmax_cross_entropy(logits, y)[1], cache)
        ended = time.perf_counter()
        opt.step(params, grads)
        return ended

    before = parallel._settings["threads"]                      # restored as it was (None: follow BLAS)
    parallel.configure(threads=1)
    out = {}
    try:
        with parallel.blas_threads(1):
            for kind in ("train", "infer"):
                timer, walls, rest = OpTimer(), [], []
                for i in range(steps + 1):                                  # the first call warms up
                    with _timed_fast_path(timer):
                        timer.totals.clear()
                        t0 = time.perf_counter()
                        t1 = step(kind)
                        t2 = time.perf_counter()
                    if i:
                        walls.append(t2 - t0)
                        timed = dict(timer.totals)
                        timed[REST] = timed.get(REST, 0.0) + (t1 - t0) - sum(timer.totals.values())
                        if kind == "train":
                            timed[ADAMW] = t2 - t1
                        rest.append(timed)
                out[kind] = {row: 1e3 * statistics.median(r.get(row, 0.0) for r in rest) for row in ROWS}
                out[f"{kind}_ms"] = 1e3 * statistics.median(walls)
                plain = []
                for _ in range(steps):                                      # without the timers
                    t0 = time.perf_counter()
                    step(kind)
                    plain.append(time.perf_counter() - t0)
                out[f"{kind}_plain_ms"] = 1e3 * statistics.median(plain)
    finally:
        parallel._settings["threads"] = before
    return out


def profile_torch(cfg, batch, steps, worker, attention) -> dict:
    """The same dict from PyTorch's profiler, measured by ``worker --profile`` in a subprocess; raises
    RuntimeError with the worker's last words if it fails."""
    p = subprocess.run([sys.executable, str(worker), "--config", json.dumps(cfg.to_dict()), "--batch-size",
                        str(batch), "--threads", "1", "--attention", attention, "--profile", str(steps)],
                       capture_output=True, text=True, env=_one_thread_env())
    if p.returncode != 0:
        raise RuntimeError(f"torch profile failed: {p.stderr.strip()[-2000:]}")
    raw = json.loads(p.stdout.strip().splitlines()[-1])
    out = {}
    for kind in ("train", "infer"):
        rows = dict.fromkeys(ROWS, 0.0)
        for name, ms in raw[kind]["self_ms"].items():
            rows[TORCH_ROWS.get(name, REST)] += ms
        if kind == "train":
            rows[ADAMW] = raw[kind]["optimizer_ms"]
        out[kind] = rows
        adamw = raw[kind]["optimizer_ms"] if kind == "train" else 0.0
        out[f"{kind}_ms"] = raw[kind]["wall_ms"] + adamw
        out[f"{kind}_plain_ms"] = raw[kind]["plain_wall_ms"] + adamw
    return out


def _one_thread_env():
    import os
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def format_profile(name, batch, vit, torch_side, attention) -> str:
    """The two tables (training step, inference pass) as Markdown."""
    lines = []
    for kind, title in (("train", "one training step (forward + backward + AdamW)"), ("infer", "one inference pass")):
        lines += [f"**{name}, batch {batch}, one thread: {title}**", "",
                  f"| op | vitnp ms | % | PyTorch ({attention}) ms | % | vitnp time / PyTorch time |",
                  "|---|---|---|---|---|---|"]
        for row in ROWS:
            if kind == "infer" and row == ADAMW:
                continue
            v = vit[kind][row]
            t = torch_side[kind][row] if torch_side else None
            ratio = f"{v / t:.2f}" if t and t > 0.05 and v > 0.05 else ""     # blank where a side has no such op
            lines.append(f"| {row} | {v:.1f} | {100 * v / vit[f'{kind}_ms']:.0f}% | "
                         + (f"{t:.1f} | {100 * t / torch_side[f'{kind}_ms']:.0f}% | {ratio} |" if t is not None
                            else "— | | |"))
        tw = f"{torch_side[f'{kind}_ms']:.1f}" if torch_side else "—"
        lines += [f"| wall time of the step, profiled | {vit[f'{kind}_ms']:.1f} | | {tw} | | "
                  + (f"{vit[f'{kind}_ms'] / torch_side[f'{kind}_ms']:.2f} |" if torch_side else "|")]
        tp = f"{torch_side[f'{kind}_plain_ms']:.1f}" if torch_side else "—"
        lines += [f"| **wall time of the step, not profiled** | **{vit[f'{kind}_plain_ms']:.1f}** | | **{tp}** | | "
                  + (f"**{vit[f'{kind}_plain_ms'] / torch_side[f'{kind}_plain_ms']:.2f}** |" if torch_side else "|"),
                  ""]
    return "\n".join(lines)


def run_profile(args, machine, log, configs, worker) -> int:
    """The ``bench --profile`` command: both configurations (or ``--config``), one thread, Markdown tables.

    configs : {name: ViTConfig fields} (vitnp.bench.run.CONFIGS); worker : path of the torch worker, None for
    vitnp only."""
    from .. import ViTConfig
    from ..io.atomic import write_text
    names = list(configs) if args.config == "all" else [args.config]
    use_torch = worker is not None
    steps = args.steps or 3
    attention = "explicit" if args.torch_attention == "explicit" else "sdpa"
    results = {}
    print(f"CPU: {machine['cpu']}; one thread; batch {args.batch_size}; medians of {steps} steps\n")
    for name in names:
        cfg = ViTConfig(**configs[name])
        log(f"[{name}] profiling vitnp …")
        vit = profile_vitnp(cfg, args.batch_size, steps)
        torch_side = None
        if use_torch:
            log(f"[{name}] profiling PyTorch …")
            torch_side = profile_torch(cfg, args.batch_size, steps, worker, attention)
        results[name] = {"vitnp": vit, "pytorch": torch_side}
        print(format_profile(name, args.batch_size, vit, torch_side, attention))
    if args.json:
        write_text(args.json, json.dumps({"machine": machine, "batch_size": args.batch_size,
                                          "torch_attention": attention, "profile": results},
                                         indent=1, default=float))
    return 0
