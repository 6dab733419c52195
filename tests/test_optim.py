"""vitnp.optim against torch.optim (when torch is installed), hand-computed schedules, and the
state_dict round trip through a real .npz file."""
import math
import re

import numpy as np
import pytest

from vitnp.optim import SGD, AdamW, clip_grad_norm, decays, warmup_cosine

D, M, T, K, PD = 8, 16, 5, 3, 12          # width, MLP width, tokens, classes, patch dim P²C


def vit_shapes(depth=2):
    """A tiny ViT's parameter table: every kind of array the optimiser meets (1-D, 2-D, E_pos)."""
    shapes = {"E": (PD, D), "E_bias": (D,), "x_class": (D,), "E_pos": (T, D)}
    for l in range(depth):
        b = f"blocks.{l}."
        shapes.update({b + "ln1.gamma": (D,), b + "ln1.beta": (D,), b + "U_qkv": (D, 3 * D),
                       b + "U_qkv_bias": (3 * D,), b + "U_msa": (D, D), b + "U_msa_bias": (D,),
                       b + "ln2.gamma": (D,), b + "ln2.beta": (D,), b + "mlp.W1": (D, M), b + "mlp.b1": (M,),
                       b + "mlp.W2": (M, D), b + "mlp.b2": (D,)})
    shapes.update({"ln_f.gamma": (D,), "ln_f.beta": (D,), "head.W": (D, K), "head.b": (K,)})
    return shapes


def random_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in vit_shapes().items()}


def grad_stream(params, steps, seed=1):
    """A fresh random gradient dict for every step, the same sequence every call."""
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(p.shape).astype(p.dtype) for k, p in params.items()}
            for _ in range(steps)]


def max_rel_err(a, b):
    """Largest element-wise |a − b| / |b| (|b| floored at 1e-12)."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def torch_run(torch, params, grads, make_opt, lr_lambda=None):
    """Run a torch optimiser over the gradient stream; params split into decay / no-decay groups."""
    tp = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    groups = [{"params": [t for k, t in tp.items() if decays(k, params[k])]},
              {"params": [t for k, t in tp.items() if not decays(k, params[k])], "weight_decay": 0.0}]
    opt = make_opt(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    for g in grads:
        for k, t in tp.items():
            t.grad = torch.tensor(g[k])
        opt.step()
        if sched:
            sched.step()
    return {k: t.detach().numpy() for k, t in tp.items()}


def our_run(params, grads, opt, lrs=None):
    params = {k: v.copy() for k, v in params.items()}
    for i, g in enumerate(grads):
        opt.step(params, g, lr=None if lrs is None else lrs[i])
    return params


def assert_close_to_torch(ours, theirs, tol=1e-6):
    errs = {k: max_rel_err(ours[k], theirs[k]) for k in theirs}
    worst = max(errs, key=errs.get)
    assert errs[worst] <= tol, f"{worst}: rel err {errs[worst]:.3g}"


def test_decays_split():
    p = random_params()
    decayed = {k for k in p if decays(k, p[k])}
    assert decayed == {"E", "head.W"} | {f"blocks.{l}.{n}" for l in (0, 1)
                                          for n in ("U_qkv", "U_msa", "mlp.W1", "mlp.W2")}


def test_decays_split_of_the_cnn_and_the_hybrid_stem():
    """Kernels decay, biases do not: the CNN's conv{i}.W / head.W and the hybrid ViT's stem.{i}.W."""
    from vitnp import ViTConfig, init_params
    from vitnp.cnn import CNNConfig, init_cnn_params
    cnn = init_cnn_params(0, cfg=CNNConfig(channels=(4, 8, 16)))
    assert {k for k in cnn if decays(k, cnn[k])} == {"conv1.W", "conv2.W", "conv3.W", "head.W"}
    hybrid = init_params(ViTConfig(patch_size=7, dim=8, depth=1, heads=2, mlp_dim=16, stem_channels=(4, 8),
                                   stem_pool=1))
    decayed = {k for k in hybrid if decays(k, hybrid[k])}
    assert {k for k in hybrid if k.startswith("stem.")} == {"stem.0.W", "stem.0.b", "stem.1.W", "stem.1.b"}
    assert decayed == {"stem.0.W", "stem.1.W", "E", "blocks.0.U_qkv", "blocks.0.U_msa", "blocks.0.mlp.W1",
                       "blocks.0.mlp.W2", "head.W"}


@pytest.mark.parametrize("momentum, nesterov, wd", [
    (0.9, False, 0.0), (0.9, True, 0.0), (0.9, False, 0.05), (0.9, True, 0.05), (0.0, False, 0.05)])
def test_sgd_matches_torch(momentum, nesterov, wd):
    torch = pytest.importorskip("torch")
    params = random_params()
    grads = grad_stream(params, 10)
    ours = our_run(params, grads, SGD(params, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov))
    theirs = torch_run(torch, params, grads, lambda g: torch.optim.SGD(
        g, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov))
    assert_close_to_torch(ours, theirs)


@pytest.mark.parametrize("betas, eps, wd", [
    ((0.9, 0.999), 1e-8, 0.0), ((0.9, 0.999), 1e-8, 0.05), ((0.8, 0.95), 1e-3, 0.3)])
def test_adamw_matches_torch(betas, eps, wd):
    torch = pytest.importorskip("torch")
    params = random_params()
    grads = grad_stream(params, 10)
    ours = our_run(params, grads, AdamW(params, lr=0.01, betas=betas, eps=eps, weight_decay=wd))
    theirs = torch_run(torch, params, grads, lambda g: torch.optim.AdamW(
        g, lr=0.01, betas=betas, eps=eps, weight_decay=wd))
    assert_close_to_torch(ours, theirs)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_lr_override_follows_schedule_like_lambdalr(name):
    """step(lr=warmup_cosine(k, …)) equals torch with LambdaLR driving the same schedule."""
    torch = pytest.importorskip("torch")
    S, W, base, final = 10, 3, 0.05, 0.005
    params = random_params()
    grads = grad_stream(params, S)
    if name == "sgd":
        ours_opt = SGD(params, lr=123.0, momentum=0.9, weight_decay=0.05, nesterov=True)
        make = lambda g: torch.optim.SGD(g, lr=base, momentum=0.9, weight_decay=0.05, nesterov=True)
    else:
        ours_opt = AdamW(params, lr=123.0, weight_decay=0.05)
        make = lambda g: torch.optim.AdamW(g, lr=base, weight_decay=0.05)
    ours = our_run(params, grads, ours_opt, lrs=[warmup_cosine(k, S, W, base, final) for k in range(S)])
    theirs = torch_run(torch, params, grads, make, lambda k: warmup_cosine(k, S, W, base, final) / base)
    assert_close_to_torch(ours, theirs)


def test_warmup_cosine_hand_values():
    S, W, base, final = 10, 2, 1.0, 0.1
    # warm-up: (s+1)/W · base;  cosine: 0.1 + 0.45·(1 + cos(π (s−2)/8))
    expected = {0: 0.5, 1: 1.0, 2: 1.0, 4: 0.1 + 0.45 * (1 + math.sqrt(0.5)), 6: 0.55,
                8: 0.1 + 0.45 * (1 - math.sqrt(0.5)), 10: 0.1, 25: 0.1}
    for s, lr in expected.items():
        assert warmup_cosine(s, S, W, base, final) == pytest.approx(lr, rel=1e-12, abs=1e-15), s
    assert warmup_cosine(0, 4, 0, 2.0) == 2.0                        # no warm-up: start at base
    assert warmup_cosine(2, 4, 0, 2.0) == pytest.approx(1.0)          # halfway: cos(π/2) = 0
    assert warmup_cosine(4, 4, 4, 2.0) == 0.0                         # warm-up only, then final_lr
    assert isinstance(warmup_cosine(3, 10, 2, np.float64(1.0)), float)
    for bad in [(-1, 10, 2), (0, 10, 11), (0, 0, 0)]:
        with pytest.raises(ValueError):
            warmup_cosine(*bad, 1.0)


@pytest.mark.parametrize("dtype, ratio", [(np.float64, 0.1), (np.float64, 0.999), (np.float64, 1.5),
                                          (np.float32, 0.5)])
def test_clip_grad_norm_matches_torch(dtype, ratio):
    """max_norm = ratio · ‖g‖: well below, just below (still clips) and above (no-op)."""
    torch = pytest.importorskip("torch")
    grads = grad_stream(random_params(dtype), 1)[0]
    max_norm = ratio * math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    tgrads = [torch.tensor(g.copy(), requires_grad=True) for g in grads.values()]
    for t in tgrads:
        t.grad = t.detach().clone()
    before = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(grads, max_norm)
    tnorm = torch.nn.utils.clip_grad_norm_(tgrads, max_norm)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    assert norm == pytest.approx(float(tnorm), rel=tol)
    for (k, g), t in zip(grads.items(), tgrads):
        assert g.dtype == dtype
        assert max_rel_err(g, t.grad.numpy()) <= tol, k
    if norm <= max_norm:                                              # untouched, not scaled by ~1
        assert all(np.array_equal(grads[k], before[k]) for k in grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True),
    lambda p: AdamW(p, lr=0.01, betas=(0.8, 0.95), weight_decay=0.05)], ids=["sgd", "adamw"])
def test_state_dict_npz_round_trip_is_bit_exact(tmp_path, make, dtype):
    params = random_params(dtype)
    grads = grad_stream(params, 10)
    straight = our_run(params, grads, make(params))

    first = {k: v.copy() for k, v in params.items()}
    opt = make(first)
    for g in grads[:5]:
        opt.step(first, g)
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        assert f["step"].dtype == np.int64 and f["step"].shape == () and int(f["step"]) == 5
        assert f["m/blocks.0.U_qkv"].shape == (D, 3 * D) and f["m/blocks.0.U_qkv"].dtype == dtype
        resumed = make(first)
        resumed.lr = 999.0                                             # restored from the file
        resumed.load_state_dict(f)
    assert resumed.lr == opt.lr and resumed.step_count == 5
    for g in grads[5:]:
        resumed.step(first, g)
    for k in params:
        assert np.array_equal(first[k], straight[k]), k


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, weight_decay=0.05, nesterov=True),
                                  lambda p: AdamW(p, lr=0.01, weight_decay=0.05)], ids=["sgd", "adamw"])
def test_float32_stays_float32_and_updates_in_place(make):
    params = random_params(np.float32)
    ids = {k: id(v) for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    opt = make(params)
    for i, g in enumerate(grad_stream(params, 3)):
        opt.step(params, g, lr=np.float64(0.01) if i == 2 else None)  # a NumPy-scalar lr must not upcast
    for k, v in params.items():
        assert id(v) == ids[k] and v.dtype == np.float32 and not np.array_equal(v, before[k]), k
    assert all(a.dtype == np.float32 for k, a in opt.state_dict().items() if "/" in k)


def test_adamw_decoupled_decay_touches_only_decayed_arrays():
    """With zero gradients m = v = 0, so the only change is θ(1 − ηλ), and only where decays()."""
    params = random_params()
    before = {k: v.copy() for k, v in params.items()}
    AdamW(params, lr=0.1, weight_decay=0.5).step(params, {k: np.zeros_like(v) for k, v in params.items()})
    for k in params:
        expected = before[k] * (1 - 0.1 * 0.5) if decays(k, before[k]) else before[k]
        np.testing.assert_array_equal(params[k], expected, err_msg=k)


@pytest.mark.parametrize("corrupt, match", [
    (lambda d: d.pop("v/head.b"), re.escape("missing ['v/head.b']")),
    (lambda d: d.update(extra=np.zeros(3)), re.escape("unknown ['extra']")),
    (lambda d: d.update({"m/E": np.zeros((D, PD))}), "m/E"),
    (lambda d: d.update({"v/E": d["v/E"].astype(np.float32)}), "v/E"),
    (lambda d: d.update(step=np.array([3])), "step"),
    (lambda d: d.update(step=np.array(3.0)), "step"),
    (lambda d: d.update(beta1=np.array(1.5)), "betas"),
    (lambda d: d.update(eps=np.array([1e-8])), "eps"),
])
def test_bad_state_dict_raises_and_changes_nothing(corrupt, match):
    params = random_params()
    opt = AdamW(params, lr=0.01)
    for g in grad_stream(params, 2):
        opt.step(params, g)
    good = opt.state_dict()
    bad = {k: v.copy() for k, v in good.items()}
    corrupt(bad)
    fresh = AdamW(params, lr=0.01)
    with pytest.raises(ValueError, match=match):
        fresh.load_state_dict(bad)
    assert fresh.step_count == 0 and fresh.beta1 == 0.9
    assert all(not a.any() for a in fresh.state["m"].values())


def test_state_dict_of_one_optimiser_rejected_by_the_other():
    params = random_params()
    with pytest.raises(ValueError, match="missing"):
        AdamW(params, lr=0.01).load_state_dict(SGD(params, lr=0.1).state_dict())
    with pytest.raises(ValueError, match="unknown"):
        SGD(params, lr=0.1).load_state_dict(AdamW(params, lr=0.01).state_dict())


def test_step_and_constructor_validate_inputs():
    params = random_params()
    opt = SGD(params, lr=0.1)
    grads = grad_stream(params, 1)[0]
    with pytest.raises(ValueError, match=re.escape("missing ['head.b']")):
        opt.step(params, {k: g for k, g in grads.items() if k != "head.b"})
    with pytest.raises(ValueError, match="E_bias"):
        opt.step(params, {**grads, "E_bias": np.zeros((1, D))})       # would broadcast silently
    with pytest.raises(ValueError, match="nesterov"):
        SGD(params, lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        AdamW(params, lr=0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="floating"):
        AdamW({"E": np.zeros((2, 2), dtype=np.int64)}, lr=0.1)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(grads, 0.0)
