"""The grader's checks: for each exercise, programs for the check process and what the answers must be.

Everything here runs in the grader's process, on the grader's own reference (the installed :mod:`vitnp`); the
copy being graded is never imported here.  A :class:`Case` holds

- a program (:mod:`vitnp.course.protocol`) for the check process, which runs it on the copy;
- its input arrays, drawn for this grading run from a seed (new for every run unless ``--seed`` repeats one,
  so answers cannot be looked up beforehand);
- what each array the copy returns is compared with: a **gradient** (a backward's result, against centred
  differences of the reference *forward*, float64, the tolerances of :mod:`vitnp.gradcheck`) or a **value**
  (a forward's result or a loss, against what the reference computes on the same inputs).

:func:`verdict` compares, and words the first failing check so that a student can act on it
(``dgamma relative error 3.1e-01 > 1e-07 (dx and dbeta are right)``).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..gradcheck import MODEL_TOL, OP_TOL, numerical_gradient, rel_error
from ..selfcheck import hybrid_tiny_config, random_block_params, tiny_config
from . import protocol
from .exercises import BY_ID

VALUE_TOL = 1e-10            # relative error of a forward's output or a loss against the reference's
MODEL_CHECKS = 16            # entries per parameter checked by centred differences in a whole-model case
PACKAGE = "vitnp"            # the grader's reference: the installed package


@dataclasses.dataclass
class Case:
    """One check of one exercise: ``program`` run on the copy with ``arrays``; ``grads`` maps an output key
    to the input it is the gradient of; ``values`` lists output keys compared with the reference's."""

    name: str
    program: dict
    arrays: dict
    grads: dict = dataclasses.field(default_factory=dict)
    values: tuple = ()
    tol: float = OP_TOL
    max_checks: int | None = None
    scalar: str | None = None         # for a 'call' with grads: the output key of the scalar they differentiate


# ---- building cases -------------------------------------------------------------------------------------------
def _refs(inputs: dict, prefix="") -> tuple:
    """(REFS for the program, {flat name: array}) of nested inputs: arrays, dicts of arrays, or plain values
    wrapped as ('v', value), ('rng', seed), ('cfg', fields)."""
    refs, flat = {}, {}
    for k, v in inputs.items():
        name = f"{prefix}{k}"
        if isinstance(v, np.ndarray):
            refs[k], flat[name] = {"a": name}, v
        elif isinstance(v, dict):
            inner, arrays = _refs(v, name + "/")
            refs[k] = {"d": inner}
            flat.update(arrays)
        else:
            kind, value = v
            refs[k] = {kind: value}
    return refs, flat


def pair(name, forward, backward, inputs, grads, *, tol=OP_TOL, max_checks=None, backward_kwargs=None, rng):
    """A forward/backward gradient check: the copy's backward against centred differences of the reference's
    forward, with a random upstream gradient ``dout``.  ``grads`` lists, in the order the backward returns
    them, the inputs it differentiates (a list for a tuple, a single name for a bare array, a dict
    {returned key: input} inside a returned dict)."""
    refs, arrays = _refs(inputs)
    program = {"forward": forward, "backward": backward, "kwargs": refs, "backward_kwargs": backward_kwargs or {}}
    out = protocol.invoke(program, arrays, PACKAGE)[0]
    arrays["dout"] = rng.standard_normal(np.shape(out))
    keys = {}
    if isinstance(grads, str):
        keys["grad"] = grads
    elif isinstance(grads, dict):
        keys.update({f"grad/{k}": v for k, v in grads.items()})
    else:
        for i, g in enumerate(grads):
            if isinstance(g, dict):
                keys.update({f"grad/{i}/{k}": v for k, v in g.items()})
            else:
                keys[f"grad/{i}"] = g
    return Case(name, program, arrays, grads=keys, values=("out",), tol=tol, max_checks=max_checks)


def call(name, fn, inputs, *, values=(), grads=None, scalar=None, send=None, tol=OP_TOL):
    refs, arrays = _refs(inputs)
    program = {"call": fn, "kwargs": refs}
    if send:
        program["send"] = list(send)
    return Case(name, program, arrays, grads=grads or {}, values=tuple(values), tol=tol, scalar=scalar)


TINY = tiny_config().to_dict()              # the gradient-check suite's tiny models, as JSON-able fields
HYBRID = hybrid_tiny_config().to_dict()


def _model(rng, fields):
    """(cfg fields, params, images) of a tiny float64 model with random parameters (γ ≠ 1, a non-zero head)."""
    from ..config import param_shapes
    cfg = protocol.resolve({"cfg": fields}, {}, PACKAGE)                   # as the check process builds it
    params = {k: 0.5 * rng.standard_normal(s) for k, s in param_shapes(cfg).items()}
    for k in params:
        if k.endswith("gamma"):
            params[k] += 1.0
    return cfg, params, rng.standard_normal((3, *cfg.hw, cfg.in_channels))


def _mask(T):
    return np.tril(np.ones((T, T), dtype=bool))


def _exercise_cases(eid: str, rng) -> list:
    r = lambda *shape: rng.standard_normal(shape)
    seed = lambda: ("rng", int(rng.integers(2 ** 31)))
    if eid == "patchify-backward":
        return [pair("patchify", "ops.patches:patchify_forward", "ops.patches:patchify_backward",
                     {"x": r(2, 6, 4, 3), "P": ("v", 2)}, "x", rng=rng)]
    if eid == "linear-backward":
        return [pair("linear", "ops.linear:linear_forward", "ops.linear:linear_backward",
                     {"x": r(2, 3, 5), "W": r(5, 4), "b": r(4)}, ["x", "W", "b"], rng=rng)]
    if eid == "class-token-backward":
        return [pair("class token", "ops.tokens:class_token_forward", "ops.tokens:class_token_backward",
                     {"x": r(2, 3, 4), "x_class": r(4)}, ["x", "x_class"], rng=rng)]
    if eid == "pos-embed-backward":
        return [pair("position embedding", "ops.posemb:pos_embed_forward", "ops.posemb:pos_embed_backward",
                     {"z": r(2, 4, 5), "E_pos": r(4, 5)}, ["z", "E_pos"], rng=rng)]
    if eid == "readout-backward":
        return [pair(f"readout {mode}", "ops.tokens:readout_forward", "ops.tokens:readout_backward",
                     {"z": r(2, 4, 5), "mode": ("v", mode)}, "z", rng=rng) for mode in ("token", "gap")]
    if eid == "layernorm-backward":
        return [pair("layernorm", "ops.layernorm:layernorm_forward", "ops.layernorm:layernorm_backward",
                     {"x": r(2, 3, 6) * 2.0 + 1.0, "gamma": r(6), "beta": r(6), "eps": ("v", 1e-6)},
                     ["x", "gamma", "beta"], rng=rng)]
    if eid == "softmax-backward":
        return [pair("softmax, last axis", "ops.softmax:softmax_forward", "ops.softmax:softmax_backward",
                     {"x": r(2, 3, 5) * 3.0}, "x", rng=rng),
                pair("softmax, axis 0", "ops.softmax:softmax_forward", "ops.softmax:softmax_backward",
                     {"x": r(4, 3), "axis": ("v", 0)}, "x", rng=rng)]
    if eid == "attention-backward":
        qkv = lambda: {"q": r(2, 2, 5, 3), "k": r(2, 2, 5, 3), "v": r(2, 2, 5, 3)}
        fb = ("ops.attention:attention_forward", "ops.attention:attention_backward")
        return [pair("attention", *fb, qkv(), ["q", "k", "v"], rng=rng),
                pair("attention, causal mask", *fb, {**qkv(), "mask": _mask(5)}, ["q", "k", "v"], rng=rng),
                pair("attention, dropout", *fb, {**qkv(), "dropout": ("v", 0.3), "rng": seed(), "train": ("v", True)},
                     ["q", "k", "v"], rng=rng)]
    if eid == "msa-backward":
        msa = lambda: {"z": r(2, 5, 6), "U_qkv": r(6, 18), "U_qkv_bias": r(18), "U_msa": r(6, 6), "U_msa_bias": r(6)}
        fb = ("ops.attention:msa_forward", "ops.attention:msa_backward")
        names = ["z", "U_qkv", "U_qkv_bias", "U_msa", "U_msa_bias"]
        return [pair("msa, 2 heads", *fb, {**msa(), "heads": ("v", 2)}, names, rng=rng),
                pair("msa, 3 heads, causal mask", *fb, {**msa(), "heads": ("v", 3), "mask": _mask(5)}, names, rng=rng)]
    if eid in ("gelu-exact-derivative", "gelu-tanh-derivative"):
        form = eid.split("-")[1]
        return [pair(f"gelu {form}", "ops.gelu:gelu_forward", "ops.gelu:gelu_backward",
                     {"x": r(4, 6) * 2.0, "approximate": ("v", form)}, "x", rng=rng)]
    if eid == "mlp-backward":
        mlp = lambda: {"x": r(2, 3, 4), "W1": r(4, 7), "b1": r(7), "W2": r(7, 4), "b2": r(4)}
        fb = ("ops.mlp:mlp_forward", "ops.mlp:mlp_backward")
        names = ["x", "W1", "b1", "W2", "b2"]
        return [pair("mlp, exact GELU", *fb, {**mlp(), "gelu": ("v", "exact")}, names, rng=rng),
                pair("mlp, tanh GELU, dropout", *fb, {**mlp(), "gelu": ("v", "tanh"), "dropout": ("v", 0.3),
                                                       "rng": seed(), "train": ("v", True)}, names, rng=rng)]
    if eid == "encoder-block-backward":
        fb = ("ops.block:encoder_block_forward", "ops.block:encoder_block_backward")

        def block(name, **kw):
            p = random_block_params(rng, 6, 10)
            inputs = {"z": r(2, 4, 6), "p": p, "heads": ("v", 2), **kw}
            return pair(name, *fb, inputs, ["z", {k: f"p/{k}" for k in p}], tol=MODEL_TOL, rng=rng)
        return [block("encoder block"),
                block("encoder block, causal mask, tanh GELU", mask=_mask(4), gelu=("v", "tanh")),
                block("encoder block, dropout", dropout=("v", 0.2), attention_dropout=("v", 0.2), rng=seed(),
                      train=("v", True))]
    if eid == "cross-entropy":
        return [call(f"cross-entropy, smoothing {s}", "ops.loss:softmax_cross_entropy",
                     {"logits": r(6, 5) * 3.0, "labels": rng.integers(0, 5, 6), "smoothing": ("v", s)},
                     values=("ret/0",), grads={"ret/1": "logits"}, scalar="ret/0") for s in (0.0, 0.1)]
    if eid == "embed-forward":
        def embed(name, fields, train=False):
            cfg, params, x = _model(rng, fields)
            return call(name, "model:embed_forward", {"params": params, "x": x, "cfg": ("cfg", fields),
                                                      "train": ("v", train), "rng": seed()},
                        values=("ret/0",), send=("ret/0",), tol=VALUE_TOL)
        return [embed("z0, class token, learned E_pos", TINY),
                embed("z0, hybrid stem", HYBRID),
                embed("z0, average pooling, sine-cosine E_pos", dict(TINY, classifier="gap", pos_embedding="sincos")),
                embed("z0, no E_pos, dropout", dict(TINY, pos_embedding="none", dropout=0.3), train=True)]
    if eid == "head-forward":
        def head(mode):
            fields = dict(TINY, classifier=mode)
            cfg, params, _ = _model(rng, fields)
            return call(f"logits from z_L, {mode}", "model:head_forward",
                        {"params": params, "z": r(3, cfg.num_tokens, cfg.dim), "cfg": ("cfg", fields)},
                        values=("ret/0",), send=("ret/0",), tol=VALUE_TOL)
        return [head("token"), head("gap")]
    if eid == "vit-forward":
        def logits(name, fields, train=False, mask=False):
            cfg, params, x = _model(rng, fields)
            inputs = {"params": params, "x": x, "cfg": ("cfg", fields), "train": ("v", train), "rng": seed()}
            if mask:
                inputs["attn_mask"] = _mask(cfg.num_tokens)
            depth = cfg.depth
            keys = ("ret/0",) + tuple(f"ret/1/attention/{l}" for l in range(depth))
            return call(name, "model:vit_forward", inputs, values=keys, send=("ret/0", "ret/1/attention"),
                        tol=VALUE_TOL)

        def grads(name, fields, mask=False):
            cfg, params, x = _model(rng, fields)
            inputs = {"params": params, "x": x, "cfg": ("cfg", fields)}
            if mask:
                inputs["attn_mask"] = _mask(cfg.num_tokens)
            return pair(name, "model:vit_forward", "model:vit_backward", inputs, {k: f"params/{k}" for k in params},
                        tol=MODEL_TOL, max_checks=MODEL_CHECKS, rng=rng)
        gap = dict(TINY, classifier="gap", pos_embedding="sincos", gelu="tanh")
        return [logits("logits and attention", TINY),
                logits("logits, average pooling, sine-cosine, tanh GELU", gap),
                logits("logits, hybrid stem", HYBRID),
                logits("logits, causal mask", TINY, mask=True),
                logits("logits, dropout", dict(TINY, dropout=0.2, attention_dropout=0.1), train=True),
                grads("gradients through your forward's cache", TINY),
                grads("gradients, average pooling, sine-cosine, tanh GELU", gap),
                grads("gradients, causal mask", TINY, mask=True)]
    raise KeyError(f"no checks for exercise {eid!r}")


# Exercises whose checks run an exercise function as the reference (a value compared with the code under test, or a
# gradient taken of it): the forwards and the loss.  Only the instructor's tree can grade them; tests/test_course.py
# proves this set equal to what the cases do.
SELF_REFERENTIAL = frozenset({"cross-entropy", "embed-forward", "head-forward", "vit-forward"})


def self_referential(exercise) -> bool:
    """Would grading ``exercise`` need the model answer of an exercise as its reference?"""
    return exercise.id in SELF_REFERENTIAL


def referenced_exercises(eid: str) -> set:
    """The exercise functions the cases of ``eid`` run as their reference (computed from the cases)."""
    exercise_functions = {e.module for e in BY_ID.values()}
    return {f for c in cases(eid, 0) for f in (c.program.get("call"), c.program.get("forward"))
            if f in exercise_functions}


def cases(eid: str, seed: int) -> list:
    """The cases of exercise ``eid`` for the grading run ``seed`` (same seed, same inputs)."""
    if eid not in BY_ID:
        raise KeyError(f"unknown exercise {eid!r}")
    index = list(BY_ID).index(eid)
    return _exercise_cases(eid, np.random.default_rng([seed, index]))


# ---- what the answers must be, and the verdict ----------------------------------------------------------------
def expected(case: Case) -> dict:
    """{output key: array it must equal} computed by the grader's reference: values from the reference's own
    call; gradients by centred differences of the reference's forward (entries not checked stay NaN)."""
    want = {}
    if case.values:
        if "call" in case.program:
            sent, _ = protocol.run({**case.program, "send": list(case.values)}, case.arrays, PACKAGE)
        else:
            sent = {"out": protocol.invoke(case.program, case.arrays, PACKAGE)[0]}
        for key in case.values:
            want[key] = np.asarray(sent[key], dtype=np.float64)
    if case.grads:
        if "forward" in case.program:
            dout = case.arrays["dout"]
            scalar = lambda: float(np.sum(protocol.invoke(case.program, case.arrays, PACKAGE)[0] * dout))
        else:
            index = int(case.scalar.split("/")[1])
            scalar = lambda: float(protocol.invoke(case.program, case.arrays, PACKAGE)[index])
        pick = np.random.default_rng(len(want))
        for key, name in case.grads.items():
            x = case.arrays[name]
            idx = None
            if case.max_checks is not None and x.size > case.max_checks:
                idx = np.sort(pick.choice(x.size, size=case.max_checks, replace=False))
            want[key] = numerical_gradient(scalar, x, indices=idx)
    return want


def display(case: Case, key: str) -> str:
    """What a student calls an output: dgamma, dx, z0 …"""
    if key in case.grads:
        return "d" + case.grads[key].split("/")[-1]
    return {"out": "the forward's output", "ret/0": "the first result", "ret": "the result"}.get(key, key)


def _first_bad(a: np.ndarray) -> str:
    bad = ~np.isfinite(a)
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    kind = "NaN" if np.isnan(a[where]) else "infinite"
    return f"is {kind} at index {where} (first of {int(bad.sum())} non-finite entries)"


def verdict(case: Case, want: dict, got: dict, notes: dict) -> str | None:
    """None when every output the case checks is right, else the first problem in words."""
    problems, right = [], []
    for key, target in want.items():
        name = display(case, key)
        if key not in got:
            why = notes.get(key) or next((f"{k} is {v}" for k, v in notes.items() if k.startswith(key + "/")), None)
            problems.append(f"{name} is missing" + (f" ({why})" if why else " (nothing was returned for it)"))
            continue
        a = got[key]
        if a.shape != target.shape:
            of = case.grads.get(key)
            problems.append(f"{name} has shape {a.shape} but {of.split('/')[-1]} has {target.shape}" if of
                            else f"{name} has shape {a.shape}, expected {target.shape}")
            continue
        if a.dtype.kind not in "fiub":
            problems.append(f"{name} has dtype {a.dtype}, not a number type")
            continue
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            problems.append(f"{name} {_first_bad(a)}")
            continue
        checked = ~np.isnan(target)
        err = rel_error(a[checked], target[checked]) if checked.any() else math.inf
        tol = case.tol if key in case.grads else VALUE_TOL
        if not err <= tol:
            problems.append(f"{name} relative error {err:.1e} > {tol:.0e}")
        elif key in case.grads or not case.grads:
            right.append(name)
    if not problems:
        return None
    text = problems[0]
    if len(problems) > 1:
        text += f"; also {len(problems) - 1} more ({', '.join(p.split(' ')[0] for p in problems[1:])})"
    if right:
        text += f" ({_and(right)} {'is' if len(right) == 1 else 'are'} right)"
    return text


def _and(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
