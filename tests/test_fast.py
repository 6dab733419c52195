"""The fast path equals the reference: every op of :mod:`vitnp.fast` against its twin in :mod:`vitnp.ops`,
and :func:`vitnp.fast.vit_forward` / ``vit_backward`` against the reference model :mod:`vitnp.model`.

The reference is proven by the gradient checks (tests/test_gradcheck.py, float64) and by PyTorch
(tests/test_model_torch.py); this file carries that proof over to the fast twins.  Outputs, attention
weights and every gradient (inputs and parameters) are compared with the relative error
max|a − b| / (max|a| + max|b|) per array:

- float64: ≤ ``F64_TOL`` = 1e-12, so a real difference cannot hide behind rounding;
- float32: ≤ ``F32_TOL`` = 1e-5 (24-bit mantissas; sums over a few thousand terms in another order, as
  sharding and BLAS reductions do, differ by a few 1e-7).

Random configurations cover the hybrid stem, both readouts, all position embeddings, both GELUs, dropout
with a fixed seed, masks, non-square images, sharded and unsharded batches.
"""
import dataclasses

import numpy as np
import pytest

import vitnp
import vitnp.fast.attention
import vitnp.fast.block
import vitnp.fast.erf
import vitnp.fast.gelu
import vitnp.fast.layernorm
import vitnp.fast.linear
import vitnp.fast.softmax
import vitnp.ops.attention
import vitnp.ops.block
import vitnp.ops.erf
import vitnp.ops.gelu
import vitnp.ops.layernorm
import vitnp.ops.linear
import vitnp.ops.softmax
from vitnp import fast, model, ops
from vitnp.fast import parallel
from vitnp.gradcheck import rel_error
from vitnp.ops.loss import softmax_cross_entropy
from vitnp.optim import AdamW

F32_TOL = 1e-5
F64_TOL = 1e-12
TOL = {"float32": F32_TOL, "float64": F64_TOL}
DTYPES = ("float32", "float64")


def _errors(a, b, path="out"):
    """{path: rel_error} over matching (nested) outputs: arrays, tuples/lists, dicts; other values skipped."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype, (path, a.dtype, b.dtype)
        return {path: rel_error(a, b)}
    if isinstance(a, dict):
        assert set(a) == set(b), path
        return {k: e for key in a for k, e in _errors(a[key], b[key], f"{path}.{key}").items()}
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        return {k: e for i, (x, y) in enumerate(zip(a, b)) for k, e in _errors(x, y, f"{path}[{i}]").items()}
    return {}


def _assert_equal(a, b, dtype, what):
    errors = _errors(a, b)
    assert errors, f"{what}: nothing was compared"
    bad = {k: e for k, e in errors.items() if not e <= TOL[dtype]}
    assert not bad, f"{what} ({dtype}): relative errors above {TOL[dtype]:g}: {bad}"


# ================================================================================================
# Op by op: (name, module, forward, backward, make inputs) — same call on both twins
# ================================================================================================
def _op_cases(rng, dtype):
    """[(what, forward name, backward name, module name, args, kwargs, number of outputs before cache)]."""
    f = lambda *shape: rng.standard_normal(shape).astype(dtype)
    B, T, D, k = 3, 7, 12, 3
    S = 3 * f(B, k, T, T)
    S[0, 0, 2] = -np.inf                                            # one row may attend nowhere
    S[1, 2, 3, :4] = -np.inf                                        # part of a row masked
    mask = np.tril(np.ones((T, T), dtype=bool))
    return [
        ("linear 3-D", "linear", (f(B, T, D), f(D, 5), f(5)), {}, 1),
        ("linear 2-D", "linear", (f(B, D), f(D, 5), f(5)), {}, 1),
        ("softmax", "softmax", (S,), {}, 1),
        ("layernorm", "layernorm", (2 * f(B, T, D) + 1, f(D), f(D)), {"eps": 1e-6}, 1),
        ("gelu exact", "gelu", (3 * f(B, T, 40),), {"approximate": "exact"}, 1),
        ("gelu tanh", "gelu", (3 * f(B, T, 40),), {"approximate": "tanh"}, 1),
        ("attention", "attention", (f(B, k, T, 4), f(B, k, T, 4), f(B, k, T, 4)), {}, 2),
        ("attention, causal mask", "attention", (f(B, k, T, 4), f(B, k, T, 4), f(B, k, T, 4)), {"mask": mask}, 2),
        ("msa", "msa", (f(B, T, D), f(D, 3 * D), f(3 * D), f(D, D), f(D), k), {}, 2),
        ("msa, mask", "msa", (f(B, T, D), f(D, 3 * D), f(3 * D), f(D, D), f(D), k), {"mask": mask}, 2),
        ("normalize", "normalize", (2 * f(B, T, D) + 1,), {}, 1),
        ("ln_linear", "ln_linear", (2 * f(B, T, D) + 1, f(D), f(D), f(D, 5), f(5)), {}, 1),
        ("qkv_attention, mask", "qkv_attention", (f(B, T, 3 * D), k), {"mask": mask}, 2),
    ]


_MODULE = {"linear": "linear", "softmax": "softmax", "layernorm": "layernorm", "gelu": "gelu",
           "attention": "attention", "msa": "attention", "normalize": "layernorm", "ln_linear": "ln_linear",
           "qkv_attention": "attention"}


def _run_op(package, name, args, kwargs, n_out, dout):
    module = getattr(package, _MODULE[name])
    result = getattr(module, f"{name}_forward")(*args, **kwargs)
    outs, cache = result[:n_out], result[n_out]
    grads = getattr(module, f"{name}_backward")(dout, cache)
    return outs, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(13))
def test_fast_op_equals_reference(case, dtype):
    what, name, args, kwargs, n_out = _op_cases(np.random.default_rng(case), dtype)[case]
    module = getattr(ops, _MODULE[name])
    first = getattr(module, f"{name}_forward")(*args, **kwargs)[0]
    dout = np.random.default_rng(100 + case).standard_normal(first.shape).astype(dtype)
    reference = _run_op(ops, name, args, kwargs, n_out, dout)
    fast_ = _run_op(fast, name, args, kwargs, n_out, dout)
    _assert_equal(fast_, reference, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_erf_equals_reference(dtype):
    x = np.concatenate([np.linspace(-8, 8, 70_001), [0.0, -0.0, np.inf, -np.inf, 1e-30, 30.0]]).astype(dtype)
    a, b = fast.erf.erf(x), ops.erf.erf(x)
    assert a.dtype == b.dtype == np.dtype(dtype)
    assert rel_error(a, b) <= TOL[dtype]
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_attention_dropout_equals_reference(dtype):
    """Dropout on A with the same seed draws the same mask in both: same out, A and gradients."""
    rng = np.random.default_rng(4)
    q, k, v = (rng.standard_normal((2, 3, 6, 4)).astype(dtype) for _ in range(3))
    dout = rng.standard_normal((2, 3, 6, 4)).astype(dtype)
    runs = []
    for package in (ops, fast):
        out, A, c = package.attention.attention_forward(q, k, v, dropout=0.3, rng=np.random.default_rng(9),
                                                        train=True)
        runs.append((out, A, package.attention.attention_backward(dout, c)))
    _assert_equal(runs[1], runs[0], dtype, "attention with dropout")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [{}, {"gelu": "tanh", "dropout": 0.2, "attention_dropout": 0.1},
                                     {"mask": "causal"}])
def test_fast_encoder_block_equals_reference(options, dtype):
    rng = np.random.default_rng(5)
    B, T, D, heads, M = 3, 6, 12, 3, 20
    shapes = {"ln1.gamma": (D,), "ln1.beta": (D,), "U_qkv": (D, 3 * D), "U_qkv_bias": (3 * D,), "U_msa": (D, D),
              "U_msa_bias": (D,), "ln2.gamma": (D,), "ln2.beta": (D,), "mlp.W1": (D, M), "mlp.b1": (M,),
              "mlp.W2": (M, D), "mlp.b2": (D,)}
    p = {name: (0.4 * rng.standard_normal(s) + (name.endswith("gamma"))).astype(dtype) for name, s in shapes.items()}
    z = rng.standard_normal((B, T, D)).astype(dtype)
    dout = rng.standard_normal((B, T, D)).astype(dtype)
    z_before, dout_before, p_before = z.copy(), dout.copy(), {k: v.copy() for k, v in p.items()}
    kwargs = dict(options)
    if kwargs.get("mask") == "causal":
        kwargs["mask"] = ops.attention.causal_mask(T)
    train = "dropout" in kwargs
    runs = []
    for package in (ops, fast):
        out, A, c = package.block.encoder_block_forward(z, p, heads, train=train, rng=np.random.default_rng(3),
                                                        **kwargs)
        runs.append((out, A, package.block.encoder_block_backward(dout, c)))
    _assert_equal(runs[1], runs[0], dtype, f"encoder block {options}")
    assert np.array_equal(z, z_before) and np.array_equal(dout, dout_before)     # in-place adds touch no input
    assert all(np.array_equal(p[k], p_before[k]) for k in p) and not np.shares_memory(runs[1][0], z)


def test_fast_ops_do_not_modify_their_inputs():
    """The fast ops work in place only on arrays they own: inputs, parameters and upstream gradients stay."""
    rng = np.random.default_rng(2)
    for what, name, args, kwargs, n_out in _op_cases(rng, "float64"):
        before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        first = getattr(getattr(fast, _MODULE[name]), f"{name}_forward")(*args, **kwargs)[0]
        dout = rng.standard_normal(first.shape)
        d_before = dout.copy()
        _run_op(fast, name, args, kwargs, n_out, dout)
        assert all(not isinstance(a, np.ndarray) or np.array_equal(a, b, equal_nan=True)
                   for a, b in zip(args, before)), what
        assert np.array_equal(dout, d_before), what


# ================================================================================================
# The whole model: vitnp.fast.vit_forward / vit_backward against vitnp.vit_forward / vit_backward
# ================================================================================================
def random_case(seed, dtype, **fields):
    """A random config (patch grid, non-square images, width, heads, MLP, depth, readout, position embedding,
    GELU, sometimes a hybrid stem), params perturbed away from the initialisation (so LayerNorm γ ≠ 1 and the
    head is not zero), images and an upstream gradient."""
    rng = np.random.default_rng(seed)
    P = int(rng.choice([2, 4]))
    heads = int(rng.choice([1, 2, 3]))
    hybrid = seed % 3 == 2
    grid = (int(rng.integers(2, 5)), int(rng.integers(2, 5)))
    cfg_fields = dict(
        image_size=(P * grid[0] * (2 if hybrid else 1), P * grid[1] * (2 if hybrid else 1)), patch_size=P,
        in_channels=int(rng.integers(1, 4)), num_classes=int(rng.integers(2, 7)),
        dim=heads * 4 * int(rng.integers(1, 4)), heads=heads, mlp_dim=int(rng.integers(5, 40)),
        depth=int(rng.integers(1, 4)), classifier=str(rng.choice(["token", "gap"])),
        pos_embedding=str(rng.choice(["learned", "sincos", "none"])), gelu=str(rng.choice(["exact", "tanh"])),
        stem_channels=(int(rng.integers(2, 6)),) if hybrid else (), dtype=dtype)
    cfg_fields.update(fields)
    cfg = vitnp.ViTConfig(**cfg_fields)
    params = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype)
              for k, v in vitnp.init_params(cfg, seed).items()}
    x = rng.standard_normal((int(rng.integers(3, 13)), *cfg.hw, cfg.in_channels)).astype(dtype)
    dlogits = rng.standard_normal((x.shape[0], cfg.num_classes)).astype(dtype)
    return cfg, params, x, dlogits


def run_model(package, cfg, params, x, dlogits, mask=None, train=False, seed=None):
    logits, cache = package.vit_forward(params, x, cfg, attn_mask=mask, train=train, rng=seed)
    grads, dx = package.vit_backward(dlogits, cache, input_grad=True)
    assert len(cache["attention"]) == cfg.depth
    assert all(A.shape == (x.shape[0], cfg.heads, cfg.num_tokens, cfg.num_tokens) for A in cache["attention"])
    assert logits.dtype == grads["E"].dtype == dx.dtype == np.dtype(cfg.dtype) and set(grads) == set(params)
    return {"logits": logits, "attention": cache["attention"], "grads": grads, "dx": dx}


def compare(cfg, params, x, dlogits, mask=None, train=False, seed=None):
    """{name: relative error} between the fast model and the reference model."""
    ref = run_model(model, cfg, params, x, dlogits, mask, train, seed)
    got = run_model(fast, cfg, params, x, dlogits, mask, train, seed)
    return _errors(got, ref)


@pytest.fixture(params=["unsharded", "sharded"])
def sharding(request):
    """Run a test with sharding off, and with it forced on for any batch (3 threads, min_rows 1)."""
    before = parallel.configure()
    if request.param == "sharded":
        if not before["blas_control"]:
            pytest.skip("BLAS threads cannot be controlled here, so vitnp never shards")
        parallel.configure(threads=3, min_rows=1, shards_per_thread=2)
    else:
        parallel.configure(threads=1)
    yield request.param
    parallel.configure(threads=before["threads"], min_rows=before["min_rows"],
                       shards_per_thread=before["shards_per_thread"])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(6))
def test_fast_model_equals_reference(seed, dtype, sharding):
    cfg, params, x, dlogits = random_case(seed if dtype == "float32" else 100 + seed, dtype)
    bad = {k: e for k, e in compare(cfg, params, x, dlogits).items() if not e <= TOL[dtype]}
    assert not bad, f"{cfg}: relative errors above {TOL[dtype]:g}: {bad}"


def test_random_cases_cover_the_variants():
    """The random configurations above really include what they claim to cover."""
    cfgs = [random_case(s, "float32")[0] for s in range(6)] + [random_case(100 + s, "float64")[0] for s in range(6)]
    assert any(c.is_hybrid for c in cfgs) and any(c.hw[0] != c.hw[1] for c in cfgs)
    for field, values in (("classifier", {"token", "gap"}), ("gelu", {"exact", "tanh"}),
                          ("pos_embedding", {"learned", "sincos", "none"})):
        assert {getattr(c, field) for c in cfgs} == values, field


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_model_with_dropout_equals_reference(dtype):
    """Dropout with a fixed seed: both draw the same masks in the same order (the fast path never shards
    when it drops)."""
    cfg, params, x, dlogits = random_case(2, dtype, dropout=0.2, attention_dropout=0.1)
    errors = compare(cfg, params, x, dlogits, train=True, seed=7)
    assert max(errors.values()) <= TOL[dtype], errors


def test_masks_equal_reference(sharding):
    """A causal (T, T) mask and a per-image (B, 1, T, T) mask, which sharding must slice by image."""
    cfg, params, x, dlogits = random_case(7, "float32", classifier="token")
    T, B = cfg.num_tokens, x.shape[0]
    errors = compare(cfg, params, x, dlogits, ops.attention.causal_mask(T))
    assert max(errors.values()) <= F32_TOL, errors
    per_image = np.ones((B, 1, T, T), dtype=bool)
    per_image[::2, :, :, -1] = False                     # even images may not attend the last token
    errors = compare(cfg, params, x, dlogits, per_image)
    assert max(errors.values()) <= F32_TOL, errors


def test_the_comparison_can_fail():
    """A real difference is caught: perturb one weight of the last block by 0.1 % on one side."""
    cfg, params, x, dlogits = random_case(3, "float64")
    changed = dict(params)
    key = f"blocks.{cfg.depth - 1}.mlp.W2"
    changed[key] = params[key] * 1.001
    got = run_model(fast, cfg, params, x, dlogits)
    ref = run_model(model, cfg, changed, x, dlogits)
    assert max(_errors(got, ref).values()) > F32_TOL
    with pytest.raises(AssertionError, match="relative errors above"):
        _assert_equal(got, ref, "float64", "perturbed")


def test_fast_attention_scale_and_out_arguments():
    """scale=1 on pre-scaled q gives the default result; out= receives it; the backward's out= too."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)) for _ in range(3))
    out, A, c = fast.attention.attention_forward(q, k, v)
    buf = np.empty((2, 5, 3, 4))
    out2, A2, c2 = fast.attention.attention_forward(q / 2.0, k, v, scale=1.0, out=buf.transpose(0, 2, 1, 3))
    assert np.allclose(out, out2, rtol=1e-13, atol=1e-14) and np.allclose(A, A2, rtol=1e-13, atol=1e-14)
    assert np.shares_memory(out2, buf) and np.allclose(buf.transpose(0, 2, 1, 3), out, rtol=1e-13, atol=1e-14)
    d = rng.standard_normal(out.shape)
    dq, dk, dv = fast.attention.attention_backward(d, c)
    bufs = np.empty((3, 2, 3, 5, 4))
    dq2, dk2, dv2 = fast.attention.attention_backward(d, c2, out=tuple(bufs))
    assert np.allclose(dq, dq2 / 2.0, rtol=1e-12, atol=1e-14)          # ∂/∂(q/2) = 2 ∂/∂q … via the scale
    assert np.allclose(dk, dk2, rtol=1e-12, atol=1e-14) and np.allclose(dv, dv2, rtol=1e-12, atol=1e-14)
    assert np.shares_memory(dq2, bufs) and np.array_equal(bufs[2], dv2)


# ================================================================================================
# The training step, and the sharding settings
# ================================================================================================
def test_adamw_steps_match_reference(sharding):
    """Three AdamW steps from the same start give the same parameters.

    One exception is principled: the key bias b_k (the middle third of U_qkv_bias) adds q·b_k to every
    logit of a row, which softmax ignores, so its exact gradient is 0 and both implementations return
    rounding noise there — which Adam, dividing by √v, turns into full-size steps of random sign.  We
    check that this gradient is noise-sized, and compare everything else.
    """
    cfg, params, x, _ = random_case(11, "float32")
    D = cfg.dim
    labels = np.arange(x.shape[0]) % cfg.num_classes
    runs = []
    for use_ref in (False, True):
        p = {k: np.array(v) for k, v in params.items()}                # copies
        opt = AdamW(p, lr=1e-3, weight_decay=0.05)
        for _ in range(3):
            package = model if use_ref else fast
            logits, c = package.vit_forward(p, x, cfg, train=True)
            _, dl = softmax_cross_entropy(logits, labels)
            g = package.vit_backward(dl, c)
            for l in range(cfg.depth):
                b = g[f"blocks.{l}.U_qkv_bias"]
                assert np.abs(b[D:2 * D]).max() <= 1e-5 * np.abs(b).max(), "b_k's gradient should be ~0"
            opt.step(p, g)
        for l in range(cfg.depth):
            p[f"blocks.{l}.U_qkv_bias"] = np.delete(p[f"blocks.{l}.U_qkv_bias"], np.s_[D:2 * D])
        runs.append(p)
    errors = {k: rel_error(runs[0][k], runs[1][k]) for k in params}
    bad = {k: e for k, e in errors.items() if not e <= F32_TOL}
    assert not bad, bad


def test_dropout_never_shards_and_stays_reproducible():
    cfg = vitnp.ViTConfig(image_size=8, patch_size=2, dim=8, heads=2, mlp_dim=8, depth=1, dropout=0.2,
                          attention_dropout=0.1)
    params = vitnp.init_params(cfg, 0)
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 1)).astype(np.float32)
    before = parallel.configure()
    try:
        parallel.configure(threads=2, min_rows=1)
        a, ca = fast.vit_forward(params, x, cfg, train=True, rng=5)
        b, _ = fast.vit_forward(params, x, cfg, train=True, rng=5)
        assert "shards" not in ca and np.array_equal(a, b)
        _, ce = fast.vit_forward(params, x, cfg)                         # eval: no dropout, may shard
        assert ("shards" in ce) == before["blas_control"]
    finally:
        parallel.configure(threads=before["threads"], min_rows=before["min_rows"])


def test_shard_slices_cover_the_batch():
    before = parallel.configure()
    try:
        parallel.configure(threads=2, min_rows=100, shards_per_thread=2)
        if before["blas_control"]:
            assert parallel.shard_slices(128, 50) == [slice(0, 32), slice(32, 64), slice(64, 96), slice(96, 128)]
            assert parallel.shard_slices(10, 30) == [slice(0, 3), slice(3, 6), slice(6, 10)]   # 300 rows: 3
        assert parallel.shard_slices(3, 10) == [slice(0, 3)]                    # 30 rows: not worth a thread
        parallel.configure(threads=1)
        assert parallel.shard_slices(128, 50) == [slice(0, 128)]
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            parallel.configure(threads=0)
    finally:
        parallel.configure(threads=before["threads"], min_rows=before["min_rows"],
                           shards_per_thread=before["shards_per_thread"])


@pytest.fixture
def blas_count():
    """OpenBLAS's get_num_threads (the tests below skip where NumPy's BLAS is not OpenBLAS)."""
    fns = parallel._blas_functions()
    if fns is None:
        pytest.skip("OpenBLAS not found in this NumPy")
    return fns[0]


def test_blas_threads_are_restored(blas_count):
    get = blas_count
    before = get()
    with parallel.blas_threads(1):
        assert get() == 1
    assert get() == before


def test_overlapping_blas_blocks_restore_the_first_count(blas_count):
    get = blas_count
    before = get()
    outer = parallel.blas_threads(1)
    inner = parallel.blas_threads(1)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)          # the first block ends while the second is still open
    assert get() == 1
    inner.__exit__(None, None, None)
    assert get() == before


# ================================================================================================
# Issue 15: the float32 GELU, cache-sized blocks, the inference path (vit_predict), the profile
# ================================================================================================
def test_fast_gelu_float32_is_accurate():
    """The float32 polynomial (degree 7, vitnp.fast.gelu._S32) against the float64 reference, elementwise.

    Tolerances: GELU relative error ≤ 3e-6 for |x| ≤ 8 (the fit is 8.3e-7; float32 rounding of x² inside
    exp(−x²/2) adds up to ~2e-6 at |x| = 8), absolute error ≤ 1e-6 of dGELU/dx everywhere on [−16, 16].
    The float32 reference itself is at 1.5e-5 relative (rounding of 1 − erfc), so this is a tighter check."""
    x = np.concatenate([np.linspace(-16, 16, 400_001), [0.0, -0.0, 1e-30, -1e-30, 5.3, -5.3]]).astype(np.float32)
    want = ops.gelu.gelu_forward(x.astype(np.float64))[0]
    dwant = ops.gelu.gelu_exact_derivative(x.astype(np.float64))
    got, (dgot,) = fast.gelu.gelu_forward(x)
    assert got.dtype == dgot.dtype == np.float32
    inner = (np.abs(x) <= 8) & (np.abs(want) > 1e-30)
    rel = np.abs(got[inner] - want[inner]) / np.abs(want[inner])
    assert rel.max() <= 3e-6, f"max relative error {rel.max():.3g} at x = {x[inner][rel.argmax()]}"
    assert np.abs(dgot - dwant).max() <= 1e-6
    tiny = np.abs(x) == np.float32(1e-30)
    assert got[x == 0].tolist() == [0.0, 0.0, 0.0] and np.allclose(got[tiny], 0.5 * x[tiny], rtol=1e-6, atol=0)
    assert np.isnan(fast.gelu.gelu_forward(np.array([np.nan], np.float32))[0]).all()
    special = np.array([np.inf, -np.inf, np.nan, 1e30, -1e30], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(fast.gelu.gelu_forward(special)[0], ops.gelu.gelu_forward(special)[0])


def test_fast_gelu_float32_coefficients_refit():
    """_S32 is what _fit_float32_coefficients() derives, and that fit is below 1e-6 in relative error."""
    coefficients, max_rel = fast.gelu._fit_float32_coefficients()
    np.testing.assert_allclose(coefficients, fast.gelu._S32, rtol=1e-9, atol=1e-12)
    assert max_rel < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["exact", "tanh"])
def test_fast_gelu_derivative_false_and_blocks(monkeypatch, dtype, approximate):
    """derivative=False returns the same values and no cache; many small ragged blocks give the same results
    as one block (so the block loop, not only its first block, is covered)."""
    x = (3 * np.random.default_rng(0).standard_normal((7, 13))).astype(dtype)
    out, (d,) = fast.gelu.gelu_forward(x, approximate)
    out2, cache = fast.gelu.gelu_forward(x, approximate, derivative=False)
    assert cache is None and np.array_equal(out, out2)
    monkeypatch.setattr(vitnp.fast.erf, "BLOCK", 10)                  # 91 elements: 10 blocks, the last of 1
    out3, (d3,) = fast.gelu.gelu_forward(x, approximate)
    out4, _ = fast.gelu.gelu_forward(x, approximate, derivative=False)
    assert np.array_equal(out, out3) and np.array_equal(d, d3) and np.array_equal(out, out4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_layernorm_row_blocks(monkeypatch, dtype):
    """More rows than one block (_ROWS = 4, 23 rows: 6 blocks, the last of 3) equals the reference; and
    keep_cache=False gives the same output and no cache."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((23, 10)) + 2.0).astype(dtype)
    gamma, beta = rng.standard_normal(10).astype(dtype), rng.standard_normal(10).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    monkeypatch.setattr(fast.layernorm, "_ROWS", 4)
    ref_out, ref_cache = ops.layernorm.layernorm_forward(x, gamma, beta)
    out, cache = fast.layernorm.layernorm_forward(x, gamma, beta)
    _assert_equal([out, fast.layernorm.layernorm_backward(dout, cache)],
                  [ref_out, ops.layernorm.layernorm_backward(dout, ref_cache)], dtype, "layernorm in row blocks")
    out2, none = fast.layernorm.layernorm_forward(x, gamma, beta, keep_cache=False)
    assert none is None and np.array_equal(out, out2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_vit_predict_equals_forward(seed, dtype, sharding):
    """The inference path: bit-identical to the fast forward's logits, within tolerance of the reference's,
    also with a per-image mask; the reference's vit_predict is its forward's logits."""
    cfg, params, x, _ = random_case(seed if dtype == "float32" else 100 + seed, dtype)
    logits = fast.vit_forward(params, x, cfg)[0]
    got = fast.vit_predict(params, x, cfg)
    assert np.array_equal(got, logits)
    ref = model.vit_predict(params, x, cfg)
    assert np.array_equal(ref, model.vit_forward(params, x, cfg)[0]) and rel_error(got, ref) <= TOL[dtype]
    T = cfg.num_tokens
    mask = np.random.default_rng(seed).random((x.shape[0], 1, T, T)) < 0.7
    mask[..., 0] = True                                               # every query may see the class token
    assert np.array_equal(fast.vit_predict(params, x, cfg, attn_mask=mask),
                          fast.vit_forward(params, x, cfg, attn_mask=mask)[0])


def test_evaluation_uses_the_inference_path(monkeypatch):
    """evaluate_arrays and predict_proba run ModelSpec.predict (no cache), not the training forward."""
    from vitnp.training import evaluation as evaluate
    from vitnp.training import specs as models
    cfg, params, _, _ = random_case(0, "float32")
    calls = []
    spec = models.model_spec(cfg)
    monkeypatch.setattr(evaluate, "model_spec", lambda c, reference=False: dataclasses.replace(
        spec, forward=None, predict=lambda *a, **k: calls.append(1) or spec.predict(*a, **k)))
    images = np.random.default_rng(0).integers(0, 256, (5, *cfg.hw, cfg.in_channels), dtype=np.uint8)
    evaluate.evaluate_arrays(params, cfg, images, np.zeros(5, np.int64), batch_size=2)
    evaluate.predict_proba(params, cfg, np.zeros((3, *cfg.hw, cfg.in_channels), np.float32))
    assert len(calls) == 3 + 1


def test_blas_info_with_and_without_threadpoolctl(monkeypatch):
    """The bench names NumPy's BLAS: through threadpoolctl, or without it through OpenBLAS's own functions."""
    import sys
    if not parallel.configure()["blas_control"]:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS vitnp can find")
    with_tp = parallel.blas_info()
    assert with_tp["library"] == "openblas" and with_tp["kernel"]
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)              # import fails: the ctypes route
    without = parallel.blas_info()
    assert without["source"] == "ctypes" and without["library"] == "openblas"
    assert without["kernel"] and "OpenBLAS" in without["version"] and without["threads"] >= 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_ln_linear_equals_layernorm_then_linear(monkeypatch, dtype):
    """LN(z) W + b with γ, β, b folded into one GEMM equals its twin ops.ln_linear (LayerNorm then linear): output and
    every gradient (dz, dγ, dβ, dW, db), over several row blocks (_ROWS = 5, 2·9 rows); keep_cache=False
    gives the same output."""
    import vitnp.fast.ln_linear as fl
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((2, 9, 6)) + 1.5).astype(dtype)
    gamma, beta = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    W, b = rng.standard_normal((6, 11)).astype(dtype), rng.standard_normal(11).astype(dtype)
    dy = rng.standard_normal((2, 9, 11)).astype(dtype)
    monkeypatch.setattr(fast.layernorm, "_ROWS", 5)
    y, c_ref = ops.ln_linear.ln_linear_forward(z, gamma, beta, W, b)
    dz, dgamma, dbeta, dW, db = ops.ln_linear.ln_linear_backward(dy, c_ref)
    got, cache = fl.ln_linear_forward(z, gamma, beta, W, b)
    _assert_equal([got, fl.ln_linear_backward(dy, cache)], [y, (dz, dgamma, dbeta, dW, db)], dtype,
                  "LN → linear, folded")
    got2, none = fl.ln_linear_forward(z, gamma, beta, W, b, keep_cache=False)
    assert none is None and np.array_equal(got, got2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [5, 40])
def test_fast_softmax_short_and_long_rows(dtype, T):
    """Both routes to the row maxima (short rows T ≤ 32 through a transposed copy, long rows directly) equal
    the reference, also with a fully masked (−inf) row and a partly masked one."""
    rng = np.random.default_rng(T)
    x = (3 * rng.standard_normal((2, 3, T, T))).astype(dtype)
    x[0, 1, 2, :] = -np.inf
    x[1, 0, 1, : T // 2] = -np.inf
    dy = rng.standard_normal(x.shape).astype(dtype)
    y, c = fast.softmax.softmax_forward(x)
    y_ref, c_ref = ops.softmax.softmax_forward(x)
    _assert_equal([y, fast.softmax.softmax_backward(dy, c)], [y_ref, ops.softmax.softmax_backward(dy, c_ref)],
                  dtype, f"softmax T={T}")


def test_float32_stays_float32_everywhere():
    """No hidden float64 upcast in the fast path: every float array the float32 forward keeps for the
    backward (hundreds of them: x̂, GELU's derivative, attention weights …), every gradient and the
    inference path's logits are float32."""
    cfg, params, x, dlogits = random_case(0, "float32", gelu="exact")
    logits, cache = fast.vit_forward(params, x, cfg, train=True)
    found = []

    def walk(obj):
        if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
            found.append(obj.dtype)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(cache)
    assert len(found) > 20 and set(found) == {np.dtype(np.float32)}
    grads, dx = fast.vit_backward(dlogits, cache, input_grad=True)
    assert {g.dtype for g in grads.values()} | {dx.dtype, logits.dtype} == {np.dtype(np.float32)}
    assert fast.vit_predict(params, x, cfg).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_qkv_attention_equals_its_twin(dtype):
    """qkv_attention_forward/backward (Eq 6–8 from a fused qkv) against ops.attention's twin (MSA with identity
    projections): output, attention weights and dqkv, with a causal mask; and with ``scale=1.0`` on a qkv whose
    q part is already scaled by 1/√D_h (as the fast block calls it), the same output and dqkv with the scale
    carried back (q_ref = √D_h q)."""
    heads, B, T, D = 3, 2, 5, 12
    root = float(np.sqrt(D // heads))                                 # √D_h, a Python float: no upcast
    rng = np.random.default_rng(7)
    qkv = rng.standard_normal((B, T, 3 * D)).astype(dtype)
    do = rng.standard_normal((B, T, D)).astype(dtype)
    mask = ops.attention.causal_mask(T)
    o_ref, A_ref, c_ref = ops.attention.qkv_attention_forward(qkv, heads, mask)
    dqkv_ref = ops.attention.qkv_attention_backward(do, c_ref)
    o, A, cache = fast.attention.qkv_attention_forward(qkv, heads, mask)
    _assert_equal([o, A, fast.attention.qkv_attention_backward(do, cache)], [o_ref, A_ref, dqkv_ref], dtype,
                  "qkv_attention")
    scaled = qkv.copy()
    scaled[..., :D] /= np.asarray(root, dtype)
    o, A, cache = fast.attention.qkv_attention_forward(scaled, heads, mask, scale=1.0)
    dqkv = fast.attention.qkv_attention_backward(do, cache)
    dqkv[..., :D] /= np.asarray(root, dtype)                          # dq_ref = dq_scaled / √D_h
    _assert_equal([o, A, dqkv], [o_ref, A_ref, dqkv_ref], dtype, "qkv_attention, q pre-scaled")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_normalize_equals_its_twin(monkeypatch, dtype):
    """x̂ = (x − μ)/σ and its backward, blockwise (_ROWS = 5, 18 rows), equal ops.layernorm's twin (LayerNorm with
    γ = 1, β = 0), in the input's shape; with ``overwrite=True`` too."""
    monkeypatch.setattr(fast.layernorm, "_ROWS", 5)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2, 9, 6)) * 2 + 1).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    ref, c_ref = ops.layernorm.normalize_forward(x)
    got, cache = fast.layernorm.normalize_forward(x)
    dx_ref = ops.layernorm.normalize_backward(g, c_ref)
    _assert_equal([got, fast.layernorm.normalize_backward(g, cache)], [ref, dx_ref], dtype, "normalize")
    assert got.shape == x.shape
    _assert_equal([fast.layernorm.normalize_backward(g.copy(), cache, overwrite=True)], [dx_ref], dtype,
                  "normalize, overwrite")


def test_fast_docstrings_state_no_measured_speeds_and_point_to_the_one_table():
    """Speeds live in docs/performance.md's table (bench --ops --write-table), not in docstrings."""
    import pathlib
    import re
    root = pathlib.Path(vitnp.__file__).parent / "fast"
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        dated = r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) 20\d\d\b"
        assert not re.search(r"\d(\.\d+)?×|" + dated, text), path.name
    doc = (root.parents[1] / "docs" / "performance.md").read_text(encoding="utf-8")
    from vitnp.bench.ops import TABLE_BEGIN, TABLE_END
    assert doc.count(TABLE_BEGIN) == 1 and doc.count(TABLE_END) == 1


def test_blas_thread_setter_validates():
    with pytest.raises(ValueError):
        parallel.set_blas_threads(0)
    assert parallel.set_blas_threads(1) in (True, False)
