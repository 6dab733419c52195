"""Optimisers, the learning-rate schedule and gradient clipping that train vitnp.

Parameters are the model's plain dict ``{name: ndarray}``; gradients a dict with the same keys and shapes.
``step`` updates the parameter arrays **in place**.  The update rules are those of ``torch.optim.SGD`` and
``torch.optim.AdamW`` (the tests compare 10 steps of each with PyTorch), written with ``out=`` and in-place
ufuncs: a step allocates nothing proportional to the model, and float32 stays float32 because every
coefficient is a Python float (``np.float64(c) * float32_array`` would upcast).

Weight decay touches only weight matrices; :func:`decays` says which arrays those are.

``state_dict()`` is a flat dict of plain arrays, so ``np.savez(path, **opt.state_dict())`` saves it and
``opt.load_state_dict(np.load(path, allow_pickle=False))`` restores it bit for bit:

==================  =====================================================================
key                 value
==================  =====================================================================
``m/<name>``        first-moment (AdamW) or momentum (SGD) buffer, shape/dtype of the param
``v/<name>``        second-moment buffer (AdamW only)
``step``            0-d int64, number of steps taken
``lr``, ``eps`` …   hyper-parameters as 0-d arrays (they are restored too)
==================  =====================================================================
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["decays", "SGD", "AdamW", "warmup_cosine", "grad_norm", "clip_grad_norm"]


def decays(name: str, array: np.ndarray) -> bool:
    """True iff weight decay applies to this parameter: ``array.ndim >= 2 and name != "E_pos"``.

    The rule is "kernels decay, nothing else does": every weight that multiplies an input is at least 2-D,
    every bias, scale and token vector is 1-D, and E_pos is the one 2-D array that is not a kernel.

    ============================================  =========  ==========================================
    parameter                                     decays     why
    ============================================  =========  ==========================================
    ViT: E, U_qkv, U_msa, mlp.W1, mlp.W2, head.W  yes        kernels (2-D)
    ViT: E_bias, the other biases, LN γ/β,        no         1-D
    x_class
    ViT: E_pos                                    no         2-D, but an embedding added to the tokens,
                                                             not a weight that multiplies an input
    CNN (:mod:`vitnp.cnn`): conv{i}.W, head.W     yes        kernels, (k, k, C_in, C_out) and (F, K)
    CNN: conv{i}.b, head.b                        no         1-D biases
    hybrid ViT stem: stem.{i}.W / stem.{i}.b      yes / no   conv kernels (4-D) / biases (1-D)
    ============================================  =========  ==========================================

    To give torch the same split, build two param groups with ``weight_decay=wd`` and ``0.0``.
    """
    return np.ndim(array) >= 2 and name != "E_pos"


class _Optimizer:
    """Bookkeeping shared by SGD and AdamW: state buffers, scratch space, the state_dict round trip.

    A subclass names its per-parameter buffers in ``buffers`` and its hyper-parameters in ``hyper``, and
    implements ``_set_hyper(**values)`` (validate, then store as Python scalars) and ``step``.
    """

    buffers: tuple[str, ...] = ()
    hyper: tuple[str, ...] = ()

    def __init__(self, params: dict, n_scratch: int):
        if not params:
            raise ValueError("params is empty")
        for name, p in params.items():
            if not (isinstance(p, np.ndarray) and np.issubdtype(p.dtype, np.floating)):
                raise ValueError(f"param {name!r} must be a floating-point ndarray, "
                                 f"got {type(p).__name__} {getattr(p, 'dtype', '')}")
        self._shape = {name: p.shape for name, p in params.items()}
        self._dtype = {name: p.dtype for name, p in params.items()}
        self._decay = {name: decays(name, p) for name, p in params.items()}
        self.state = {b: {name: np.zeros_like(p) for name, p in params.items()} for b in self.buffers}
        self.step_count = 0
        self._scratch = [_scratch_views(params) for _ in range(n_scratch)]

    def _begin_step(self, params: dict, grads: dict, lr) -> float:
        """Check params/grads against the arrays we were built for, count the step, return the lr."""
        for what, d in (("params", params), ("grads", grads)):
            if d.keys() != self._shape.keys():
                missing, extra = self._shape.keys() - d.keys(), d.keys() - self._shape.keys()
                raise ValueError(f"{what} keys differ from the optimiser's: missing {_few(missing)}, "
                                 f"unexpected {_few(extra)}")
        for name, shape in self._shape.items():
            p, g = params[name], grads[name]
            if p.shape != shape or g.shape != shape or p.dtype != self._dtype[name]:
                raise ValueError(f"{name!r}: expected a {self._dtype[name]} param {shape}, got a {p.dtype} "
                                 f"param {p.shape} and grad {g.shape}")
        lr = self.lr if lr is None else float(lr)
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr!r}")
        self.step_count += 1
        return lr

    def state_dict(self) -> dict:
        """Flat ``{key: ndarray}`` (copies), keys as in the module docstring; ready for ``np.savez``."""
        d = {f"{b}/{name}": buf.copy() for b, bufs in self.state.items() for name, buf in bufs.items()}
        d["step"] = np.array(self.step_count, dtype=np.int64)
        for h in self.hyper:
            d[h] = np.array(getattr(self, h))          # 0-d float64, or 0-d bool for nesterov
        return d

    def load_state_dict(self, d) -> None:
        """Restore buffers, step and hyper-parameters from ``d`` (a dict or an ``np.load`` NpzFile).

        Everything is checked before anything is changed; a missing, unknown, mis-shaped or mis-typed
        entry raises ValueError and leaves the optimiser as it was.
        """
        expected = {f"{b}/{name}" for b in self.buffers for name in self._shape} | {"step", *self.hyper}
        keys = set(d.keys())
        if keys != expected:
            raise ValueError(f"state dict keys do not match this {type(self).__name__}: missing "
                             f"{_few(expected - keys)}, unknown {_few(keys - expected)}")
        arrays = {}
        for b in self.buffers:
            for name, shape in self._shape.items():
                key = f"{b}/{name}"
                a = np.asarray(d[key])
                if a.shape != shape or a.dtype != self._dtype[name]:
                    raise ValueError(f"state {key!r}: expected {self._dtype[name]} {shape}, "
                                     f"got {a.dtype} {a.shape}")
                arrays[key] = a
        step = np.asarray(d["step"])
        if step.ndim != 0 or not np.issubdtype(step.dtype, np.integer) or step < 0:
            raise ValueError(f"state 'step' must be a 0-d non-negative integer array, got {step!r}")
        values = {}
        for h in self.hyper:
            a = np.asarray(d[h])
            want_bool = isinstance(getattr(self, h), bool)
            if a.ndim != 0 or (a.dtype.kind == "b") != want_bool or a.dtype.kind not in "biuf":
                raise ValueError(f"state {h!r} must be a 0-d {'bool' if want_bool else 'real'} array, "
                                 f"got {a!r}")
            values[h] = a.item()
        self._set_hyper(**values)                      # validates ranges too
        for b in self.buffers:
            for name, buf in self.state[b].items():
                np.copyto(buf, arrays[f"{b}/{name}"])
        self.step_count = int(step)


class SGD(_Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum and L2 weight decay, as ``torch.optim.SGD``.

    For each parameter θ with gradient g (λ = weight_decay only where :func:`decays`, else 0):

    .. math::
        g &\\leftarrow g + \\lambda\\theta \\\\
        b &\\leftarrow \\mu b + g \\qquad (b_0 = 0,\\ \\text{so } b_1 = g \\text{ as torch's first step}) \\\\
        \\theta &\\leftarrow \\theta - \\eta\\,(g + \\mu b \\text{ if nesterov else } b)

    Parameters
    ----------
    params : dict[str, ndarray]   the arrays to optimise (fixes names, shapes, dtypes, the decay split).
    lr : float                    η, used when ``step`` is called without ``lr``.
    momentum : float              μ; 0 gives plain SGD.
    weight_decay : float          λ (coupled: added to the gradient).
    nesterov : bool               needs momentum > 0.
    """

    buffers = ("m",)
    hyper = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(self, params: dict, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False):
        self._set_hyper(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, n_scratch=2)

    def _set_hyper(self, lr, momentum, weight_decay, nesterov):
        lr, momentum, weight_decay = float(lr), float(momentum), float(weight_decay)
        if not (lr >= 0.0 and momentum >= 0.0 and weight_decay >= 0.0):
            raise ValueError(f"lr, momentum, weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov momentum needs momentum > 0")
        self.lr, self.momentum, self.weight_decay, self.nesterov = lr, momentum, weight_decay, bool(nesterov)

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params`` in place from ``grads`` (left untouched); ``lr`` overrides η for this step."""
        lr = self._begin_step(params, grads, lr)
        mu, wd = self.momentum, self.weight_decay
        s, t = self._scratch
        for name, b in self.state["m"].items():
            p, g = params[name], grads[name]
            if wd and self._decay[name]:
                g = np.add(g, np.multiply(p, wd, out=s[name]), out=s[name])   # g + λθ
            b *= mu
            b += g                                                            # b = μb + g
            if self.nesterov:
                d = np.add(g, np.multiply(b, mu, out=t[name]), out=t[name])   # g + μb
            else:
                d = b
            p -= np.multiply(d, lr, out=t[name])                              # θ -= η d


class AdamW(_Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``.

    At step t (from 1), for each parameter θ with gradient g (λ = weight_decay only where :func:`decays`):

    .. math::
        \\theta &\\leftarrow \\theta\\,(1 - \\eta\\lambda) \\\\
        m &\\leftarrow \\beta_1 m + (1-\\beta_1)\\, g, \\qquad v \\leftarrow \\beta_2 v + (1-\\beta_2)\\, g^2 \\\\
        \\theta &\\leftarrow \\theta - \\frac{\\eta}{1-\\beta_1^t}\\;
                  \\frac{m}{\\sqrt{v}/\\sqrt{1-\\beta_2^t} + \\epsilon}

    (ε is added after the square root of the bias-corrected v, as torch does.)

    Parameters
    ----------
    params : dict[str, ndarray]   the arrays to optimise (fixes names, shapes, dtypes, the decay split).
    lr : float                    η, used when ``step`` is called without ``lr``.
    betas : (float, float)        β₁, β₂ in [0, 1).
    eps : float                   ε.
    weight_decay : float          λ (decoupled: θ shrinks by ηλθ, independent of the gradient).
    """

    buffers = ("m", "v")
    hyper = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, params: dict, lr: float, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        beta1, beta2 = betas
        self._set_hyper(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)
        super().__init__(params, n_scratch=1)

    def _set_hyper(self, lr, beta1, beta2, eps, weight_decay):
        lr, beta1, beta2, eps, weight_decay = map(float, (lr, beta1, beta2, eps, weight_decay))
        if not (lr >= 0.0 and eps >= 0.0 and weight_decay >= 0.0):
            raise ValueError(f"lr, eps, weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got ({beta1}, {beta2})")
        self.lr, self.beta1, self.beta2, self.eps, self.weight_decay = lr, beta1, beta2, eps, weight_decay

    @property
    def betas(self) -> tuple:
        return self.beta1, self.beta2

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params`` in place from ``grads`` (left untouched); ``lr`` overrides η for this step."""
        lr = self._begin_step(params, grads, lr)
        b1, b2, eps, wd, t = self.beta1, self.beta2, self.eps, self.weight_decay, self.step_count
        step_size = lr / (1.0 - b1 ** t)             # η / (1 − β₁ᵗ)
        bc2_sqrt = (1.0 - b2 ** t) ** 0.5            # √(1 − β₂ᵗ)
        (scratch,) = self._scratch
        for name, m in self.state["m"].items():
            v, p, g, s = self.state["v"][name], params[name], grads[name], scratch[name]
            if wd and self._decay[name]:
                p *= 1.0 - lr * wd                   # θ(1 − ηλ)
            m += np.multiply(np.subtract(g, m, out=s), 1.0 - b1, out=s)    # m + (1−β₁)(g − m), torch's lerp
            v *= b2
            v += np.multiply(np.square(g, out=s), 1.0 - b2, out=s)         # β₂v + (1−β₂)g²
            np.sqrt(v, out=s)
            s /= bc2_sqrt
            s += eps                                 # √v̂ + ε
            np.divide(m, s, out=s)
            s *= step_size
            p -= s                                   # θ − η m̂ / (√v̂ + ε)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  final_lr: float = 0.0) -> float:
    """Learning rate for optimiser step ``step`` (0-based): linear warm-up, then cosine decay.

    With s = step, S = total_steps, W = warmup_steps, η₀ = base_lr, η_f = final_lr:

    .. math::
        \\eta(s) = \\begin{cases}
            \\eta_0\\,(s+1)/W & 0 \\le s < W \\\\
            \\eta_f + \\tfrac12(\\eta_0-\\eta_f)\\,\\bigl(1 + \\cos(\\pi\\,(s-W)/(S-W))\\bigr) & W \\le s < S \\\\
            \\eta_f & s \\ge S
        \\end{cases}

    so step 0 gets η₀/W, steps W−1 and W get η₀, and the cosine reaches η_f at s = S (the last step of an
    S-step run, s = S−1, is just above η_f).  W = 0 means no warm-up.  This is the lr torch uses for its
    k-th ``optimizer.step()`` under ``LambdaLR(opt, lambda k: warmup_cosine(k, S, W, η₀, η_f) / η₀)``
    with ``scheduler.step()`` after every optimiser step.
    """
    if not 0 <= warmup_steps <= total_steps or total_steps <= 0:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps > 0, "
                         f"got warmup_steps={warmup_steps}, total_steps={total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    base_lr, final_lr = float(base_lr), float(final_lr)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return final_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)           # in [0, 1)
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


def grad_norm(grads: dict) -> float:
    """The global gradient norm ‖g‖ = √(Σ_k ‖g_k‖²) over all the arrays of ``grads``, as a Python float
    (inf or nan if any entry is)."""
    return math.sqrt(sum(_sum_squares(g) for g in grads.values()))


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Global-norm gradient clipping in place, as ``torch.nn.utils.clip_grad_norm_``; returns the norm.

    .. math::
        \\|g\\| = \\sqrt{\\textstyle\\sum_k \\|g_k\\|_2^2}, \\qquad
        g_k \\leftarrow g_k \\cdot \\frac{\\text{max\\_norm}}{\\|g\\| + 10^{-6}}
        \\quad\\text{if that factor is} < 1

    The returned value is ‖g‖ before clipping.  A non-finite norm is returned as is, grads untouched.
    """
    max_norm = float(max_norm)
    if not max_norm > 0.0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    total = grad_norm(grads)
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total


def _sum_squares(a: np.ndarray, chunk: int = 1 << 14) -> float:
    """Σ a² as a Python float.  One BLAS dot over 2M float32 entries is off by ~1e-5 relative; dots over
    16k-entry chunks summed in float64 are good to ~1e-8 and allocate nothing."""
    flat = a.reshape(-1)
    return sum(float(np.dot(flat[i:i + chunk], flat[i:i + chunk])) for i in range(0, flat.size, chunk))


def _scratch_views(params: dict) -> dict:
    """Name → an uninitialised array of that param's shape and dtype, all views of one flat buffer per
    dtype as long as the largest param.  Reused every step, by every param in turn."""
    sizes = {}
    for p in params.values():
        sizes[p.dtype] = max(sizes.get(p.dtype, 0), p.size)
    flat = {dtype: np.empty(n, dtype) for dtype, n in sizes.items()}
    return {name: flat[p.dtype][:p.size].reshape(p.shape) for name, p in params.items()}


def _few(names, k: int = 5) -> str:
    names = sorted(names)
    return "[" + ", ".join(map(repr, names[:k])) + (", …" if len(names) > k else "") + "]"
