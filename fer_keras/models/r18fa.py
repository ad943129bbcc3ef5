"""R18+FA(ML): ResNet-18 with attention blocks and internal feature fusion, trained with a
per-batch random choice between losses and two learning-rate phases.

G. Zhou, Y. Xie, W. Tian, "Multi Loss-based Feature Fusion and Top Two Voting Ensemble
Decision Strategy for Facial Expression Recognition in the Wild"
(``../shared/papers/faml_fga_t2v_ensemble.txt``), Sec. 3.1 (Fig. 1 and 4, Eq. 1-5) and
Sec. 4.1 (settings). FGA (Sec. 3.2) and the ensemble decisions (Sec. 3.3) live in
``fer_keras.fga`` and ``fer_keras.ensemble``.

Network (:func:`build_r18fa`): stem -> stage 1 -> att -> stage 2 -> att -> stage 3 -> att
-> stage 4 -> global average pool -> FC (``fer_keras.models.resnet``'s stages).

- FA's internal feature fusion (``fusion``): the stem's first convolution is
  ``fer_keras.layers.FacialAreaFusion`` (the whole face plus the eyes and mouth areas,
  fused by learnable weighted addition), keeping the stem's kernel, stride and layer name
  ``conv1_conv``; batch norm, ReLU (and the ImageNet stem's max-pool) follow as in
  ``resnet_stem``.
- Attention blocks (``attention1..3``): ``fer_keras.layers.FeatureMapSelfAttention`` (a
  pre-norm ViT encoder block over the map's patches, with residuals) after each of the first
  three residual stages (Fig. 4). Each block's patch side is ``ceil(side / token_grid)``,
  so it sees at most ``token_grid x token_grid`` tokens: with the default 14, ViT-B/16's
  14 x 14 grid at 224 x 224 (patches 4, 2, 1 on the 56, 28, 14 maps); at 44 x 44 with the
  3x3/2 stem, 11 x 11, 11 x 11 and 6 x 6 tokens (patches 2, 1, 1 on 22, 11, 6).
- Each flag off gives an ablation row of Table 2 (all off: the plain R18).
- Outputs ``{"probabilities", "logits"}``; inference reads ``probabilities``, the
  objective the ``logits``.

Objective (:func:`r18fa_objective`, ML): each global batch uses exactly one loss, drawn by
the loop from ``(seed, step)`` (``fer_keras.objective.LossChoice``): label-smoothing
cross-entropy (LSR, Eq. 4-5, eps 0.1) with probability ``smoothing_probability``, else
cross-entropy (Eq. 1-2) or, with ``weighted``, cross-entropy weighted by the true class
(WCE, Sec. 4.1). Class weights: ``N / (K n_k)`` of the training set's class counts
(inverse frequency, mean 1 over the training images); ``fer_keras.train`` computes them
from the training data it loads and passes them as the objective option ``class_weights``
(or set them with ``--objective_options``; code building its own objective passes them).
The paper does not give its weights; WCE here is ``w_y * CE`` per image, averaged over the
batch like every loss of the loop (not PyTorch's division by the batch's summed weights,
which would rescale every batch differently).

Learning rate: Adam 3e-4 with cosine annealing, then 1e-5 with a step schedule once the
training loss plateaus: the loop's ``lr_schedule="cosine_then_step_on_plateau"``
(``fer_keras.training.schedules``: the rule, its patience and threshold).

The paper's R18 is pre-trained on MS-Celeb-1M; we have no such weights, so every preset
trains from scratch (``weights`` loads a local ``.h5`` by layer name where one exists).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from fer_keras.layers import BatchNormalization, FacialAreaFusion, FeatureMapSelfAttention
from fer_keras.losses import CrossEntropy
from fer_keras.losses.crossentropy import crossentropy
from fer_keras.models.resnet import BN_EPSILON, BN_MOMENTUM, STEMS, check_dropout, check_weights, classifier, resnet_stage, resnet_stem
from fer_keras.objective import LossChoice, Objective, Term
from fer_keras.registry import Preset, register_model
from fer_keras.saving import model_spec
from fer_spec import InputSpec

# Kernel size and stride of each stem's first convolution (``fer_keras.models.resnet``).
STEM_CONV = {"imagenet": (7, 2), "small": (3, 1), "small_s2": (3, 2)}


def smoothing_for_eq4(epsilon: float, num_classes: int) -> float:
    """The ``label_smoothing`` of ``fer_keras.losses.crossentropy`` that gives Eq. 4's target.

    Eq. 4 puts ``1 - eps`` on the true class and ``eps / (C - 1)`` on each other one; the
    library's smoothing ``s`` puts ``1 - s + s / C`` and ``s / C``: equal for ``s = eps C / (C - 1)``.
    """
    if num_classes < 2 or not 0.0 <= epsilon < (num_classes - 1) / num_classes:
        raise ValueError(f"epsilon must be in [0, (C - 1) / C) with C >= 2 classes. Received: epsilon={epsilon}, C={num_classes}")
    return epsilon * num_classes / (num_classes - 1)


class WeightedCrossEntropy:
    """Cross-entropy (Eq. 1-2) from logits, times the weight of each image's true class.

    Args:
        class_weights: sequence of ``K`` floats, the weight of each class.
    """

    def __init__(self, class_weights):
        self.class_weights = np.asarray(class_weights, dtype="float32")
        if self.class_weights.ndim != 1 or np.any(self.class_weights < 0):
            raise ValueError(f"class_weights must be K non-negative floats. Received: class_weights={class_weights}")

    def __call__(self, targets, logits):
        weights = ops.take(ops.convert_to_tensor(self.class_weights), targets.labels)
        return weights * crossentropy(targets, logits, from_logits=True)


def r18fa_objective(model: keras.Model, target_kind: str, smoothing_probability: float = 0.8, epsilon: float = 0.1, weighted: bool = False, class_weights=None) -> Objective:
    """ML (Sec. 3.1): one loss per batch, LSR with probability ``smoothing_probability``.

    Args:
        model: the network (its ``ModelSpec`` gives the number of classes).
        target_kind: what the data gives (``"labels"``; a ``"distribution"`` is the target of
            both losses as it stands: smoothing applies to class ids only).
        smoothing_probability: float in [0, 1]. Probability of LSR (0.8 RAF-DB, 0.2 AffectNet).
        epsilon: float. Eq. 4's eps (0.1, Sec. 4.1).
        weighted: bool. The other loss is WCE (AffectNet) rather than CE (RAF-DB).
        class_weights: ``K`` floats for WCE (``fer_keras.train`` passes the training set's
            inverse frequencies); required when ``weighted``.
    """
    if not 0.0 <= float(smoothing_probability) <= 1.0:
        raise ValueError(f"smoothing_probability must be in [0, 1]. Received: smoothing_probability={smoothing_probability}")
    num_classes = model_spec(model).num_classes
    smoothed = CrossEntropy(smoothing_for_eq4(float(epsilon), num_classes), from_logits=True)
    if weighted:
        if class_weights is None or len(class_weights) != num_classes:
            raise ValueError(f"weighted=True needs class_weights, one per class ({num_classes}). Received: class_weights={class_weights}")
        other = WeightedCrossEntropy(class_weights)
    else:
        other = CrossEntropy(from_logits=True)
    p = float(smoothing_probability)
    choice = LossChoice([(p, smoothed), (1.0 - p, other)])
    return Objective([Term("multi_loss", choice, output="logits", target_kinds=("labels", "distribution"))])


def fused_stem(x, stem: str = "small_s2", use_bias: bool = False):
    """``resnet_stem`` with its first convolution replaced by ``FacialAreaFusion`` (same
    kernel, stride, 64 filters and layer name ``conv1_conv``)."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}. Received: stem={stem!r}")
    kernel_size, strides = STEM_CONV[stem]
    x = FacialAreaFusion(64, kernel_size, strides, use_bias=use_bias, name="conv1_conv")(x)
    x = BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)
    if stem == "imagenet":
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, 2, name="pool1_pool")(x)
    return x


FER_SPEC = InputSpec(image_size=(44, 44), source_size=(48, 48), channels=1)
PAPER_SPEC = InputSpec(image_size=(224, 224), source_size=(224, 224), channels=3)
# Sec. 4.1: Adam, two learning-rate phases; epochs, plateau test and step size are not given (ours).
PAPER_SETTINGS = {
    "optimizer": "adam", "learning_rate": 3e-4, "lr_schedule": "cosine_then_step_on_plateau", "phase2_lr": 1e-5,
    "plateau_patience": 3, "plateau_min_delta": 1e-3, "lr_decay_every": 10, "lr_decay_factor": 0.1, "epochs": 40,
    "augmentation": {"max_rotation": 0.0, "scale_range": (1.0, 1.0), "translate": False},  # flips only
}

PRESETS = [
    Preset(
        "rafdb",
        "R18+FAML as published for RAF-DB (Sec. 4.1): 224x224 RGB aligned faces, flips only, ImageNet stem; Adam 3e-4 cosine, "
        "1e-5 step (x0.1 every 10 epochs) after 3 epochs of training-loss plateau; batch 128; ML with LSR (eps 0.1) p 0.8 else CE; "
        "40 epochs (ours). From scratch (no MS-Celeb-1M weights). Too slow for this CPU.",
        dict(PAPER_SETTINGS, batch_size=128),
        input_spec=PAPER_SPEC,
        model_options={"stem": "imagenet"},
        objective_options={"smoothing_probability": 0.8},
    ),
    Preset(
        "affectnet",
        "R18+FAML as published for AffectNet (Sec. 4.1): as rafdb with batch 256 and ML with LSR p 0.2 else class-weighted CE "
        "(weights N / (K n_k) from the training set's counts). Too slow for this CPU.",
        dict(PAPER_SETTINGS, batch_size=256),
        input_spec=PAPER_SPEC,
        model_options={"stem": "imagenet"},
        objective_options={"smoothing_probability": 0.2, "weighted": True},
    ),
    Preset(
        "fer2013",
        "R18+FAML for this 2-core CPU: 44x44 grey crops of 48x48 FER2013 faces (flips, small rotation/scale), 3x3/2 stem "
        "(attention blocks on 11x11, 11x11 and 6x6 tokens, MLP ratio 2 for speed); Adam 3e-4 cosine then 1e-5 step on plateau as the paper; batch 64; "
        "ML with LSR p 0.8 else CE (FER2013's train and val class proportions match, as RAF-DB's); 30 epochs.",
        dict(PAPER_SETTINGS, batch_size=64, epochs=30, augmentation={}),
        model_options={"stem": "small_s2", "mlp_ratio": 2.0},
        objective_options={"smoothing_probability": 0.8},
    ),
]


@register_model("r18fa", input_spec=FER_SPEC, presets=PRESETS, default_preset="fer2013", objective=r18fa_objective)
def build_r18fa(
    num_classes: int,
    input_spec: InputSpec = FER_SPEC,
    stem: str = "small_s2",
    fusion: bool = True,
    attention1: bool = True,
    attention2: bool = True,
    attention3: bool = True,
    num_heads: int = 4,
    mlp_ratio: float = 4.0,
    token_grid: int = 14,
    position_embedding: bool = True,
    dropout: float = 0.0,
    use_bias: bool = False,
    weights: str | None = None,
) -> keras.Model:
    """Build R18+FA (or an ablation of it) for ``input_spec``.

    Args:
        num_classes: int. Number of classes.
        input_spec: InputSpec. Size and channels of the ``face`` input.
        stem: str. ``"imagenet"`` (the paper's 224x224), ``"small"`` or ``"small_s2"``
            (48x48 faces), see ``fer_keras.models.resnet``.
        fusion: bool. FA's internal feature fusion in the first convolution.
        attention1, attention2, attention3: bools. The attention block after stage 1, 2, 3.
        num_heads, mlp_ratio, position_embedding: of every attention block
            (``FeatureMapSelfAttention``).
        token_grid: int. Most tokens per side of an attention block (module docstring).
        dropout: float. Before the classifier (the paper has none).
        use_bias: bool. Convolution biases (Keras' ImageNet layout).
        weights: str or None. A local Keras ``.h5`` file loaded by layer name.

    Returns:
        A functional model ``{"face": [B, H, W, C]} -> {"probabilities", "logits"}`` ([B, K] float32).
    """
    check_dropout(dropout)
    check_weights(weights, 18)
    if int(token_grid) < 1:
        raise ValueError(f"token_grid must be a positive integer. Received: token_grid={token_grid}")
    inputs = keras.Input(shape=input_spec.input_shapes()["face"], name="face")
    x = fused_stem(inputs, stem, use_bias) if fusion else resnet_stem(inputs, stem, use_bias)
    for stage, attention in enumerate((attention1, attention2, attention3, False), start=1):
        x = resnet_stage(x, 18, stage, use_bias)
        if attention:
            patch_size = math.ceil(max(x.shape[1:3]) / token_grid)
            x = FeatureMapSelfAttention(num_heads, mlp_ratio, patch_size, position_embedding, name=f"attention{stage}")(x)
    return classifier(inputs, x, num_classes, dropout, weights, 18, name="r18fa")
