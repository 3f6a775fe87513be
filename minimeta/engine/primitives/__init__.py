"""The primitive set: every differentiable op in minimeta is one of these classes (or made of them).

| file            | primitives                                                               |
|-----------------|--------------------------------------------------------------------------|
| elementwise.py  | Add Sub Mul Div Neg Pow PowScalar Exp Log Sqrt Tanh Sigmoid Relu Abs       |
|                 | Maximum Where Cast                                                       |
| reductions.py   | Sum Max LogSumExp                                                        |
| shape.py        | Reshape Transpose BroadcastTo GetItem ScatterAdd Concatenate               |
| linalg.py       | MatMul                                                                   |
| conv.py         | Conv2d Conv2dInputGrad Conv2dWeightGrad MaxPool2d (a closed family)        |

Read ``elementwise.py`` first.
"""
