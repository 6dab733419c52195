"""Known answers: what the reference computes on fixed inputs, for the exercises a gradient check cannot grade.

A forward (Eq 1, Eq 4, the whole model) has no gradient to check, and a loss that is wrong by a constant
still has the right gradient; these are compared with the numbers the instructor's reference produced,
stored in ``answers.npz`` beside this module (plain float64 arrays, read with ``allow_pickle=False``).
``python -m vitnp course answers`` writes the file again; ``tests/test_course.py`` checks that the
reference still reproduces it.

Each answer is a function of a vitnp package (the instructor's, or the copy being graded) returning a list of
float64 arrays.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

ANSWERS_FILE = Path(__file__).with_name("answers.npz")
TOL = 1e-10                 # relative error (vitnp.gradcheck.rel_error) allowed against a stored answer


def _model_case(pkg, seed=0, **overrides):
    """(cfg, params, x) of a tiny float64 model with perturbed parameters (γ ≠ 1, a non-zero head)."""
    selfcheck = importlib.import_module(f"{pkg.__name__}.selfcheck")
    model = importlib.import_module(f"{pkg.__name__}.model")
    make = selfcheck.hybrid_tiny_config if overrides.pop("hybrid", False) else selfcheck.tiny_config
    cfg = make(**overrides)
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in model.init_params(cfg, seed).items()}
    x = rng.standard_normal((3, *cfg.hw, cfg.in_channels))
    return model, cfg, params, x


def _cross_entropy(pkg):
    loss = importlib.import_module(f"{pkg.__name__}.ops.loss")
    rng = np.random.default_rng(7)
    logits, labels = 3.0 * rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    return [np.array([loss.softmax_cross_entropy(logits, labels, s)[0] for s in (0.0, 0.1)])]


def _embed(pkg, train=False, **overrides):
    model, cfg, params, x = _model_case(pkg, 1, **overrides)
    return [model.embed_forward(params, x, cfg, train=train, rng=np.random.default_rng(5))[0]]


def _head(pkg, classifier):
    model, cfg, params, _ = _model_case(pkg, 2, classifier=classifier)
    z = np.random.default_rng(3).standard_normal((3, cfg.num_tokens, cfg.dim))
    return [model.head_forward(params, z, cfg)[0]]


def _logits(pkg, train=False, mask=False, **overrides):
    model, cfg, params, x = _model_case(pkg, 4, **overrides)
    attn_mask = np.tril(np.ones((cfg.num_tokens, cfg.num_tokens), dtype=bool)) if mask else None
    logits, cache = model.vit_forward(params, x, cfg, train=train, rng=6, attn_mask=attn_mask)
    return [logits, *cache["attention"]]


ANSWERS = {
    "cross-entropy loss": _cross_entropy,
    "embed": lambda pkg: _embed(pkg),
    "embed hybrid": lambda pkg: _embed(pkg, hybrid=True),
    "embed gap sincos": lambda pkg: _embed(pkg, classifier="gap", pos_embedding="sincos"),
    "embed none, dropout": lambda pkg: _embed(pkg, train=True, pos_embedding="none", dropout=0.3),
    "head token": lambda pkg: _head(pkg, "token"),
    "head gap": lambda pkg: _head(pkg, "gap"),
    "logits": lambda pkg: _logits(pkg),
    "logits gap": lambda pkg: _logits(pkg, classifier="gap", pos_embedding="sincos", gelu="tanh"),
    "logits hybrid": lambda pkg: _logits(pkg, hybrid=True),
    "logits causal mask": lambda pkg: _logits(pkg, mask=True),
    "logits dropout": lambda pkg: _logits(pkg, train=True, dropout=0.2, attention_dropout=0.1),
}


def compute(pkg) -> dict:
    """{'<answer>/<i>': array} for every answer, computed by package ``pkg``."""
    return {f"{name}/{i}": np.asarray(a, dtype=np.float64) for name, fn in ANSWERS.items()
            for i, a in enumerate(fn(pkg))}


def load(path=ANSWERS_FILE) -> dict:
    """The stored answers (a clear error if the file is missing or corrupt)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the known answers ({err}); run `python -m vitnp course answers`") \
            from None


def write(path=ANSWERS_FILE) -> dict:
    """Compute the answers with the installed reference and write them (temporary file, then rename)."""
    import vitnp
    from ..atomic import atomic_write
    answers = compute(vitnp)
    with atomic_write(path, "wb") as f:
        np.savez(f, **answers)
    return answers


def check(pkg, name, stored) -> str | None:
    """None if package ``pkg`` reproduces answer ``name``, else what differs (one line)."""
    from ..gradcheck import rel_error
    got = ANSWERS[name](pkg)
    for i, a in enumerate(got):
        key = f"{name}/{i}"
        want = stored.get(key)
        if want is None:
            return f"{key}: no stored answer"
        a = np.asarray(a)
        if a.shape != want.shape:
            return f"{key}: shape {a.shape}, expected {want.shape}"
        err = rel_error(a, want)
        if not err <= TOL:
            return f"{key}: relative error {err:.1e} > {TOL:.0e} against the known answer"
    if f"{name}/{len(got)}" in stored:
        return f"{name}: {len(got)} arrays, the known answer has more"
    return None
