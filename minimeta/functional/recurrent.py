"""The LSTM cell as a composition (Matching Networks' full context embeddings need it).

Read next: ``minimeta/nn/__init__.py`` (modules with functional parameters).
"""
from ..engine import ops


def lstm_cell(x, h, c, w_ih, w_hh, b):
    """One LSTM step. x (N, I), h (N, S), c (N, H), w_ih (I, 4H), w_hh (S, 4H), b (4H,).

    The recurrent input h is usually the previous hidden state (S = H); the attention LSTM of
    Matching Networks feeds it the hidden state concatenated with a read-out (S = 2H).
    Gates in the order input, forget, cell, output:
        i, f, g, o = split(x w_ih + h w_hh + b);  c' = σ(f) c + σ(i) tanh(g);  h' = σ(o) tanh(c')
    Returns (h', c').
    """
    hidden = c.shape[-1]
    if w_ih.shape[-1] != 4 * hidden or w_hh.shape != (h.shape[-1], 4 * hidden):
        raise ValueError(f"lstm_cell: cell size {hidden} and recurrent input {h.shape} need "
                         f"w_ih (I, {4 * hidden}) and w_hh ({h.shape[-1]}, {4 * hidden}); got "
                         f"{w_ih.shape}, {w_hh.shape}")
    gates = x @ w_ih + h @ w_hh + b
    i, f, g, o = (gates[..., k * hidden:(k + 1) * hidden] for k in range(4))
    c_next = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
    return ops.sigmoid(o) * ops.tanh(c_next), c_next
