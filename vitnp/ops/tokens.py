"""The class token and the two readouts of the encoder output (Eq 1 and Eq 4, Appendix D.3).

'token': prepend a learnable x_class to the patch tokens, and read y from row 0 after the encoder,
y = LN(z_L⁰).  'gap': no class token; average the N patch tokens instead.
"""
import numpy as np


def class_token_forward(x, x_class):
    """z = [x_class; x_p¹E; …; x_pᴺE]  (the first part of Eq 1).

    x: (B, N, D)   x_class: (D,)   ->   z: (B, N+1, D), cache

    cache = None: class_token_backward needs nothing but dz.
    """
    B, N, D = x.shape
    z = np.empty((B, N + 1, D), dtype=np.result_type(x, x_class))
    z[:, 0] = x_class                             # the same learned vector for every image
    z[:, 1:] = x
    return z, None


def class_token_backward(dz, cache):
    """Gradients of z = [x_class; x] (Eq 1): returns dx (B, N, D) and dx_class (D,)."""
    ### BEGIN SOLUTION
    return dz[:, 1:], dz[:, 0].sum(0)
    ### END SOLUTION


def readout_forward(z, mode):
    """y from the encoder output: z[:, 0] for 'token' (Eq 4), the mean over tokens for 'gap'.

    z: (B, T, D)   ->   y: (B, D), cache

    cache = (mode, z.shape): what readout_backward reads.
    """
    if mode == "token":
        return z[:, 0], (mode, z.shape)
    if mode == "gap":
        return z.mean(1), (mode, z.shape)
    raise ValueError(f"readout mode must be 'token' or 'gap', got {mode!r}")


def readout_backward(dy, cache):
    """Gradients of readout_forward (Eq 4): returns dz (B, T, D)."""
    ### BEGIN SOLUTION
    mode, shape = cache
    dz = np.zeros(shape, dtype=dy.dtype)
    if mode == "token":
        dz[:, 0] = dy
    else:
        dz[:] = dy[:, None, :] * (1.0 / shape[1])
    return dz
    ### END SOLUTION
