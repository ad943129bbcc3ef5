"""Forward-pass FLOPs and multiply-adds of a Keras model, counted by TensorFlow's profiler.

The model's inference call (``training=False``) is traced into a ``tf.function`` graph for
a fixed batch size, and ``tf.compat.v1.profiler`` sums the ``"flops"`` statistics TensorFlow
registers per op type, from the static shapes of that graph (nothing is run). This is the
TensorFlow backend's graph, so it needs that backend; any model made of Keras layers works,
ours included, since every layer's ops appear in the traced graph or in the functions it
calls (counted too). Control flow (``tf.cond``/``tf.while_loop`` bodies) is not entered.

What is counted (TensorFlow's registered statistics):

- a multiply-add is **2** FLOPs: ``Conv2D``, ``DepthwiseConv2dNative``, ``MatMul``,
  transposed convolutions (``Conv2DBackpropInput``);
- element-wise arithmetic is 1 FLOP per output element: ``BiasAdd``, ``Add``, ``Mul``,
  ``Sub``, ``Rsqrt``, ``Mean``, pooling, ``Softmax``; an inference-mode batch normalisation
  appears as such ``Mul``/``Add`` ops;
- activations (``Relu``, ``Sigmoid``) and data movement (``Pad``, ``Concat``, slicing) have
  no registered statistics: 0 FLOPs;
- a dilated convolution runs, and is counted, on TensorFlow's space-to-batch layout: exact
  when the feature map's sides are multiples of the dilation, slightly more otherwise.

The papers' "FLOPs"/"MFLOPs" (ResNet-18 at 224x224: 1.82 G; ResNet-50: 4.1 G for the
torchvision layout with the stride on the 3x3 convolution, 3.8-3.9 G for He et al.'s original
layout that ``keras.applications.ResNet50`` follows; ResFace's Tables 1-5 and EfficientFace)
are multiply-adds of the convolutions and fully connected layers: compare them with
``count_multiply_adds``, not with ``count_flops``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Op types whose FLOPs are 2 per multiply-add: the weights layers.
MULTIPLY_ADD_OPS = (
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2dNative",
    "Conv2DBackpropInput",
    "MatMul",
    "BatchMatMul",
    "BatchMatMulV2",
    "BatchMatMulV3",
)


def _inference_graph(model: keras.Model, batch_size: int) -> tf.Graph:
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"FLOPs are counted on TensorFlow graphs. Received: backend={keras.backend.backend()}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size}")
    for tensor in model.inputs:
        if any(side is None for side in tensor.shape[1:]):
            raise ValueError(f"FLOPs need a fixed input size; build the model for one. Received: input shape {tensor.shape}")
    # The model's own input structure (a dict for our registered models).
    specs = keras.tree.map_structure(lambda t: tf.TensorSpec((int(batch_size),) + tuple(t.shape[1:]), t.dtype), model.input)
    function = tf.function(lambda inputs: model(inputs, training=False))
    return function.get_concrete_function(specs).graph


def _graphs(graph: tf.Graph):
    """``graph`` and, once per call, the graph of every function it calls (recursively).

    Keras' TensorFlow backend runs some ops as nested ``tf.function`` calls (a grouped
    ``Conv2D`` is compiled with XLA on CPU), which the profiler does not enter on its own.
    """
    yield graph
    for op in graph.get_operations():
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            yield from _graphs(graph._get_function(op.get_attr("f").name).graph)


def _profile(graph: tf.Graph, op_types: str) -> int:
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options.update(output="none", account_type_regexes=[op_types])
    return sum(int(tf.compat.v1.profiler.profile(graph=g, cmd="op", options=options).total_float_ops) for g in _graphs(graph))


def count_flops(model: keras.Model, batch_size: int = 1) -> int:
    """All floating-point operations of one inference forward pass of ``batch_size`` inputs.

    A multiply-add counts as 2 FLOPs; see the module docstring for the other ops.
    ``model`` must have a fixed input size (``model.inputs`` without ``None`` but the batch).
    """
    return _profile(_inference_graph(model, batch_size), ".*")


def count_multiply_adds(model: keras.Model, batch_size: int = 1) -> int:
    """Multiply-adds of the convolutions and matrix products of one inference forward pass:
    the papers' "FLOPs" (``count_flops`` of those ops alone, divided by 2)."""
    return _profile(_inference_graph(model, batch_size), "|".join(MULTIPLY_ADD_OPS)) // 2
