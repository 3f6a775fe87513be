"""The primitive set: every differentiable op in minimeta is one of these 45 classes (or made of
them). Each file holds its classes and, below them, the user-facing functions that check their
arguments and apply them (``ops.py`` gathers those functions into one namespace). The files in
reading order, which is also their import order (each imports only files above it):

| file              | primitives                                                              |
|-------------------|-------------------------------------------------------------------------|
| elementwise.py    | Add Sub Mul Div Neg Pow PowScalar Exp Log Sqrt Tanh Sigmoid Relu         |
|                   | ReluGrad (ReLU's VJP: a closed family) Abs Maximum Where Cast           |
| shape.py          | Reshape Transpose BroadcastTo GetItem ScatterAdd Concatenate             |
| reductions.py     | Sum Max LogSumExp MeanSquaredError (and ``unbroadcast``, where          |
|                   | broadcasting is undone)                                                 |
| linalg.py         | MatMul (with gemm's transpose flags: a closed family), Affine           |
|                   | (x @ w + b: a linear layer as one op)                                   |
| fused.py          | FusedVJP FusedVJPVJP Alias, and the base class Fused (kernel forward    |
|                   | and VJP, higher orders through a composite)                             |
| attention.py      | CosineAttention (fused) and its composite                               |
| normalization.py  | BatchNorm (fused) and its composite                                     |
| conv.py           | Conv2d Conv2dInputGrad Conv2dWeightGrad (a closed family), BiasGrad     |
|                   | (the conv bias's gradient), MaxPool2d MaxPool2dBackward MaxPool2dGather |
|                   | (max pooling, its scatter and gather: each other's VJPs, closed)        |
| causal.py         | CausalConv1d CausalConv1dInputGrad CausalConv1dWeightGrad (SNAIL's      |
|                   | dilated causal convolution: a closed family)                            |

Read next: ``minimeta/engine/primitives/elementwise.py`` (arithmetic and elementwise primitives).
"""
