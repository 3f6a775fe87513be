"""``minimeta.nn``: modules with functional parameters (``model(x, params)``) and backbones.

Read next: ``minimeta/nn/module.py`` (the Module: model(x, params)).
"""
from .module import Module, sub_params
from .layers import (Sequential, Linear, Conv2d, BatchNorm2d, ReLU, Tanh, MaxPool2d, Flatten,
                     LSTMCell)
from .backbones import conv4, mlp, relation_embedding, relation_module
from .fce import FullContextEmbedding

__all__ = ["Module", "sub_params", "Sequential", "Linear", "Conv2d", "BatchNorm2d", "ReLU", "Tanh",
           "MaxPool2d", "Flatten", "LSTMCell", "conv4", "mlp",
           "relation_embedding", "relation_module", "FullContextEmbedding"]
