"""Patch flattening: an image x ∈ R^{H×W×C} becomes x_p ∈ R^{N×(P²·C)}, N = HW/P² (paper §3.1, Eq 1).

Patch i runs row-major over the (H/P)×(W/P) grid; the P²·C numbers of one patch are ordered
(row, col, channel).  With that order, E reshaped to (P, P, C, D) is exactly the kernel of a
stride-P convolution.  Flattening moves numbers and computes nothing, so its backward is the
inverse move.
"""


def patchify_forward(x, P):
    """x_p = flatten(x): (B, H, W, C) -> (B, N, P²C), N = (H/P)(W/P)  (the x_p of Eq 1).

    x: (B, H, W, C)   P: patch side, dividing H and W   ->   x_p: (B, N, P²C) (a contiguous copy), cache

    cache = (x.shape, P): the input's shape (B, H, W, C) and the patch side, what patchify_backward reads.
    """
    B, H, W, C = x.shape
    if H % P or W % P:
        raise ValueError(f"patchify: image {H}x{W} is not divisible by patch size {P}")
    gh, gw = H // P, W // P
    x_p = x.reshape(B, gh, P, gw, P, C)           # split rows into (grid row, row in patch) ...
    x_p = x_p.transpose(0, 1, 3, 2, 4, 5)         # (B, gh, gw, P, P, C): patches first
    return x_p.reshape(B, gh * gw, P * P * C), (x.shape, P)


def patchify_backward(dx_p, cache):
    """Gradients of the flattening: returns dx (B, H, W, C) = unflatten(dx_p), the same numbers moved back to
    where they came from, from dx_p (B, N, P²C).
    """
    ### BEGIN SOLUTION
    (B, H, W, C), P = cache
    gh, gw = H // P, W // P
    dx = dx_p.reshape(B, gh, gw, P, P, C)          # x_p = x_p.reshape(B, gh * gw, P * P * C)
    dx = dx.transpose(0, 1, 3, 2, 4, 5)            # x_p = x_p.transpose(0, 1, 3, 2, 4, 5), its own inverse
    return dx.reshape(B, H, W, C)                  # x_p = x.reshape(B, gh, P, gw, P, C)
    ### END SOLUTION


def unpatchify(x_p, image_hw, P):
    """Inverse of flattening: (B, N, P²C) -> (B, H, W, C) for an image of size ``image_hw`` = (H, W)."""
    B, N, PPC = x_p.shape
    H, W = image_hw
    gh, gw = H // P, W // P
    if gh * gw != N or PPC % (P * P):
        raise ValueError(f"unpatchify: {N} patches of length {PPC} do not tile a {H}x{W} image with P={P}")
    return patchify_backward(x_p, ((B, H, W, PPC // (P * P)), P))
