"""NumPy reference of fused cosine attention (Matching Networks), forward and backward.

Shapes: queries q (B, Q, D), support s (B, S, D), support labels y (B, S, N) (one-hot or soft).
With the smooth norm r(v) = sqrt(|v|² + eps²) and v̂ = v / r(v):

    forward:   A[b,i,j] = softmax_j(q̂[b,i]·ŝ[b,j]),     out[b,i,:] = Σ_j A[b,i,j] y[b,j,:]
    backward:  given g = ∂L/∂out (B, Q, N):
               dA = g yᵀ;   dZ = A ⊙ (dA − Σ_j A dA);   dq̂ = dZ ŝ;   dŝ = dZᵀ q̂;   dy = Aᵀ g
               dv = dv̂ / r − v (v · dv̂) / r³   for v = q, s

This must equal the composite ``functional.cosine_attention`` (tested). The backward returns
the three gradients packed into one flat array (dq, ds, dy), the form the engine's single-output
primitive needs; ``unpack`` splits it.

Read next: ``kernels/norm_ref.py`` (batch norm in NumPy: the spec).
"""
import numpy as np


def _normalize(v, eps):
    r = np.sqrt((v * v).sum(-1, keepdims=True) + eps * eps)
    return v / r, r


def _attention(q, s, eps):
    qh, rq = _normalize(q, eps)
    sh, rs = _normalize(s, eps)
    z = qh @ np.swapaxes(sh, -1, -2)
    z = z - z.max(-1, keepdims=True)
    a = np.exp(z)
    return a / a.sum(-1, keepdims=True), qh, rq, sh, rs


def cosine_attention(q, s, y, eps=1e-8):
    """out (B, Q, N) = softmax over support of cosine similarities, times the labels."""
    return _attention(q, s, eps)[0] @ y


def _norm_backward(v, r, dvh):
    return dvh / r - v * (v * dvh).sum(-1, keepdims=True) / r ** 3


def cosine_attention_backward(q, s, y, g, eps=1e-8):
    """Packed gradients concat(vec(dq), vec(ds), vec(dy)) of ⟨g, cosine_attention(q, s, y)⟩."""
    a, qh, rq, sh, rs = _attention(q, s, eps)
    da = g @ np.swapaxes(y, -1, -2)
    dz = a * (da - (a * da).sum(-1, keepdims=True))
    dq = _norm_backward(q, rq, dz @ sh)
    ds = _norm_backward(s, rs, np.swapaxes(dz, -1, -2) @ qh)
    dy = np.swapaxes(a, -1, -2) @ g
    return np.concatenate([dq.ravel(), ds.ravel(), dy.ravel()])


def unpack(packed, q_shape, s_shape, y_shape):
    """Split a packed gradient back into (dq, ds, dy)."""
    nq, ns = int(np.prod(q_shape)), int(np.prod(s_shape))
    return (packed[:nq].reshape(q_shape), packed[nq:nq + ns].reshape(s_shape),
            packed[nq + ns:].reshape(y_shape))
