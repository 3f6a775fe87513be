"""The LSTM cell as a composition (Matching Networks' full context embeddings need it).

Read next: ``../nn/``.
"""
from ..engine import ops


def lstm_cell(x, h, c, w_ih, w_hh, b):
    """One LSTM step. x (N, I), h and c (N, H), w_ih (I, 4H), w_hh (H, 4H), b (4H,).

    Gates in the order input, forget, cell, output:
        i, f, g, o = split(x w_ih + h w_hh + b);  c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c')
    Returns (h', c').
    """
    hidden = h.shape[-1]
    if w_ih.shape[-1] != 4 * hidden or w_hh.shape != (hidden, 4 * hidden):
        raise ValueError(f"lstm_cell: hidden size {hidden} needs w_ih (I, {4 * hidden}) and "
                         f"w_hh ({hidden}, {4 * hidden}); got {w_ih.shape}, {w_hh.shape}")
    gates = x @ w_ih + h @ w_hh + b
    i, f, g, o = (gates[..., k * hidden:(k + 1) * hidden] for k in range(4))
    c_next = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
    return ops.sigmoid(o) * ops.tanh(c_next), c_next
