"""ResNet backbones (18, 34, 50, 101, 152) and a plain registered ``resnet`` classifier.

K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(Table 1: BasicBlock for 18/34 layers, Bottleneck for 50/101/152).

The backbone is a set of functions on Keras tensors, so a model can cut it anywhere:
:func:`resnet_stem`, :func:`resnet_stage` (stage ``k`` in 1..4 is He et al.'s ``conv{k+1}_x``,
torchvision's ``layer{k}``, Keras' ``conv{k+1}``) and :func:`resnet_backbone`, which returns
every stage output by name. ResFace (``fer_keras.models.resface``) cuts after stage 2;
issue 15 (ResNet-101 transfer learning) uses the whole backbone.

Choices:

- Layout and layer names are those of ``keras.applications`` ResNet50/101/152 (original
  ResNet v1: the stride of a down-sampling Bottleneck is on its first 1x1 convolution,
  explicit zero padding before the 7x7/2 stem convolution and the 3x3/2 max-pool, BN
  epsilon 1.001e-5; BN momentum 0.9 as PyTorch, not Keras' 0.99, a training
  setting that weights do not carry). With ``use_bias=True`` and the ``"imagenet"`` stem the network is
  Keras' own, weight for weight, so Keras' ImageNet files load by layer name
  (``weights=path``). ``use_bias=False`` (the default, as torchvision: a bias before batch
  normalisation is redundant) gives the usual parameter counts (ResNet-18 at 1000 classes:
  11,689,512).
- BasicBlock (18/34), which Keras does not ship, follows the same naming
  (``conv3_block1_1_conv``, ``..._0_conv`` the projection shortcut) and torchvision's
  padding: a stride-2 3x3 convolution pads one pixel on every side.
- Stems (``stem``): ``"imagenet"`` (7x7/2 conv, 3x3/2 max-pool: 224 -> 56, the paper's),
  ``"small"`` (3x3/1 conv, no pool: 48 -> 48) and ``"small_s2"`` (3x3/2 conv, no pool:
  48 -> 24), for 48x48 faces where the ImageNet stem would leave 2x2 maps at stage 4.
- Weights are never downloaded. ``weights=path`` loads a local Keras ``.h5`` file by layer
  name: ``keras.applications``' ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``, or
  ``model.save("x.h5")`` of any model with these layer names (a trained ``resnet``, to start
  a ResFace from it). Layers absent from the file keep their initial values; layers whose
  weights differ in shape are an error.
"""

from __future__ import annotations

import os

import keras

from fer_keras.layers import BatchNormalization
from fer_keras.losses import CrossEntropy
from fer_keras.objective import Objective, Term
from fer_keras.registry import Preset, register_model
from fer_spec import InputSpec

# depth -> (block type, blocks per stage), He et al. 2016, Table 1.
DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STEMS = ("imagenet", "small", "small_s2")
STAGE_WIDTHS = (64, 128, 256, 512)
BN_EPSILON = 1.001e-5
BN_MOMENTUM = 0.9  # PyTorch's 0.1 (the papers' platform) and the project's other models; Keras' is 0.99
# The file keras.applications would download for ``weights="imagenet"`` (no classifier).
KERAS_IMAGENET_FILES = {depth: f"resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5" for depth in (50, 101, 152)}


def _check_depth(depth: int) -> None:
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}. Received: depth={depth}")


def _check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}. Received: stem={stem!r}")


def stage_channels(depth: int, stage: int) -> int:
    """Output channels of stage ``stage`` (1..4): 64..512 for BasicBlock, 4x for Bottleneck."""
    return STAGE_WIDTHS[stage - 1] * (1 if DEPTHS[depth][0] == "basic" else 4)


def _conv_bn(x, filters, kernel_size, strides, name, use_bias, relu=True):
    if kernel_size > 1 and strides > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
    padding = "valid" if kernel_size == 1 or strides > 1 else "same"
    x = keras.layers.Conv2D(filters, kernel_size, strides, padding=padding, use_bias=use_bias, kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, kind, width, strides, projection, name, use_bias):
    """One residual block: BasicBlock (two 3x3) or Bottleneck (1x1, 3x3, 1x1 at 4x width)."""
    out_channels = width if kind == "basic" else 4 * width
    shortcut = _conv_bn(x, out_channels, 1, strides, f"{name}_0", use_bias, relu=False) if projection else x
    if kind == "basic":
        x = _conv_bn(x, width, 3, strides, f"{name}_1", use_bias)
        x = _conv_bn(x, width, 3, 1, f"{name}_2", use_bias, relu=False)
    else:
        x = _conv_bn(x, width, 1, strides, f"{name}_1", use_bias)
        x = _conv_bn(x, width, 3, 1, f"{name}_2", use_bias)
        x = _conv_bn(x, out_channels, 1, 1, f"{name}_3", use_bias, relu=False)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def resnet_stem(x, stem: str = "imagenet", use_bias: bool = False):
    """The stem (see the module docstring): 64 channels at 1/4 (``"imagenet"``), 1/1
    (``"small"``) or 1/2 (``"small_s2"``) of the input size."""
    _check_stem(stem)
    if stem == "imagenet":
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = keras.layers.Conv2D(64, 7, 2, use_bias=use_bias, kernel_initializer="he_normal", name="conv1_conv")(x)
        x = BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="conv1_bn")(x)
        x = keras.layers.ReLU(name="conv1_relu")(x)
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        return keras.layers.MaxPooling2D(3, 2, name="pool1_pool")(x)
    return _conv_bn(x, 64, 3, 2 if stem == "small_s2" else 1, "conv1", use_bias)


def resnet_stage(x, depth: int, stage: int, use_bias: bool = False):
    """Stage ``stage`` (1..4) of ResNet-``depth``: its blocks, stride 2 in the first block of
    stages 2-4, a projection shortcut where the shape changes (Keras' layer names
    ``conv{stage+1}_block{i}_...``)."""
    _check_depth(depth)
    if stage not in (1, 2, 3, 4):
        raise ValueError(f"stage must be 1, 2, 3 or 4. Received: stage={stage}")
    kind, blocks = DEPTHS[depth]
    for i in range(blocks[stage - 1]):
        strides = 2 if i == 0 and stage > 1 else 1
        projection = i == 0 and (stage > 1 or kind == "bottleneck")
        x = _block(x, kind, STAGE_WIDTHS[stage - 1], strides, projection, f"conv{stage + 1}_block{i + 1}", use_bias)
    return x


def resnet_backbone(x, depth: int = 50, stem: str = "imagenet", use_bias: bool = False, stages: int = 4) -> dict:
    """ResNet-``depth`` on Keras tensor ``x``: ``{"stem": ..., "stage1": ..., ..., "stage{stages}": ...}``.

    Args:
        x: Keras tensor ``[B, H, W, C]`` (any size and channel count).
        depth: int. 18, 34, 50, 101 or 152.
        stem: str. ``"imagenet"``, ``"small"`` or ``"small_s2"``.
        use_bias: bool. Biases in the convolutions (Keras' ImageNet files have them).
        stages: int. Build stages 1..``stages`` only.
    """
    _check_depth(depth)
    _check_stem(stem)
    outputs = {"stem": resnet_stem(x, stem, use_bias)}
    for stage in range(1, stages + 1):
        outputs[f"stage{stage}"] = resnet_stage(outputs["stem"] if stage == 1 else outputs[f"stage{stage - 1}"], depth, stage, use_bias)
    return outputs


def check_weights(weights: str | None, depth: int) -> None:
    """Raise before any graph is built: ``"imagenet"`` (never downloaded: the message names
    the file to provide) or a path that is not a local ``.h5`` file."""
    if weights is None:
        return
    if weights == "imagenet":
        wanted = KERAS_IMAGENET_FILES.get(depth)
        hint = (f"save keras.applications' file {wanted} (ResNet{depth}, include_top=False) locally and pass weights=<its path>, "
                "with use_bias=True, stem='imagenet' and 3 channels (Keras' layout)") if wanted else (
                f"Keras publishes no ImageNet ResNet-{depth}; convert a checkpoint into a Keras .h5 with this builder's layer names and pass weights=<its path>")
        raise ValueError(f"ImageNet weights are never downloaded: {hint}.")
    if not str(weights).endswith((".h5", ".hdf5")):
        raise ValueError(f"weights must be 'imagenet' or a Keras .h5 file. Received: weights={weights!r}")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"No weights file at {weights}.")


def load_weights(model: keras.Model, weights: str | None, depth: int) -> keras.Model:
    """Load ``weights`` (see :func:`check_weights`) into ``model`` by layer name; returns the model."""
    check_weights(weights, depth)
    if weights is not None:
        model.load_weights(weights, by_name=True)
    return model


def resnet_objective(model: keras.Model, target_kind: str, label_smoothing: float = 0.0) -> Objective:
    """Cross-entropy from the ``logits`` output (class ids, or any distribution the data gives)."""
    return Objective([Term("crossentropy", CrossEntropy(label_smoothing, from_logits=True), output="logits")])


FER_SPEC = InputSpec(image_size=(44, 44), source_size=(48, 48), channels=1)
IMAGENET_SPEC = InputSpec(image_size=(224, 224), source_size=(240, 240), channels=3)
PRESETS = [
    Preset(
        "fer",
        "ResNet on 48x48 faces (random 44x44 crops, flips, small rotation/scale), 3x3/2 stem; SGD Nesterov 0.9 lr 0.05, "
        "weight decay 5e-4, warm-up 1 epoch + cosine over 20 epochs, batch 64 (as resface's ferplus preset).",
        {"optimizer": "sgd", "nesterov": True, "learning_rate": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine",
         "warmup_epochs": 1, "batch_size": 64, "epochs": 20},
        model_options={"stem": "small_s2"},
    ),
    Preset(
        "imagenet",
        "ResNet at 224x224 RGB with the ImageNet stem (random 224 crops of 240, flips); SGD 0.9 lr 0.1, batch 64, cosine.",
        {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine", "batch_size": 64, "epochs": 40},
        input_spec=IMAGENET_SPEC,
        model_options={"stem": "imagenet"},
    ),
]


def classifier(inputs, features, num_classes: int, dropout: float, weights: str | None, depth: int, name: str) -> keras.Model:
    """The ResNet head every model of this family ends with: global average pooling,
    optional dropout, a float32 Dense (``logits``) and softmax (``probabilities``); the
    functional model ``{"face": inputs} -> {"probabilities", "logits"}`` with ``weights``
    (a local ``.h5`` file, see :func:`check_weights`) loaded by layer name."""
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="predictions", dtype="float32")(x)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    model = keras.Model({"face": inputs}, {"probabilities": probabilities, "logits": logits}, name=name)
    return load_weights(model, weights, depth)


def check_dropout(dropout) -> None:
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")


@register_model("resnet", input_spec=FER_SPEC, presets=PRESETS, default_preset="fer", objective=resnet_objective)
def build_resnet(
    num_classes: int,
    input_spec: InputSpec = FER_SPEC,
    depth: int = 18,
    stem: str = "small_s2",
    use_bias: bool = False,
    dropout: float = 0.0,
    weights: str | None = None,
) -> keras.Model:
    """A ResNet classifier: backbone, global average pooling, optional dropout, Dense.

    Args:
        num_classes: int. Number of classes.
        input_spec: InputSpec. Size and channels of the ``face`` input.
        depth, stem, use_bias: see :func:`resnet_backbone`.
        dropout: float. Before the classifier. Defaults to 0.
        weights: str or None. A local Keras ``.h5`` file loaded by layer name (see :func:`check_weights`).

    Returns:
        A functional model ``{"face": [B, H, W, C]} -> {"probabilities", "logits"}`` ([B, K] float32).
    """
    check_dropout(dropout)
    check_weights(weights, depth)
    inputs = keras.Input(shape=input_spec.input_shapes()["face"], name="face")
    x = resnet_backbone(inputs, depth, stem, use_bias)["stage4"]
    return classifier(inputs, x, num_classes, dropout, weights, depth, name=f"resnet{depth}")
