"""LBAN-IL: local binary attention network trained with the islets loss.

H. Li, N. Wang, Y. Yu, X. Yang, X. Gao, "LBAN-IL: A novel method of high discriminative
representation for facial expression recognition", Neurocomputing 432, 2021, 159-169
(``../shared/papers/lban_il_local_binary_attention_islets_loss.txt``: Sec. 2, Fig. 2,
Sec. 3 Eq. 1-5, Sec. 4.1-4.2, Tables 2 and 4).

Network (Sec. 2): 3x3 convolution (64) - [LBSL (stride 2) - LBAB] x 3 with widths 128,
256, 512 and 2, 1, 0 samplings - ReLU - average pooling - dropout 0.5 - FC-128 (the
embedding of the islets loss) - FC-7 (softmax). Layers: ``fer_keras.layers.LBSL`` and
``fer_keras.layers.LBAB`` (their docstrings list the choices inside the blocks).

Choices here:

- Stem: conv 3x3 (64) - BN - ReLU, stride 1 (the paper: "a standard convolutional layer
  with the kernel of 3x3"; Fig. 2's first LBSL has 64 input channels).
- Ending: BN - ReLU ("the activation function for the last block is ReLU") - global
  average pooling (Table 2 gives one parameter count for 80x80 RAF-DB and 40x40 FER2013
  inputs, so the classifier cannot depend on the input size) - dropout 0.5 - FC-128 -
  FC-7. One dropout, before FC-128 ("the dropout layer before the last two fully connected
  layers"): a dropout on the embedding would also perturb the centres of Eq. 4. The
  embedding has no activation: the island term pushes the cosines of the centres towards
  -1, which a ReLU (positive orthant) would forbid.
- Outputs: ``{"probabilities", "logits", "embedding"}``; inference, export and serving
  read ``probabilities`` (``ModelSpec.output``), the objective ``logits`` (cross-entropy
  from logits) and ``embedding`` (center / island / islets loss).
- Variants of Table 2 (``variant``): ``"lban"`` (LBC + standard conv + skip),
  ``"lbcnn"`` (LBC + skip), ``"lbc"`` (LBC only), ``"lban_dagger"`` (learnable 3x3 + 1x1
  in place of the LBC layer, standard conv, skip) and ``"lban_double_dagger"`` (the same
  without skip). The flags apply to every LBSL of the network.
- LBC anchors are seeded from ``seed`` (each LBSL its own stream), so a model rebuilt
  from its options has the same fixed kernels; ``.keras`` files store them anyway.
- A functional model: every layer is registered, so its graph is its config and
  ``.keras`` files load with ``safe_mode=True``; ``model.get_layer("lbab1")`` etc. expose
  Fig. 2's stages.

Loss (Eq. 5): ``L = L_softmax + lambda * L_I`` with ``loss`` in Table 4's ``softmax``,
``center``, ``island``, ``islets`` (:func:`lban_objective`).
"""

from __future__ import annotations

import keras

from fer_keras.layers import LBAB, LBSL, BatchNormalization
from fer_keras.losses import CenterLoss, CrossEntropy, IslandLoss, IsletsLoss
from fer_keras.objective import Objective, Term
from fer_keras.registry import Preset, register_model
from fer_spec import InputSpec

# variant -> LBSL flags (Table 2).
VARIANTS = {
    "lban": {"local_binary": True, "standard_conv": True, "skip": True},
    "lbcnn": {"local_binary": True, "standard_conv": False, "skip": True},
    "lbc": {"local_binary": True, "standard_conv": False, "skip": False},
    "lban_dagger": {"local_binary": False, "standard_conv": True, "skip": True},
    "lban_double_dagger": {"local_binary": False, "standard_conv": True, "skip": False},
}
LOSSES = ("softmax", "center", "island", "islets")

# Table 2: learnable parameters (millions) the paper reports for each variant.
PAPER_PARAMS = {"lbc": 16.7, "lbcnn": 18.0, "lban_double_dagger": 29.4, "lban_dagger": 30.7, "lban": 19.8}

FER2013_SPEC = InputSpec(image_size=(40, 40), source_size=(48, 48), channels=1)
ALIGNED_SPEC = InputSpec(image_size=(80, 80), source_size=(100, 100), channels=3)


def lban_objective(
    model: keras.Model, target_kind: str, loss: str = "islets", lambda_: float = 0.6, lambda1: float = 0.2, lambda2: float = 0.9, alpha: float = 0.5, lambda_warmup_epochs: float = 0.0
) -> Objective:
    """Eq. 5: ``L = L_softmax + lambda_ * L_I``.

    ``L_softmax`` is the cross-entropy of the ``logits`` output; ``L_I`` reads the
    ``embedding`` output and is, by ``loss`` (Table 4): none (``"softmax"``), the center loss
    (``"center"``), the island loss (``"island"``: center loss + ``lambda1`` x pairwise
    centre cosines) or the islets loss (``"islets"``, Eq. 2: island loss + ``lambda2`` x
    Eq. 1). The class centres move by Eq. 4 with rate ``alpha`` (the paper gives no value;
    0.5 is Wen et al.'s) after each optimiser step, not by the optimiser.

    ``lambda_warmup_epochs`` (not in the paper; 0 = the paper's constant ``lambda_``) ramps
    ``lambda_`` linearly from 0 over the first epochs. From the start, ``lambda_ = 0.6`` x
    ``1/2 ||x - c||^2`` on 128-d features (the centres start at 0) outweighs the
    cross-entropy about tenfold and pulls every embedding towards the origin: with it, our
    runs stayed at the majority class (24.9% val after 2 of 3 short epochs) while the same
    run with the softmax loss alone reached 33.4% (``benchmarks/RESULTS.md``, LBAN-IL).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}. Received: loss={loss!r}")
    terms = [Term("crossentropy", CrossEntropy(from_logits=True), output="logits")]
    if loss != "softmax":
        num_classes, embedding_dim = model.get_layer("logits").units, model.get_layer("embedding").units
        name = f"{loss}_loss"
        if loss == "center":
            feature_loss = CenterLoss(num_classes, embedding_dim, alpha, name=name)
        elif loss == "island":
            feature_loss = IslandLoss(num_classes, embedding_dim, alpha, lambda1, name=name)
        else:
            feature_loss = IsletsLoss(num_classes, embedding_dim, alpha, lambda1, lambda2, name=name)
        terms.append(Term(loss, feature_loss, output="embedding", weight=lambda_, warmup_epochs=lambda_warmup_epochs))
    return Objective(terms)


def _settings(epochs):
    """Sec. 4.2: SGD momentum 0.9, batch 64, lr 0.001 x0.9 every 5 epochs from the 20th;
    random crops and horizontal flips only (Sec. 4.1)."""
    return {
        "optimizer": "sgd",
        "learning_rate": 0.001,
        "momentum": 0.9,
        # The paper's "weight decay 0.05" is PyTorch's L2 term, which goes through the
        # momentum buffer: the weights shrink by lr * 0.05 / (1 - 0.9) per step. Our SGD
        # decays decoupled (w -= lr * wd * w), so the same shrinkage is wd = 0.5.
        "weight_decay": 0.5,
        "batch_size": 64,
        "lr_schedule": "step",
        "lr_decay_start": 20,
        "lr_decay_every": 5,
        "lr_decay_factor": 0.9,
        "epochs": epochs,
        "augmentation": {"flip": True, "translate": True, "max_rotation": 0.0, "scale_range": (1.0, 1.0)},
    }


def _fast_settings(epochs):
    """Ours, for a CPU budget: AdamW lr 0.001 (decoupled weight decay 0.05, i.e. 5e-5 per
    step), one warm-up epoch then cosine, otherwise as ``_settings``. The paper's SGD at lr
    0.001 barely moved in our short runs (``benchmarks/RESULTS.md``)."""
    return dict(_settings(epochs), optimizer="adamw", weight_decay=0.05, lr_schedule="cosine", warmup_epochs=1)


# The paper gives no number of epochs: 100 (lr 0.9^16 = 0.19 x base at the end).
PRESETS = [
    Preset(
        "fer2013",
        "LBAN-IL on FER2013 (Li et al. 2021, Sec. 4.1-4.2): random 40x40 crops of 48x48 and flips, SGD momentum 0.9 "
        "lr 0.001, weight decay 0.05 (as PyTorch L2), batch 64, lr x0.9 every 5 epochs from epoch 20, 100 epochs "
        "(not in the paper), islets loss lambda 0.6, ten-crop test.",
        _settings(epochs=100),
        ten_crop=True,
    ),
    Preset(
        "fer2013_adamw",
        "LBAN-IL on FER2013 with our CPU-budget recipe (not the paper's): the fer2013 preset's network, crops, "
        "flips, batch 64 and islets loss (lambda 0.6, lambda1 0.2, lambda2 0.9), but AdamW lr 0.001 (weight decay "
        "0.05 decoupled), 1 warm-up epoch + cosine, 30 epochs, lambda ramped from 0 over the first 5 epochs; "
        "ten-crop test.",
        _fast_settings(epochs=30),
        objective_options={"lambda_warmup_epochs": 5},
        ten_crop=True,
    ),
    Preset(
        "rafdb",
        "LBAN-IL on RAF-DB (Li et al. 2021, Sec. 4.1-4.2): 100x100 aligned RGB faces, random 80x80 crops and flips, "
        "otherwise as the fer2013 preset; ten-crop test.",
        _settings(epochs=100),
        input_spec=ALIGNED_SPEC,
        ten_crop=True,
    ),
    Preset(
        "sfew",
        "LBAN-IL on SFEW 2.0 (Li et al. 2021, Sec. 4.1-4.2): MTCNN-aligned 100x100 RGB faces (pipelines.preprocess "
        "--face_size=100 of class folders, then --dataset=cache), random 80x80 crops and flips, otherwise as the "
        "fer2013 preset; ten-crop test.",
        _settings(epochs=100),
        input_spec=ALIGNED_SPEC,
        ten_crop=True,
    ),
]


@register_model("lban", input_spec=FER2013_SPEC, presets=PRESETS, default_preset="fer2013", objective=lban_objective)
def build_lban(
    num_classes: int,
    input_spec: InputSpec = FER2013_SPEC,
    variant: str = "lban",
    widths: tuple = (64, 128, 256, 512),
    samplings: tuple = (2, 1, 0),
    embedding_dim: int = 128,
    dropout: float = 0.5,
    sparsity: float = 0.5,
    seed: int = 0,
) -> keras.Model:
    """Build LBAN (or a Table 2 variant) for ``input_spec``: a functional model from
    ``{"face": [B, H, W, C]}`` to ``{"probabilities": [B, K], "logits": [B, K],
    "embedding": [B, embedding_dim]}`` (float32).

    Args:
        num_classes: int. Number of classes.
        input_spec: InputSpec. Crop size and channels of the ``face`` input.
        variant: str. A key of ``VARIANTS`` (Table 2). Defaults to ``"lban"``.
        widths: 4 ints. Stem and the three blocks (64, 128, 256, 512).
        samplings: 3 ints. Max-pool / deconvolution pairs of each block's attention (2, 1, 0).
        embedding_dim: int. FC layer before the classifier (128).
        dropout: float. Before the embedding layer (0.5).
        sparsity: float. Fraction of zero LBC anchor entries (0.5).
        seed: int. Seed of the LBC anchors (stage ``k`` uses ``seed + 10 k`` and up).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}. Received: variant={variant!r}")
    if len(widths) != 4 or len(samplings) != 3:
        raise ValueError(f"widths needs 4 ints (stem and three blocks), samplings 3. Received: widths={widths}, samplings={samplings}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    flags = dict(VARIANTS[variant], sparsity=sparsity)
    inputs = keras.Input(shape=input_spec.input_shapes()["face"], name="face")
    x = keras.layers.Conv2D(widths[0], 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = BatchNormalization(momentum=0.9, epsilon=1e-5, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, (width, sampling) in enumerate(zip(widths[1:], samplings), start=1):
        x = LBSL(width, strides=2, seed=seed + 10 * stage, name=f"lbsl{stage}", **flags)(x)
        x = LBAB(width, sampling, seed=seed + 10 * stage + 1, name=f"lbab{stage}", **flags)(x)
    x = BatchNormalization(momentum=0.9, epsilon=1e-5, name="final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    embedding = keras.layers.Dense(embedding_dim, name="embedding", dtype="float32")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(embedding)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model({"face": inputs}, {"probabilities": probabilities, "logits": logits, "embedding": embedding}, name="lban")
