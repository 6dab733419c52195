"""``python -m vitnp bench``: training-step and inference throughput of vitnp, next to PyTorch on the CPU.

What is measured, all float32, batch B (128 by default), in one run:

- **train step** = forward + backward + AdamW update (lr 1e-3, weight decay 0.05), softmax cross-entropy;
- **inference** = forward only (``train=False``; ``torch.inference_mode()`` on the torch side);
- the same ViT in PyTorch eager, started as a subprocess (``benchmarks/torch_worker.py``; vitnp itself
  never imports torch) with ``torch.set_num_threads`` equal to vitnp's thread count.  vitnp runs in a
  subprocess too, one per configuration, so that each side's peak memory (max RSS) is its own;
- **alternation**: a round of vitnp steps, then a round of torch steps, and so on; every side's time is
  the median over all its timed steps, so noise from other programs on the machine hits both;
- **GFLOP/s** counts the matrix products only (2·m·n·k each, :func:`matmul_flops`): the forward pass,
  plus twice that for the backward (minus the patch embedding's unused input gradient);
- **peak**: the best GFLOP/s of large square float32 ``A @ B`` (2048 and 4096) in NumPy, measured in the
  same run with the same number of threads; "% peak" = achieved GFLOP/s / peak;
- **gradient checks**: the wall time of ``python -m vitnp gradcheck`` (float64), and whether it passed.

The configurations of issue 5::

    small   28×28×1, P=7 (N=16), D=64,  depth 6, heads 4, MLP 128, 10 classes
    base28  28×28×1, P=4 (N=49), D=192, depth 6, heads 3, MLP 768, 10 classes
"""
from __future__ import annotations

import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..io.atomic import write_text

CONFIGS = {
    "small": dict(image_size=28, patch_size=7, in_channels=1, num_classes=10, dim=64, depth=6, heads=4,
                  mlp_dim=128),
    "base28": dict(image_size=28, patch_size=4, in_channels=1, num_classes=10, dim=192, depth=6, heads=3,
                   mlp_dim=768),
}
DEFAULT_STEPS = {"small": 10, "base28": 3}      # timed steps per round, per side
TORCH_WORKER = Path(__file__).resolve().parents[2] / "benchmarks" / "torch_worker.py"


# ---- arithmetic --------------------------------------------------------------------------------------
def matmul_flops(cfg, batch: int, train: bool = True) -> int:
    """Floating-point operations of the matrix products of one step (2·m·n·k per product).

    Forward, per image: the patch embedding 2·N·P²C·D; per block the qkv projection 2·T·D·3D, the logits
    q kᵀ and A v 2·T·T·D each, U_msa 2·T·D², the MLP 2·2·T·D·M; the head 2·D·K.  A training step adds
    the backward, twice the forward (an input and a weight gradient per product), except the patch
    embedding, whose input gradient is not computed.
    """
    N, T, D, M, K = cfg.num_patches, cfg.num_tokens, cfg.dim, cfg.mlp_dim, cfg.num_classes
    embed = 2 * N * cfg.patch_dim * D
    block = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + 2 * 2 * T * D * M
    forward = embed + cfg.depth * block + 2 * D * K
    return batch * (3 * forward - embed if train else forward)


def matmul_peak(threads: int, sizes=(2048, 4096), repeats=(5, 2)) -> dict:
    """Best GFLOP/s of float32 square matmuls, with BLAS at ``threads`` threads."""
    from ..fast import parallel
    rng = np.random.default_rng(0)
    best = {}
    with parallel.blas_threads(threads):
        for n, reps in zip(sizes, repeats):
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            c = np.empty((n, n), np.float32)
            np.matmul(a, b, out=c)                                  # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                times.append(time.perf_counter() - t0)
            best[n] = 2 * n ** 3 / min(times) / 1e9
    return {"gflops": max(best.values()), "by_size": best}


# ---- the vitnp worker (a subprocess per config, so that its max RSS is its own) -----------------------
def _rss_now() -> int:
    """Resident set size of this process now, in bytes (Linux), else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def vitnp_worker(args) -> int:
    """Answer the torch worker's protocol (train / infer / rss / quit, one JSON object a line) for vitnp."""
    from .. import ViTConfig, init_params
    from ..fast import parallel
    from ..training.specs import model_spec
    from ..ops.loss import softmax_cross_entropy
    from ..optim import AdamW
    parallel.configure(threads=args.threads)
    spec = model_spec("vit", reference=args.path == "reference")
    vit_forward, vit_backward, vit_predict = spec.forward, spec.backward, spec.predict
    cfg = ViTConfig(**json.loads(args.config))
    rng = np.random.default_rng(args.seed)
    params = init_params(cfg, args.seed)
    opt = AdamW(params, lr=1e-3, weight_decay=0.05)
    x = rng.standard_normal((args.batch_size, *cfg.hw, cfg.in_channels)).astype(np.float32)
    y = rng.integers(0, cfg.num_classes, args.batch_size)
    base_rss = _rss_now()
    inputs = {args.batch_size: x}

    def train_step():
        logits, cache = vit_forward(params, x, cfg, train=True)
        loss, dlogits = softmax_cross_entropy(logits, y)
        opt.step(params, vit_backward(dlogits, cache))
        return loss

    def infer_step(batch):
        if batch not in inputs:
            inputs[batch] = rng.standard_normal((batch, *cfg.hw, cfg.in_channels)).astype(np.float32)
        return vit_predict(params, inputs[batch], cfg)

    return serve(train_step, infer_step, {"threads": parallel.num_threads(), "settings": parallel.configure(),
                                           "path": args.path}, base_rss=base_rss)


def serve(train_step, infer_step, hello: dict, base_rss=None) -> int:
    """The worker protocol, one JSON object a line on stdin/stdout: says ``{"ready": true, **hello}``, then answers
    ``train``/``infer`` (``steps`` timed calls: their times and the last loss; ``infer`` takes a ``batch`` size,
    ``infer_step(batch)``), ``rss`` (max and base resident set size) and ``quit``.  The vitnp worker and
    ``benchmarks/torch_worker.py`` both run it."""
    print(json.dumps({"ready": True, **hello}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd in ("train", "infer"):
            fn = train_step if cmd == "train" else functools.partial(infer_step, int(msg["batch"]))
            times, loss = [], None
            for _ in range(int(msg.get("steps", 1))):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
                loss = out if cmd == "train" else None
            reply = {"times": times, "loss": loss}
        elif cmd == "rss":
            reply = {"max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                     "base_rss_bytes": base_rss}
        elif cmd == "quit":
            break
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(reply), flush=True)
    return 0


class _Process:
    """A worker subprocess speaking one JSON object per line."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env)
        self.hello = self._read()

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            err = self.p.stderr.read()
            raise RuntimeError(f"worker {' '.join(self.argv[:3])} … stopped: {err.strip()[-2000:]}")
        return json.loads(line)

    def ask(self, **msg):
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"worker error: {reply['error']}")
        return reply

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.p.stdin.flush()
                self.p.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()


def _torch_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def _torch_attentions(args) -> list:
    """The PyTorch sides to run: SDPA first (the baseline of the ratios), then the explicit variant."""
    return {"both": ["sdpa", "explicit"], "sdpa": ["sdpa"], "explicit": ["explicit"]}[args.torch_attention]


def _start_workers(cfg, args, threads, log):
    """{side name: worker} (vitnp, vitnp-reference, pytorch-sdpa, pytorch-explicit) and why torch is missing."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))        # torch reads it at import; set_num_threads too
    common = ["--config", json.dumps(cfg.to_dict()), "--batch-size", str(args.batch_size),
              "--threads", str(threads), "--seed", "0"]
    workers = {"vitnp": _Process([sys.executable, "-m", "vitnp.cli.bench", "worker", "--path", "fast"] + common,
                                 env=env)}
    if args.reference:
        workers["vitnp-reference"] = _Process([sys.executable, "-m", "vitnp.cli.bench", "worker", "--path", "reference"]
                                              + common, env=env)
    why = ""
    worker = Path(args.torch_worker) if args.torch_worker else TORCH_WORKER
    if args.no_torch:
        why = "--no-torch given"
    elif not _torch_available():
        why = "torch is not installed"
    elif not worker.is_file():
        why = f"the worker script {worker} is missing"
    else:
        for attention in _torch_attentions(args):
            try:
                workers[f"pytorch-{attention}"] = _Process([sys.executable, str(worker)] + common
                                                           + ["--attention", attention], env=env)
            except RuntimeError as e:
                why = str(e)
                break
    if why:
        log(f"  PyTorch not available ({why}): vitnp only")
    return workers, why


def _alternate(workers, cmd, rounds, steps, warmup, **msg):
    """Rounds of `steps` timed steps per worker, one worker after the other; returns name -> times."""
    times = {name: [] for name in workers}
    for name, w in workers.items():
        w.ask(cmd=cmd, steps=warmup, **msg)
    for _ in range(rounds):
        for name, w in workers.items():
            times[name] += w.ask(cmd=cmd, steps=steps, **msg)["times"]
    return times


def bench_config(name, args, threads, peak, log) -> dict:
    """Train and inference throughput of one configuration, vitnp and (if present) torch, alternating.

    Inference is timed at three batch sizes: the training batch, the evaluation batch of the CLI
    (``--eval-batch-size``, 500 as ``HParams.eval_batch_size``) and 1 (latency).  Peak memory (max RSS) is read
    after the training rounds and again at the end.
    """
    from .. import ViTConfig
    cfg = ViTConfig(**CONFIGS[name])
    steps = args.steps or DEFAULT_STEPS[name]
    log(f"[{name}] {cfg.num_tokens} tokens, D={cfg.dim}, depth {cfg.depth}, heads {cfg.heads}, MLP {cfg.mlp_dim}; "
        f"{args.rounds} rounds × {steps} steps per side")
    workers, why = _start_workers(cfg, args, threads, log)
    eval_batch = args.eval_batch_size
    eval_steps = max(1, round(steps * args.batch_size / eval_batch))
    try:
        train = _alternate(workers, "train", args.rounds, steps, warmup=2)
        rss_train = {k: w.ask(cmd="rss") for k, w in workers.items()}
        infer = _alternate(workers, "infer", args.rounds, steps, warmup=1, batch=args.batch_size)
        infer_eval = _alternate(workers, "infer", args.rounds, eval_steps, warmup=1, batch=eval_batch)
        latency = _alternate(workers, "infer", args.rounds, 20, warmup=5, batch=1)
        rss = {k: w.ask(cmd="rss") for k, w in workers.items()}
    finally:
        for w in workers.values():
            w.close()
    flops_train = matmul_flops(cfg, args.batch_size, train=True)
    flops_infer = matmul_flops(cfg, args.batch_size, train=False)
    out = {"config": name, "cfg": cfg.to_dict(), "batch_size": args.batch_size, "eval_batch_size": eval_batch,
           "steps_per_round": steps, "rounds": args.rounds, "gflop_train_step": flops_train / 1e9,
           "gflop_infer_step": flops_infer / 1e9, "torch_missing_reason": why or None, "sides": {}}
    for k in workers:
        t_train, t_infer = statistics.median(train[k]), statistics.median(infer[k])
        t_eval, t_one = statistics.median(infer_eval[k]), statistics.median(latency[k])
        out["sides"][k] = {
            "train_step_s": t_train, "train_img_s": args.batch_size / t_train,
            "train_gflops": flops_train / t_train / 1e9, "train_pct_peak": 100 * flops_train / t_train / 1e9 / peak,
            "infer_step_s": t_infer, "infer_img_s": args.batch_size / t_infer,
            "infer_eval_step_s": t_eval, "infer_eval_img_s": eval_batch / t_eval, "latency_s": t_one,
            "train_times": train[k], "infer_times": infer[k], "infer_eval_times": infer_eval[k],
            "latency_times": latency[k],
            "train_max_rss_bytes": rss_train[k]["max_rss_bytes"],
            "max_rss_bytes": rss[k]["max_rss_bytes"], "base_rss_bytes": rss[k].get("base_rss_bytes"),
        }
    v = out["sides"]["vitnp"]
    for k, t in out["sides"].items():
        if k != "vitnp":                            # PyTorch's sides and the reference, against the fast path
            t["ratios"] = {"train": t["train_step_s"] / v["train_step_s"], "infer": t["infer_step_s"] / v["infer_step_s"],
                           "infer_eval": t["infer_eval_step_s"] / v["infer_eval_step_s"],
                           "latency": t["latency_s"] / v["latency_s"]}
    baseline = next((k for k in ("pytorch-sdpa", "pytorch-explicit") if k in out["sides"]), None)
    if baseline:
        out["baseline"] = baseline
        out["train_ratio"] = out["sides"][baseline]["ratios"]["train"]
        out["infer_ratio"] = out["sides"][baseline]["ratios"]["infer"]
        out["infer_eval_ratio"] = out["sides"][baseline]["ratios"]["infer_eval"]
    if "vitnp-reference" in out["sides"]:
        r = out["sides"]["vitnp-reference"]["ratios"]
        out["fast_over_reference_train"], out["fast_over_reference_infer"] = r["train"], r["infer"]
    return out


def time_gradcheck(log) -> dict:
    """Wall time of ``python -m vitnp gradcheck`` in a subprocess; whether it passed."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "vitnp", "gradcheck"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    last = (p.stdout.strip().splitlines() or [""])[-1]
    log(f"gradient checks: {last} (exit {p.returncode}), {seconds:.1f} s wall")
    return {"seconds": seconds, "passed": p.returncode == 0, "summary": last}


def _machine(threads) -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    from ..fast import parallel
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "threads": threads,
            "python": platform.python_version(), "numpy": np.__version__,
            "blas_thread_control": parallel.configure()["blas_control"], "blas": parallel.blas_info(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def format_table(results, peak) -> str:
    """The results as a fixed-width text table.  On every row but vitnp's, "×" is vitnp's speed over that
    row's (its time / vitnp's time): above 1.0 vitnp is faster."""
    head = (f"{'config':<8} {'side':<17} {'train img/s':>11} {'×':>5} {'GFLOP/s':>8} {'% peak':>7} "
            f"{'infer img/s':>11} {'×':>5} {'eval img/s':>10} {'×':>5} {'batch-1 ms':>10} {'×':>5} "
            f"{'RSS train':>9} {'RSS max':>8}")
    lines = [head, "-" * len(head)]
    fmt = lambda r: f"{r:.2f}" if r is not None else ""
    for r in results:
        for side, s in r["sides"].items():
            q = s.get("ratios", {})
            lines.append(f"{r['config']:<8} {side:<17} {s['train_img_s']:>11.1f} {fmt(q.get('train')):>5} "
                         f"{s['train_gflops']:>8.1f} {s['train_pct_peak']:>6.1f}% {s['infer_img_s']:>11.1f} "
                         f"{fmt(q.get('infer')):>5} {s['infer_eval_img_s']:>10.1f} {fmt(q.get('infer_eval')):>5} "
                         f"{1e3 * s['latency_s']:>10.2f} {fmt(q.get('latency')):>5} "
                         f"{s['train_max_rss_bytes'] / 2**20:>5.0f} MiB {s['max_rss_bytes'] / 2**20:>4.0f} MiB")
    r0 = results[0]
    lines.append(f"× = vitnp's speed / this side's (same threads, alternating rounds, medians); infer at batch "
                 f"{r0['batch_size']}, eval at batch {r0['eval_batch_size']}; peak = {peak:.1f} GFLOP/s (NumPy "
                 f"float32 matmul, this run); RSS = max resident memory after the training rounds / at the end")
    for r in results:
        if "fast_over_reference_train" in r:
            lines.append(f"{r['config']}: fast path / reference path: training {r['fast_over_reference_train']:.2f}×, "
                         f"inference {r['fast_over_reference_infer']:.2f}×")
    return "\n".join(lines)


def run(args) -> int:
    """The ``bench`` command."""
    from ..fast import parallel
    names = list(CONFIGS) if args.config == "all" else [args.config]
    if (args.batch_size < 1 or (args.steps is not None and args.steps < 1) or args.rounds < 1
            or args.eval_batch_size < 1):
        print("error: --batch-size, --eval-batch-size, --steps and --rounds must be positive", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be positive", file=sys.stderr)
            return 2
        parallel.configure(threads=args.threads)
    if args.json:                                   # now, not after minutes of timing
        try:
            if os.path.isdir(args.json):
                raise IsADirectoryError("it is a directory")
            with tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(args.json))):
                pass                                # the atomic write needs a temporary file there
        except OSError as err:
            print(f"error: --json {args.json}: cannot write there ({err.strerror or err})", file=sys.stderr)
            return 2
    if args.write_table and not args.ops:
        print("error: --write-table goes with --ops", file=sys.stderr)
        return 2
    threads = parallel.num_threads()
    log = print if not args.quiet else (lambda *a, **k: None)
    machine = _machine(threads)
    if args.ops:
        from .ops import run_ops
        return run_ops(args, machine, log)
    if args.profile:
        from .profile import run_profile
        worker = Path(args.torch_worker) if args.torch_worker else TORCH_WORKER
        use_torch = not args.no_torch and _torch_available() and worker.is_file()
        return run_profile(args, machine, log, CONFIGS, worker if use_torch else None)
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, load average {machine['load_average']}; "
          f"threads {threads}; NumPy {machine['numpy']}; BLAS {machine['blas'].get('library')} "
          f"{machine['blas'].get('version', '?')}, kernel {machine['blas'].get('kernel', '?')}")
    peak = matmul_peak(threads)
    log(f"float32 matmul peak: {peak['gflops']:.1f} GFLOP/s "
        f"({', '.join(f'{n}: {g:.1f}' for n, g in peak['by_size'].items())})")
    results = [bench_config(name, args, threads, peak["gflops"], log) for name in names]
    grad = None if args.no_gradcheck else time_gradcheck(log)
    machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(format_table(results, peak["gflops"]))
    if grad:
        print(f"gradient-check suite: {grad['seconds']:.1f} s, {'passed' if grad['passed'] else 'FAILED'}")
    for r in results:
        v = r["sides"]["vitnp"]
        mem = f"peak memory {v['train_max_rss_bytes'] / 2**30:.2f} GiB training, {v['max_rss_bytes'] / 2**30:.2f} GiB in all"
        if "train_ratio" in r:
            mark = lambda x: f"{x:.3f} ({'≥' if x >= 1 else '<'} 1.0)"
            t = r["sides"][r["baseline"]]
            print(f"{r['config']}: against {r['baseline']}: training {mark(r['train_ratio'])}, inference "
                  f"{mark(r['infer_ratio'])} at batch {r['batch_size']}, {mark(r['infer_eval_ratio'])} at batch "
                  f"{r['eval_batch_size']}; batch-1 latency {1e3 * v['latency_s']:.2f} ms (PyTorch "
                  f"{1e3 * t['latency_s']:.2f} ms); {v['train_pct_peak']:.0f}% of peak; {mem}")
        else:
            print(f"{r['config']}: PyTorch was not available ({r['torch_missing_reason']}); "
                  f"{v['train_pct_peak']:.0f}% of peak; {mem}")
    if args.json:
        _write_json(args.json, {"machine": machine, "peak": peak, "results": results, "gradcheck": grad})
    return 0 if grad is None or grad["passed"] else 1


def _write_json(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, then rename)."""
    write_text(path, json.dumps(obj, indent=1, default=float))
