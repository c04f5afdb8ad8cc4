"""Layers (Keras names), losses, initializers and regularizers, all built on graphc's graph.

>>> import graphc as gc
>>> model = gc.nn.Sequential([gc.nn.Dense(256, activation="relu"), gc.nn.Dense(10)], input_shape=(784,))
>>> model.count_params()
203530
"""

from . import init, losses, regularizers
from .conv import (
    AveragePooling2D,
    AvgPool2D,
    Conv1D,
    Conv2D,
    Conv2DTranspose,
    GlobalAveragePooling2D,
    MaxPool1D,
    MaxPool2D,
    MaxPooling1D,
    MaxPooling2D,
    UpSampling2D,
)
from .layers import (
    Activation,
    BatchNormalization,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Input,
    Layer,
    Sequential,
    get_activation,
    mask_of,
)
from .models import Lambda, LeakyReLU, Model, Reshape
from .recurrent import GRU, LSTM, RNN, Bidirectional, SimpleRNN

__all__ = ["Activation", "BatchNormalization", "Dense", "Dropout", "Embedding", "Flatten", "Input", "Layer",
           "Sequential", "get_activation", "Lambda", "LeakyReLU", "Model", "Reshape", "init", "losses", "regularizers",
           "AveragePooling2D", "AvgPool2D", "Conv1D", "Conv2D", "Conv2DTranspose", "GlobalAveragePooling2D",
           "MaxPool1D", "MaxPool2D", "MaxPooling1D", "MaxPooling2D", "UpSampling2D",
           "GRU", "LSTM", "RNN", "Bidirectional", "SimpleRNN", "mask_of"]
