"""The Transformer MLP of Eq 3: two dense layers with a GELU between, D -> M -> D, with dropout after
each dense layer (as in the reference code).  The paper's training table (Appendix B.1, Table 3) sets the rate to
0.1 on ImageNet and ImageNet-21k and to 0.0 on JFT-300M.
"""
from .dropout import dropout_backward, dropout_forward
from .gelu import gelu_backward, gelu_forward
from .linear import linear_backward, linear_forward


def mlp_forward(x, W1, b1, W2, b2, gelu="exact", dropout=0.0, rng=None, train=False):
    """MLP(x) = dropout(GELU(x W1 + b1) W2 + b2), with dropout on the hidden layer too.

    x: (..., D)   W1: (D, M)   b1: (M,)   W2: (M, D)   b2: (D,)   ->   out: (..., D), cache

    cache = (c1, c_act, c_d1, c2, c_d2): the caches of linear 1, GELU, dropout 1, linear 2, dropout 2, in
    the forward's order, what mlp_backward reads.
    """
    h, c1 = linear_forward(x, W1, b1)                 # (..., M)
    h, c_act = gelu_forward(h, gelu)
    h, c_d1 = dropout_forward(h, dropout, rng, train)
    out, c2 = linear_forward(h, W2, b2)               # (..., D)
    out, c_d2 = dropout_forward(out, dropout, rng, train)
    return out, (c1, c_act, c_d1, c2, c_d2)


def mlp_backward(dout, cache):
    """Gradients of MLP(x), Eq 3: returns dx (..., D), dW1 (D, M), db1 (M,), dW2 (M, D), db2 (D,)."""
    ### BEGIN SOLUTION
    c1, c_act, c_d1, c2, c_d2 = cache
    dout = dropout_backward(dout, c_d2)               # out = dropout(out)
    dh, dW2, db2 = linear_backward(dout, c2)          # out = h W2 + b2
    dh = dropout_backward(dh, c_d1)                   # h = dropout(h)
    dh = gelu_backward(dh, c_act)                     # h = GELU(h)
    dx, dW1, db1 = linear_backward(dh, c1)            # h = x W1 + b1
    return dx, dW1, db1, dW2, db2
    ### END SOLUTION
