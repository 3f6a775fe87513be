"""Similarities and distances for metric-based learners, and the Matching Networks read-out.

Read next: ``minimeta/functional/sequence.py`` (SNAIL's gated causal convolution and attention).
"""
import numpy as np

from ..engine import ops
from ..engine.primitives.elementwise import floating
from ..engine.primitives.attention import cosine_attention as _fused_attention
from ..engine.primitives.attention import cosine_attention_composite, smooth_norm  # noqa: F401


def cosine_similarity(a, b, eps=1e-8):
    """Cosine similarity along the last axis, broadcasting the others.

    Each norm is sqrt(|v|² + eps²), so a zero vector gives similarity 0 with finite
    derivatives of every order (a plain |v| has an infinite derivative at 0).

    >>> import minimeta as mm
    >>> round(cosine_similarity(mm.tensor([1.0, 0.0]), mm.tensor([2.0, 0.0])).item(), 6)
    1.0
    """
    a_hat = a / smooth_norm(a, eps)
    b_hat = b / smooth_norm(b, eps)
    return ops.sum(a_hat * b_hat, -1)


def pairwise_sq_distances(a, b):
    """D[..., i, j] = |a_i − b_j|² for a (..., n, d) and b (..., m, d), as |a|² + |b|² − 2 a·b,
    both sets first centred on the mean of b (which changes no distance, nor its derivatives).

    The expanded form uses one matmul (fast, no (n, m, d) difference array) but can round to
    tiny negatives when points coincide; it is left unclamped so its derivatives stay exact.
    Uncentred, it cancels where the points are far from the origin against their distances:
    in float32, 1600-d embeddings of |z|² ≈ 1e4 at distances 4–14 kept about 3 digits of the
    gradient (PyTorch's with this formula the same); centred, they keep 5, as the difference
    form (Snell et al.'s code) does (``tests/test_functional.py``).
    """
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"pairwise_sq_distances: points a {a.shape} and b {b.shape} must be "
                         "(..., n, d) and (..., m, d), of one width d")
    if b.shape[-2]:
        centre = ops.mean(b, -2, keepdims=True)                    # (..., 1, d)
        a, b = a - centre, b - centre
    aa = ops.sum(a * a, -1, keepdims=True)                        # (..., n, 1)
    bb = ops.expand_dims(ops.sum(b * b, -1), -2)                   # (..., 1, m)
    return aa + bb - 2.0 * ops.matmul(a, b, trans_b=True)         # a bᵀ, no transpose op


def cosine_attention(queries, support, support_onehot, eps=1e-8, fused=True):
    """Matching Networks read-out: ŷ = Σ_i softmax_i(cos(q, s_i)) · y_i.

    queries (..., q, d), support (..., s, d), support_onehot (..., s, n) → (..., q, n), the
    attention-weighted label distribution of each query (rows sum to 1). With ``fused=True``
    and 3-D inputs (a task axis) it runs the fused primitive (one kernel forward, one backward);
    otherwise, or with ``fused=False``, the composite (``cosine_attention_composite``, defined
    in ``engine/primitives/attention.py``), which is its reference definition.
    """
    given = tuple(getattr(support_onehot, "shape", None) or np.shape(support_onehot))
    if len(given) < 2 or given[-2] != support.shape[-2]:
        raise ValueError(f"cosine_attention: support_onehot {given} must be (..., s, n) for "
                         f"support {support.shape}: one-hot rows (one_hot), not labels")
    if fused and queries.ndim == 3 and support.ndim == 3 and len(given) == 3:
        # NumPy's promotion, as the composite's (a float64 one-hot had given float32 here)
        q, s = ops.constant(queries, support), ops.constant(support, queries)
        q, s, y = floating("cosine_attention", q, s, ops.constant(support_onehot, q))
        return _fused_attention(q, s, y, eps)
    return cosine_attention_composite(queries, support, support_onehot, eps)


def one_hot(labels, n, dtype=None, like=None):
    """A constant (len(labels), n) Tensor with a 1 in each row's label column (on ``like``'s
    device when given), of ``dtype``: by default ``like``'s when it is floating, else float64
    (``np.eye``'s: a float32 model's one-hot had been float64, and widened what it met).

    >>> one_hot([1, 0], 2).numpy().tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    from ..engine.tensor import Tensor

    labels = np.asarray(labels)
    if not labels.size:                 # ([] is float64 to NumPy: no rows, of any dtype)
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"one_hot: labels must be a vector of integers in [0, {n}), got "
                         f"shape {labels.shape}")
    bad = labels[(labels < 0) | (labels >= n)]
    if bad.size:
        raise ValueError(f"one_hot: labels must lie in [0, {n}), got {bad[0]}")
    if dtype is None:
        kind = getattr(getattr(like, "dtype", None), "kind", None)
        dtype = like.dtype if kind == "f" else np.float64
    eye = np.eye(n, dtype=dtype)[labels]
    return ops.constant(eye, like) if like is not None else Tensor(eye)


def class_means(z, labels, n):
    """Row means of ``z`` (s, d) per label 0..n−1, (n, d): ProtoNet's prototypes.

    Written as onehotᵀ z / counts, one matmul, so it is differentiable at any order.
    """
    onehot = one_hot(labels, n, z.dtype, like=z)     # (checks the labels)
    if not np.bincount(np.asarray(labels), minlength=n).all():  # on the host: no GPU read
        raise ValueError(f"class_means: every class 0..{n - 1} needs at least one example")
    counts = ops.sum(onehot, 0)
    return ops.matmul(onehot, z, trans_a=True) / ops.expand_dims(counts, -1)
