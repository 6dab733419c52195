"""``python -m vitnp bench --ops``: each fast op against its reference twin, forward + backward, in one run.

What one run measures: for every op that has a fast twin (:mod:`vitnp.fast`), the median wall time of one
forward and one backward call on the activations of the ``base28`` benchmark model (B = 128 images, T = 50
tokens, D = 192, k = 3 heads, M = 768; float32), reference and fast alternating round by round, with BLAS
at one thread (inside the fast model every op runs in a one-thread shard, so that is where its speed
counts).  The ratio is reference time / fast time: the measured gain of each ``vitnp/fast`` module.  Not timed
alone: ``normalize`` and ``qkv_attention``, whose references are written through LayerNorm and MSA for one
derivation (γ = 1, identity projections), so a ratio against them would measure that, not the fast code; the
fast block runs both, and its row counts them.  Those
gains live in one place: ``bench --ops --write-table`` writes them, with the machine and the date, into the table
of ``docs/performance.md`` between the lines :data:`TABLE_BEGIN` and :data:`TABLE_END` (the docstrings of
``vitnp/fast`` say what each module changes and why, and point there).  The whole-model gain (shards in threads
and malloc tuning included) is ``bench --reference``.
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np

from .. import fast, ops
from ..io.atomic import write_text
from ..fast import parallel
from ..ops.block import BLOCK_KEYS

B, T, D, HEADS, M = 128, 50, 192, 3, 768
TABLE_BEGIN = "<!-- bench --ops --write-table: begin -->"
TABLE_END = "<!-- bench --ops --write-table: end -->"


def _cases(rng):
    """(name, module, forward name, backward name, args, kwargs, number of outputs before the cache)."""
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    Dh = D // HEADS
    block_shapes = {"ln1.gamma": (D,), "ln1.beta": (D,), "U_qkv": (D, 3 * D), "U_qkv_bias": (3 * D,),
                    "U_msa": (D, D), "U_msa_bias": (D,), "ln2.gamma": (D,), "ln2.beta": (D,),
                    "mlp.W1": (D, M), "mlp.b1": (M,), "mlp.W2": (M, D), "mlp.b2": (D,)}
    block = {k: 0.1 * f(*block_shapes[k]) for k in BLOCK_KEYS}
    return [
        ("linear (B, T, D) -> (B, T, M)", "linear", "linear", (f(B, T, D), f(D, M), f(M)), {}, 1),
        ("layernorm (B, T, D)", "layernorm", "layernorm", (f(B, T, D), f(D), f(D)), {}, 1),
        ("ln_linear (B, T, D) -> (B, T, 3D)", "ln_linear", "ln_linear", (f(B, T, D), f(D), f(D), 0.1 * f(D, 3 * D),
                                                                        f(3 * D)), {}, 1),
        ("softmax (B, k, T, T)", "softmax", "softmax", (f(B, HEADS, T, T),), {}, 1),
        ("gelu exact (B, T, M)", "gelu", "gelu", (f(B, T, M),), {"approximate": "exact"}, 1),
        ("gelu tanh (B, T, M)", "gelu", "gelu", (f(B, T, M),), {"approximate": "tanh"}, 1),
        ("attention (B, k, T, D_h)", "attention", "attention", (f(B, HEADS, T, Dh), f(B, HEADS, T, Dh),
                                                                 f(B, HEADS, T, Dh)), {}, 2),
        ("msa (B, T, D)", "attention", "msa", (f(B, T, D), 0.1 * f(D, 3 * D), f(3 * D), 0.1 * f(D, D), f(D), HEADS),
         {}, 2),
        ("encoder block (B, T, D)", "block", "encoder_block", (f(B, T, D), block, HEADS), {}, 2),
    ]


def _time_pair(package, module, name, args, kwargs, n_out, dout):
    m = getattr(package, module)
    t0 = time.perf_counter()
    result = getattr(m, f"{name}_forward")(*args, **kwargs)
    t1 = time.perf_counter()
    getattr(m, f"{name}_backward")(dout, result[n_out])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def time_ops(rounds=7, steps=3, log=print) -> list:
    """[{op, reference/fast forward and backward medians (s), ratio}] for every op with a fast twin."""
    rng = np.random.default_rng(0)
    rows = []
    with parallel.blas_threads(1):
        for what, module, name, args, kwargs, n_out in _cases(rng):
            first = getattr(getattr(ops, module), f"{name}_forward")(*args, **kwargs)[0]
            dout = rng.standard_normal(first.shape).astype(np.float32)
            times = {"reference": [], "fast": []}
            for package in (ops, fast):                                       # warm-up
                _time_pair(package, module, name, args, kwargs, n_out, dout)
            for _ in range(rounds):
                for side, package in (("reference", ops), ("fast", fast)):
                    times[side] += [_time_pair(package, module, name, args, kwargs, n_out, dout)
                                    for _ in range(steps)]
            row = {"op": what}
            for side, ts in times.items():
                row[f"{side}_forward_s"] = statistics.median(t[0] for t in ts)
                row[f"{side}_backward_s"] = statistics.median(t[1] for t in ts)
                row[f"{side}_total_s"] = statistics.median(t[0] + t[1] for t in ts)
            row["ratio"] = row["reference_total_s"] / row["fast_total_s"]
            rows.append(row)
            log(f"  {what:<32} reference {1e3 * row['reference_total_s']:8.2f} ms   "
                f"fast {1e3 * row['fast_total_s']:8.2f} ms   {row['ratio']:.2f}×")
    return rows


def run_ops(args, machine, log) -> int:
    """The ``bench --ops`` command: print the per-op table (and write it as JSON, or into docs/performance.md)."""
    if args.write_table:
        table_file(args.write_table)                        # checked before the minutes of timing, not after
    log(f"[ops] base28 activations: B={B}, T={T}, D={D}, k={HEADS}, M={M}, float32; BLAS 1 thread; "
        f"{args.rounds} rounds, reference and fast alternating")
    rows = time_ops(rounds=args.rounds, steps=args.steps or 3, log=log)
    head = f"{'op (forward + backward)':<32} {'reference ms':>12} {'fast ms':>9} {'gain':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['op']:<32} {1e3 * r['reference_total_s']:>12.2f} {1e3 * r['fast_total_s']:>9.2f} "
              f"{r['ratio']:>5.2f}×")
    print(f"gain = reference time / fast time (medians); CPU: {machine['cpu']}")
    if args.json:
        write_text(args.json, json.dumps({"machine": machine, "ops": rows}, indent=1, default=float))
    if args.write_table:
        write_table(args.write_table, rows, machine, args.rounds)
        print(f"table written to {args.write_table}")
    return 0


def markdown_table(rows, machine, rounds, date=None) -> str:
    """The per-op gains as the Markdown table of docs/performance.md, headed by the machine and the date."""
    import datetime
    date = date or datetime.date.today().isoformat()
    lines = [f"Measured {date} by `python -m vitnp bench --ops --write-table` ({rounds} rounds, reference and fast "
             f"alternating, medians; base28 activations B={B}, T={T}, D={D}, k={HEADS}, M={M}, float32; BLAS 1 thread) "
             f"on {machine.get('cpu', '?')}, {_blas(machine)}.", "",
             "| op (forward + backward) | reference ms | fast ms | gain |", "|---|---|---|---|"]
    lines += [f"| {r['op']} | {1e3 * r['reference_total_s']:.2f} | {1e3 * r['fast_total_s']:.2f} | {r['ratio']:.2f}× |"
              for r in rows]
    return "\n".join(lines)


def _blas(machine) -> str:
    blas = machine.get("blas") or {}
    return f"BLAS {blas.get('library', '?')} {blas.get('version', '?')} (kernel {blas.get('kernel', '?')})"


def table_file(path) -> str:
    """The text of ``path``, checked to hold the marker lines (ValueError naming what is missing)."""
    from pathlib import Path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"--write-table {path}: cannot read it ({err.strerror or err})") from None
    if text.count(TABLE_BEGIN) != 1 or text.count(TABLE_END) != 1 or text.index(TABLE_BEGIN) > text.index(TABLE_END):
        raise ValueError(f"--write-table {path}: expected one line {TABLE_BEGIN!r} and, after it, one {TABLE_END!r}")
    return text


def write_table(path, rows, machine, rounds) -> None:
    """Replace the table between TABLE_BEGIN and TABLE_END of ``path`` (temporary file, then rename)."""
    head, rest = table_file(path).split(TABLE_BEGIN)
    _, tail = rest.split(TABLE_END)
    write_text(path, head + TABLE_BEGIN + "\n" + markdown_table(rows, machine, rounds) + "\n" + TABLE_END + tail)
