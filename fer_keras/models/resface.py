"""ResFace: a ResNet with a local feature extractor, a channel-spatial modulator and
label-distribution training.

Z. Qu, D. Niu, "Leveraging ResNet and label distribution in advanced intelligent systems for
facial expression recognition", Math. Biosci. Eng. 2023
(``../shared/papers/resface_resnet_label_distribution.txt``: Sec. 3.1-3.3, Fig. 1-4,
Eq. 3.1-3.5, Sec. 4.2, Tables 1-6). The paper follows EfficientFace (Z. Zhao, Q. Liu,
F. Zhou, AAAI 2021) with a ResNet in place of ShuffleNet-V2; where it is vague,
EfficientFace's published design decides.

Network: ResNet stem -> stage 1 -> stage 2 -> ``Fea_final = Fea_local + Fea_modulated``
(Eq. 3.3) -> stages 3-4 -> global average pool -> FC (``fer_keras.models.resnet``).

- ``Fea_modulated = Fea_stage2 * sigmoid(Z_channel + Z_spatial)`` (Eq. 3.1-3.2,
  ``fer_keras.layers.ChannelSpatialModulator``), ablation flag ``modulator`` (C).
- ``Fea_local``: the stem output (Sec. 3.1's ``Fea_conv1``, 56x56x64 at 224x224 with the
  ImageNet stem, after the max-pool as EfficientFace's ``conv1 + maxpool``) through
  ``fer_keras.layers.LocalFeatureExtractor`` at stride 2, which lands on stage 2's grid and
  width; ablation flag ``local_extractor`` (B). Without the modulator the local features
  are added to the plain stage-2 output.
- "Stage 2" is ResNet's second residual stage (He et al.'s ``conv3_x``, torchvision's
  ``layer2``): like ShuffleNet-V2's Stage 2 in EfficientFace, the first stage that halves
  the stem's resolution, so the stride-2 local features align with it.
- Rows of Tables 1-4: A = neither flag, A+B, A+C, A+B+C (both, the default).
- Outputs ``{"probabilities", "logits"}``; inference reads ``probabilities``, the
  objective the ``logits``.

Loss (:func:`resface_objective`): the label-distribution loss of Eq. 3.5
(``fer_keras.losses.LabelDistribution``, cross-entropy / ``l``) or plain cross-entropy
(the paper's cross-entropy rows, Tables 5-6). Targets: the data's (class ids, or FER+ vote
distributions with ``--label_mode=crossentropy``) or, with ``teacher``, the softmax of a
frozen label distribution generator (Sec. 3.3, Eq. 3.4) on the same augmented batch
(``fer_keras.training.loop``). The paper's generator is a ResNet-50 pre-trained on
MS-Celeb-1M (Sec. 4.2), which we do not have; as EfficientFace, ``python -m
fer_keras.train --teacher=resnet`` first fine-tunes a registered model on the target data
with hard labels.
"""

from __future__ import annotations

import keras

from fer_keras.layers import ChannelSpatialModulator, LocalFeatureExtractor
from fer_keras.losses import CrossEntropy, LabelDistribution
from fer_keras.models.resnet import check_dropout, check_weights, classifier, resnet_backbone, resnet_stage, stage_channels
from fer_keras.objective import Objective, Term
from fer_keras.registry import Preset, register_model
from fer_keras.saving import model_spec
from fer_spec import InputSpec

LOSSES = ("ldl", "crossentropy")
# The ablation rows of Tables 1-4: (local_extractor, modulator).
ROWS = {"A": (False, False), "A+B": (True, False), "A+C": (False, True), "A+B+C": (True, True)}


def check_teacher(teacher: keras.Model, student: keras.Model) -> None:
    """Raise ``ValueError`` unless ``teacher`` scores the student's classes, in order, from
    the student's inputs (crop size, channels, normalisation): it runs on the same batch."""
    t, s = model_spec(teacher), model_spec(student)
    if t.class_names != s.class_names:
        raise ValueError(f"The teacher's classes {list(t.class_names)} differ from the student's {list(s.class_names)}.")
    fields = ("image_size", "channels", "normalization")
    if any(getattr(t.input_spec, f) != getattr(s.input_spec, f) for f in fields):
        theirs, ours = ({f: getattr(spec.input_spec, f) for f in fields} for spec in (t, s))
        raise ValueError(f"The teacher's input {theirs} differs from the student's {ours}: it scores the student's training batch.")


def resface_objective(model: keras.Model, target_kind: str, loss: str = "ldl", teacher: keras.Model | None = None) -> Objective:
    """ResFace's objective on the ``logits`` output.

    Args:
        model: the student.
        target_kind: what the data gives (``"labels"`` or ``"distribution"``).
        loss: ``"ldl"`` (Eq. 3.5: cross-entropy / l, mean over batch and classes) or
            ``"crossentropy"`` (Tables 5-6's cross-entropy rows).
        teacher: a frozen model whose softmax replaces the data's targets (Eq. 3.4), or None.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
    if teacher is not None:
        check_teacher(teacher, model)
    term_loss = LabelDistribution(from_logits=True) if loss == "ldl" else CrossEntropy(from_logits=True)
    return Objective([Term(loss, term_loss, output="logits", target_kinds=("labels", "distribution"))], teacher=teacher)


PAPER_SPEC = InputSpec(image_size=(224, 224), source_size=(240, 240), channels=3)
FERPLUS_SPEC = InputSpec(image_size=(44, 44), source_size=(48, 48), channels=1)

PRESETS = [
    Preset(
        "paper",
        "ResFace as published (Qu & Niu 2023, Sec. 4.2), for reference: 224x224 RGB (FER+ 48x48 upscaled to 240, random "
        "224 crops, flips), ImageNet stem, SGD lr 0.1 batch 64; epochs and schedule not given (40, cosine, ours). "
        "Too slow for this CPU.",
        {"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "lr_schedule": "cosine", "batch_size": 64, "epochs": 40,
         "augmentation": {"max_rotation": 0.0, "scale_range": (1.0, 1.0)}},
        input_spec=PAPER_SPEC,
        model_options={"stem": "imagenet"},
    ),
    Preset(
        "ferplus",
        "ResFace R18 A+B+C for this 2-core CPU: 44x44 grey crops of FER+'s 48x48 faces, 3x3/2 stem (stage 2 at 11x11), "
        "flips, small rotation/scale; AdamW lr 1e-3, weight decay 0.05, batch 64, 1 warm-up epoch + cosine over 20 epochs "
        "(Adam, as EfficientFace's option: unlike SGD it is blind to Eq. 3.5's 1/l factor, so ldl and crossentropy share it).",
        {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.05, "lr_schedule": "cosine", "warmup_epochs": 1, "batch_size": 64, "epochs": 20},
        model_options={"stem": "small_s2"},
    ),
]


@register_model("resface", input_spec=FERPLUS_SPEC, presets=PRESETS, default_preset="ferplus", objective=resface_objective)
def build_resface(
    num_classes: int,
    input_spec: InputSpec = FERPLUS_SPEC,
    depth: int = 18,
    stem: str = "small_s2",
    local_extractor: bool = True,
    modulator: bool = True,
    reduction: int = 16,
    dilation: int = 4,
    dropout: float = 0.0,
    use_bias: bool = False,
    weights: str | None = None,
) -> keras.Model:
    """Build ResFace (or an ablation row of Tables 1-4) for ``input_spec``.

    Args:
        num_classes: int. Number of classes.
        input_spec: InputSpec. Size and channels of the ``face`` input.
        depth: int. ResNet depth, 18 or 50 in the paper (any of ``resnet.DEPTHS`` works).
        stem: str. ``"imagenet"`` (the paper's 224x224), ``"small"`` or ``"small_s2"``
            (48x48 faces), see ``fer_keras.models.resnet``.
        local_extractor: bool. B: add the local features to stage 2 (Eq. 3.3).
        modulator: bool. C: modulate stage 2 (Eq. 3.1-3.2).
        reduction, dilation: ints. Of the modulator (16 and 4, BAM / EfficientFace).
        dropout: float. Before the classifier (the paper has none).
        use_bias: bool. Convolution biases in the ResNet (Keras' ImageNet layout).
        weights: str or None. A local Keras ``.h5`` file loaded by layer name
            (``resnet.check_weights``): ImageNet or a trained ``resnet`` classifier.

    Returns:
        A functional model ``{"face": [B, H, W, C]} -> {"probabilities", "logits"}`` ([B, K] float32).
    """
    check_dropout(dropout)
    check_weights(weights, depth)
    inputs = keras.Input(shape=input_spec.input_shapes()["face"], name="face")
    features = resnet_backbone(inputs, depth, stem, use_bias, stages=2)
    x = features["stage2"]
    if modulator:
        x = ChannelSpatialModulator(reduction, dilation, name="modulator")(x)
    if local_extractor:
        local = LocalFeatureExtractor(stage_channels(depth, 2), strides=2, name="local_features")(features["stem"])
        x = keras.layers.Add(name="local_global")([local, x])
    for stage in (3, 4):
        x = resnet_stage(x, depth, stage, use_bias)
    return classifier(inputs, x, num_classes, dropout, weights, depth, name="resface")
