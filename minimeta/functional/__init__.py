"""``minimeta.functional``: neural-network functions as compositions of engine primitives.

Nothing here defines a VJP: every function is built from primitives, so its derivatives of any
order come from the engine. Files, in reading order:

- ``losses.py``: softmax, log_softmax, cross_entropy, mse_loss;
- ``layers.py``: linear, conv2d (with bias), pooling, batch_norm, dropout, flatten;
- ``metric.py``: cosine_similarity, pairwise_sq_distances, cosine_attention (Matching Nets),
  one_hot, class_means (prototypes);
- ``sequence.py``: SNAIL's dense_block (gated causal convolution) and causal_attention, and
  both for queries sharing their support steps;
- ``recurrent.py``: lstm_cell.

Read next: ``minimeta/functional/losses.py`` (softmax, cross-entropy, MSE).
"""
from ..engine.ops import relu, sigmoid, tanh
from .losses import softmax, log_softmax, cross_entropy, mse_loss, accuracy, unread_accuracy
from .layers import (linear, conv2d, max_pool2d, avg_pool2d, batch_norm, dropout, flatten,
                     conv2d_input_grad, conv2d_weight_grad)
from .metric import (cosine_similarity, pairwise_sq_distances, cosine_attention, one_hot,
                     class_means)
from .recurrent import lstm_cell
from .sequence import (causal_attention, causal_attention_queries, causal_mask, dense_block,
                       dense_block_queries)

__all__ = ["relu", "sigmoid", "tanh", "softmax", "log_softmax", "cross_entropy", "mse_loss",
           "accuracy", "unread_accuracy", "linear", "conv2d", "max_pool2d", "avg_pool2d",
           "batch_norm", "dropout", "flatten", "conv2d_input_grad", "conv2d_weight_grad",
           "cosine_similarity", "pairwise_sq_distances", "cosine_attention", "one_hot",
           "class_means", "lstm_cell", "causal_attention", "causal_attention_queries",
           "causal_mask", "dense_block", "dense_block_queries"]
