"""Every backward in vitnp against centred differences, float64, random upstream gradients: the reference
(vitnp.ops, vitnp.model) and the fast twins (vitnp.fast).

The cases live in vitnp.selfcheck (``python -m vitnp gradcheck`` runs the same ones); the tolerances
are stated here: ≤1e-7 relative for single ops, ≤1e-6 for the encoder block, the encoder and the model.
"""
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import vitnp.fast
import vitnp.model
import vitnp.ops
from vitnp import selfcheck
from vitnp.gradcheck import MODEL_TOL, OP_TOL, check_gradients, check_pair, numerical_gradient, rel_error
from vitnp.ops.layernorm import layernorm_forward



def test_the_tolerances_are_the_stated_ones():
    """One definition (vitnp.gradcheck), stated here: 1e-7 for an op, 1e-6 for blocks and models."""
    assert (OP_TOL, MODEL_TOL) == (1e-7, 1e-6)


CASES = selfcheck.cases() + selfcheck.cases(path="fast")


@pytest.mark.parametrize("name,tol,fn", CASES, ids=[c[0] for c in CASES])
def test_gradient(name, tol, fn):
    assert tol in (OP_TOL, MODEL_TOL)
    limit = tol
    errors = fn()
    assert errors, "the check compared nothing"
    bad = {k: e for k, e in errors.items() if not e <= limit}
    assert not bad, f"{name}: relative errors above {limit:g}: {bad}"
    assert selfcheck.worst_error(errors) <= limit


# Every forward/backward pair in vitnp.ops, by name; the suite must exercise each.
PAIRS = ["patchify_forward", "patchify_backward", "linear_forward", "linear_backward",
         "class_token_forward", "class_token_backward", "readout_forward", "readout_backward",
         "pos_embed_forward", "pos_embed_backward", "layernorm_forward", "layernorm_backward",
         "softmax_forward", "softmax_backward", "attention_forward", "attention_backward",
         "msa_forward", "msa_backward", "gelu_forward", "gelu_backward", "dropout_forward", "dropout_backward",
         "mlp_forward", "mlp_backward", "encoder_block_forward", "encoder_block_backward",
         "encoder_forward", "encoder_backward",
         "conv2d_forward", "conv2d_backward", "relu_forward", "relu_backward", "maxpool_forward", "maxpool_backward",
         "conv_stack_forward", "conv_stack_backward", "normalize_forward", "normalize_backward",
         "ln_linear_forward", "ln_linear_backward", "qkv_attention_forward", "qkv_attention_backward",
         "mask_embed_forward", "mask_embed_backward"]


def _pairs(package):
    """{module name: forward/backward function names defined in it} for every module of a package."""
    found = {}
    for mod in pkgutil.iter_modules(package.__path__):
        m = importlib.import_module(f"{package.__name__}.{mod.name}")
        names = {n for n, f in inspect.getmembers(m, inspect.isfunction)
                 if n.endswith(("_forward", "_backward")) and f.__module__ == m.__name__}
        if names:
            found[mod.name] = names
    return found


def test_suite_covers_every_pair():
    found = set().union(*_pairs(vitnp.ops).values())
    assert found == set(PAIRS), f"pairs not listed here: {found - set(PAIRS)}; gone: {set(PAIRS) - found}"
    source = "".join(inspect.getsource(f) for f in (selfcheck.cases, selfcheck._check_block,
                                                     selfcheck._check_conv_stack, selfcheck._check_mask_embed))          # not the imports
    missing = [n for n in PAIRS if n not in source]
    assert not missing, f"no gradient check calls {missing}"


def test_every_fast_twin_is_checked_and_has_a_reference():
    """Each pair in vitnp.fast has the reference twin of the same module and name, with no exception (the
    fused LayerNorm → linear and the attention core included), and the fast cases run each fast module that
    holds a pair."""
    fast_pairs = _pairs(vitnp.fast)
    ref_pairs = _pairs(vitnp.ops)
    assert set(fast_pairs) >= {"attention", "block", "gelu", "layernorm", "linear", "ln_linear", "softmax"}
    assert not hasattr(selfcheck, "FAST_ONLY")
    for module, names in fast_pairs.items():
        if module == "model":
            public = {n for n in names if not n.startswith("_")}
            assert public and all(callable(getattr(vitnp.model, n, None)) for n in public), public
            continue
        missing = names - ref_pairs.get(module, set())
        assert not missing, f"vitnp.fast.{module} has no reference twin for {missing}"
        assert getattr(selfcheck._TWINS["fast"], module, None) is importlib.import_module(f"vitnp.fast.{module}"), \
            f"the fast gradient checks do not run vitnp.fast.{module}"
        assert getattr(selfcheck._TWINS["reference"], module, None) is importlib.import_module(f"vitnp.ops.{module}")
    assert all(name.startswith("fast ") for name, _, _ in selfcheck.cases(path="fast"))
    names = [name for name, _, _ in selfcheck.cases(path="fast")]
    assert sum(n.startswith(("fast ln_linear", "fast normalize", "fast qkv_attention")) for n in names) == 3


def test_nan_and_empty_checks_never_pass():
    assert selfcheck.worst_error({"x": 1e-9, "y": float("nan")}) != selfcheck.worst_error({"x": 1e-9})
    assert not selfcheck.worst_error({"x": float("nan"), "y": 1e-9}) <= 1.0
    assert not selfcheck.worst_error({"x": 1e-9, "y": float("nan")}) <= 1.0
    assert not selfcheck.worst_error({}) <= 1.0


def test_broken_backward_is_caught():
    """A convolution backward with dx off by a factor must fail on x by a wide margin and pass on W and b.
    (A convolution, not an exercise of the course edition: this file ships with the student copy.)"""
    from vitnp.ops.conv import conv2d_backward, conv2d_forward

    def wrong_backward(dout, cache):
        dx, dW, db = conv2d_backward(dout, cache)
        return 0.5 * dx, dW, db

    rng = np.random.default_rng(0)
    errors = check_pair(conv2d_forward, wrong_backward,
                        dict(x=rng.standard_normal((2, 5, 4, 3)), W=rng.standard_normal((3, 3, 3, 2)),
                             b=rng.standard_normal(2)), kwargs={"padding": 1})
    assert errors["x"] > 1e-2
    assert errors["W"] < OP_TOL and errors["b"] < OP_TOL


def test_numerical_gradient_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 3.0]])
    g = numerical_gradient(lambda: float(np.sum(np.sin(x) * x)), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-9, atol=1e-10)
    assert np.array_equal(x, [[0.5, -1.0], [2.0, 3.0]]), "x must be restored"


def test_rel_error_scale_and_shape_checks():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error([1.0, 0.0], [1.0, 1e-3]) == pytest.approx(1e-3 / 2.0)   # scale: max|a| + max|n|
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(2), np.ones(3))
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, np.ones(2, dtype=np.float32))


def test_nan_inf_and_empty_checks_never_pass():
    """rel_error is inf for a NaN or an infinity on either side; a check of zero entries reports inf."""
    good = np.array([1.0, 2.0])
    for bad in (np.array([1.0, np.nan]), np.array([np.inf, 2.0]), np.array([-np.inf, np.nan])):
        assert rel_error(bad, good) == np.inf and rel_error(good, bad) == np.inf
    x = np.linspace(-1.0, 1.0, 10)
    loss = lambda: float(np.sum(x ** 2))
    assert check_gradients(loss, {"x": x}, {"x": np.full(10, np.nan)})["x"] == np.inf    # a NaN backward
    assert check_gradients(loss, {"x": x}, {"x": 2 * x}, max_checks=0)["x"] == np.inf    # nothing checked
    empty = np.zeros(0)
    assert check_gradients(lambda: 0.0, {"e": empty}, {"e": empty})["e"] == np.inf
    with pytest.raises(ValueError, match="max_checks"):
        check_gradients(loss, {"x": x}, {"x": 2 * x}, max_checks=-1)
    errors = check_pair(layernorm_forward, lambda d, c: (d * np.nan, d.sum(0), d.sum(0)),
                        dict(x=np.ones((2, 3)) + np.eye(2, 3), gamma=np.ones(3), beta=np.zeros(3)))
    assert not errors["x"] <= OP_TOL and selfcheck.worst_error(errors) == np.inf


def test_sampled_checks_compare_only_the_sample():
    x = np.linspace(-1.0, 1.0, 100)
    errors = check_gradients(lambda: float(np.sum(x ** 2)), {"x": x}, {"x": 2 * x}, max_checks=7)
    assert errors["x"] < 1e-9


def test_cli_table_and_exit_code(monkeypatch, capsys):
    from vitnp.cli.main import main
    monkeypatch.setattr(selfcheck, "cases", lambda path: [("good", 1e-7, lambda: {"x": 1e-9}),
                                                          ("bad", 1e-7, lambda: {"x": 1e-3})])
    assert main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "good" in out and "NO" in out and "FAILED" in out
    monkeypatch.setattr(selfcheck, "cases", lambda path: [("nan", 1e-7, lambda: {"x": 1e-9, "y": float("nan")})])
    assert main(["gradcheck"]) == 1
    monkeypatch.setattr(selfcheck, "cases", lambda path: [("good", 1e-7, lambda: {"x": 1e-9})])
    assert main(["gradcheck"]) == 0
