"""MrCAR: multi-region coordinate attention residual network with an ArcFace head.

J. Lan et al., "Expression Recognition Based on Multi-Regional Coordinate Attention
Residuals", IEEE Access 11, 2023 (Sec. III, Fig. 1, 2, 4, Table 1, Eq. 1-10).

Each input region (global face, eyes, mouth) goes through a CAResNet branch (Table 1):
conv 3x3 (64) - BN - ReLU - max-pool 3x3/2 - CARblock1 (128) - DSblock1 - CARblock2 (256)
- DSblock2 - CARblock3 (512) - DSblock3 - global average pool. The branch features are
concatenated and fused by the fully connected layer (Sec. III), then classified by the
ArcFace head (Eq. 10).

Choices where the paper is silent or inconsistent (each is a constructor argument):

- Table 1 lists the max-pool with "stride 1" but its output is 22x22 from 44x44: we use
  stride 2 ("same" padding), as the text says ("changed to 22x22 by a convolutional
  layer and a maximum pooling layer"). Conv1 is followed by BN and ReLU (ResNet stem).
- Block widths and shortcuts: see ``fer_keras.layers.car_block``.
- Region sizes. The paper crops eyes and mouth from the aligned face and feeds them to
  identical branches without giving sizes. We keep each crop's aspect ratio
  (``fer_spec.geometry.REGION_BOXES``) and resize it to the face's width:
  eyes 20x44 and mouth 26x44 at 44x44 (44x98 and 58x98 at RAF-DB's 98x98),
  see :func:`region_sizes`. Squares would stretch the eyes strip 2.2x vertically;
  native pixels (16x35) would leave 1x3 maps after Table 1's five halvings. The branch
  ends with global average pooling, so any size works.
- Branch weights: separate per region by default (``share_branch_weights=False``):
  Fig. 1 draws three CAResNets, and eyes, mouth and face have different statistics
  (one set of BN statistics for all three would mix them). ``True`` shares one branch.
- Fusion: concatenate the three 512-d GAP features (1536), optional dropout, FC to
  ``embedding_dim`` (512, the width of Table 1's last stage) without activation (ArcFace
  normalises it; a ReLU would confine it to the positive orthant).
- ArcFace ``s = 16``, ``m = 0.5``: see ``fer_keras.layers.ArcFace``.
- Outputs and loss. At inference the head gives ``softmax(s cos theta)`` (Eq. 9's logits);
  the margin of Eq. 10 needs the label and belongs to the loss. So the model returns
  ``{"probabilities": softmax(s cos theta), "cosine": cos theta}`` and its registered
  objective (:func:`mrcar_objective`) applies ``fer_keras.losses.arcface_loss`` to the
  ``cosine`` output; inference, export and serving read only ``probabilities``. The
  softmax head (the ``"softmax"`` variant, or ``head="softmax"``) returns
  ``{"probabilities", "logits"}`` and trains with cross-entropy from the logits.
  ``MrCAR`` is a subclassed ``keras.Model`` whose ``get_config`` holds every constructor
  argument; the layers are built in ``__init__``, so ``.keras`` files load with
  ``safe_mode=True``. The convolutional trunk is a functional model
  (``model.backbone``) whose named layers (``face_conv1``, ``eyes_carblock2``, ...)
  expose Table 1's output shapes.
- Ablations of Table 6 (``variant``): ``"full"`` (MrCAR), ``"global_only"`` (-Mfe: the
  face branch only; the builder ignores region inputs, so every variant uses the same
  input spec and the same crops of the face), ``"no_attention"`` (-CA), ``"softmax"``
  (-ALoss: a Dense softmax classifier instead of ArcFace).
- Training threads: the three branches are independent chains of small convolutions, so the
  registry entry declares ``parallel_branches=True`` and the training CLIs run ops side by
  side with one thread each (``fer_keras.runtime``: 327 vs 238 images/s on 2 cores, bf16).
"""

from __future__ import annotations

import keras

from fer_keras.layers import ArcFace, BatchNormalization, CARBlock, DSBlock
from fer_keras.losses.arcface import ArcFaceMarginLoss
from fer_keras.losses.crossentropy import CrossEntropy
from fer_keras.objective import Objective, Term
from fer_keras.registry import Preset, register_model
from fer_keras.serialization import register
from fer_spec import InputSpec
from fer_spec.geometry import region_sizes as _region_sizes

VARIANTS = ("full", "global_only", "no_attention", "softmax")
HEADS = ("arcface", "softmax")
REGIONS = ("eyes", "mouth")


def region_sizes(image_size: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Eyes and mouth input sizes (``fer_spec.geometry.region_sizes``): ``{"eyes": (20, 44),
    "mouth": (26, 44)}`` at 44x44."""
    return _region_sizes(image_size, REGIONS)

# Table 1 at a 44x44 input: (layer, output shape).
TABLE_1 = (
    ("conv1", (44, 44, 64)),
    ("maxpool", (22, 22, 64)),
    ("carblock1", (22, 22, 128)),
    ("dsblock1", (11, 11, 128)),
    ("carblock2", (11, 11, 256)),
    ("dsblock2", (6, 6, 256)),
    ("carblock3", (6, 6, 512)),
    ("dsblock3", (3, 3, 512)),
    ("avgpool", (512,)),
)


def _branch_layers(prefix, widths, use_attention, bottleneck_ratio, dtype):
    stem_width, *stage_widths = widths
    layers = [
        keras.layers.Conv2D(stem_width, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{prefix}_conv1", dtype=dtype),
        BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{prefix}_bn1", dtype=dtype),
        keras.layers.ReLU(name=f"{prefix}_relu1", dtype=dtype),
        keras.layers.MaxPooling2D(3, 2, padding="same", name=f"{prefix}_maxpool", dtype=dtype),
    ]
    for stage, width in enumerate(stage_widths, start=1):
        options = dict(bottleneck_ratio=bottleneck_ratio, use_attention=use_attention, dtype=dtype)
        layers.append(CARBlock(width, name=f"{prefix}_carblock{stage}", **options))
        layers.append(DSBlock(width, name=f"{prefix}_dsblock{stage}", **options))
    layers.append(keras.layers.GlobalAveragePooling2D(name=f"{prefix}_avgpool", dtype=dtype))
    return layers


@register
class MrCAR(keras.Model):
    """MrCAR: three CAResNet branches (face, eyes, mouth), FC fusion, ArcFace head.

    Args:
        num_classes: int. Number of expression classes.
        image_size: (int, int). Size of the ``face`` input. Defaults to ``(44, 44)``.
        channels: int. 1 or 3. Defaults to ``1``.
        regions: dict name -> (height, width) of the ``eyes`` and ``mouth`` inputs, or
            ``None`` for :func:`region_sizes` of ``image_size``. Ignored by
            ``"global_only"``.
        variant: str. ``"full"``, ``"global_only"`` (-Mfe), ``"no_attention"`` (-CA) or
            ``"softmax"`` (-ALoss: the full model with ``head="softmax"``), Table 6.
            Defaults to ``"full"``.
        head: str or None. ``"arcface"`` (Eq. 9-10) or ``"softmax"`` (a Dense softmax
            classifier, Table 6's -ALoss). ``None``: ``"softmax"`` for the ``"softmax"``
            variant, else ``"arcface"``. Lets the ablations combine, e.g. the global-only
            branch with a softmax head (the recipe study's proxy).
        share_branch_weights: bool. One CAResNet for all regions. Defaults to ``False``.
        widths: tuple of 4 ints. Conv1 and the three stages (Table 1: 64, 128, 256, 512).
        bottleneck_ratio: int. See ``CARBlock``. Defaults to ``4``.
        embedding_dim: int. Output of the fusion FC layer. Defaults to ``512``.
        dropout: float. Dropout before the FC layer. Defaults to ``0.0`` (the paper uses
            none).
        arcface_scale: float. ArcFace ``s``. Defaults to ``16.0``.
        arcface_margin: float. ArcFace ``m`` (radians). Defaults to ``0.5``.
        **kwargs: ``keras.Model`` arguments (``name`` defaults to ``"mrcar"``).

    Call arguments:
        inputs: dict with ``"face"`` ``[B, H, W, C]``, ``"eyes"`` and ``"mouth"`` (not
            needed by ``"global_only"``). Extra keys are ignored.
        training: bool.

    Returns:
        ``{"probabilities": [B, num_classes], "cosine": [B, num_classes]}`` float32 (the
        cosines feed the ArcFace loss); a softmax head returns ``"logits"`` instead of
        ``"cosine"``.

    Example:

    >>> model = MrCAR(7)
    >>> images = {"face": keras.random.uniform((2, 44, 44, 1)),
    ...           "eyes": keras.random.uniform((2, 20, 44, 1)),
    ...           "mouth": keras.random.uniform((2, 26, 44, 1))}
    >>> model(images)["probabilities"].shape
    (2, 7)

    Reference:
        J. Lan et al., "Expression Recognition Based on Multi-Regional Coordinate
        Attention Residuals", IEEE Access 11, 2023, Sec. III, Fig. 1-4, Table 1,
        Eq. 1-10, Table 6.
    """

    def __init__(
        self,
        num_classes,
        image_size=(44, 44),
        channels=1,
        regions=None,
        variant="full",
        head=None,
        share_branch_weights=False,
        widths=(64, 128, 256, 512),
        bottleneck_ratio=4,
        embedding_dim=512,
        dropout=0.0,
        arcface_scale=16.0,
        arcface_margin=0.5,
        **kwargs,
    ):
        kwargs.setdefault("name", "mrcar")
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}. Received: variant={variant}")
        if len(widths) != 4:
            raise ValueError(f"widths must hold 4 ints (conv1 and three stages). Received: widths={widths}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.num_classes = int(num_classes)
        self.image_size = tuple(int(v) for v in image_size)
        self.channels = int(channels)
        regions = region_sizes(self.image_size) if regions is None else regions
        missing = [name for name in REGIONS if name not in regions]
        if missing and variant != "global_only":
            raise ValueError(f"regions must give the sizes of {REGIONS}. Received: regions={regions}")
        self.regions = {name: tuple(int(v) for v in regions[name]) for name in REGIONS if name in regions}
        self.variant = variant
        head = head or ("softmax" if variant == "softmax" else "arcface")
        if head not in HEADS or (variant == "softmax" and head != "softmax"):
            raise ValueError(f"head must be one of {HEADS} (\"softmax\" for the softmax variant). Received: head={head}, variant={variant}")
        self.head_type = head
        self.share_branch_weights = bool(share_branch_weights)
        self.widths = tuple(int(w) for w in widths)
        self.bottleneck_ratio = int(bottleneck_ratio)
        self.embedding_dim = int(embedding_dim)
        self.dropout = float(dropout)
        self.arcface_scale = float(arcface_scale)
        self.arcface_margin = float(arcface_margin)
        self.branch_names = ("face",) if variant == "global_only" else ("face",) + REGIONS
        self.backbone = self._build_backbone()
        if head == "softmax":
            self.head = keras.layers.Dense(self.num_classes, name="classifier", dtype="float32")
        else:
            self.head = ArcFace(self.num_classes, scale=self.arcface_scale, margin=self.arcface_margin, name="probabilities", dtype="float32")
        self.head.build((None, self.embedding_dim))
        self.built = True

    def _build_backbone(self) -> keras.Model:
        dtype = self.dtype_policy
        use_attention = self.variant != "no_attention"
        shared = _branch_layers("caresnet", self.widths, use_attention, self.bottleneck_ratio, dtype) if self.share_branch_weights else None
        inputs, features = {}, []
        for name in self.branch_names:
            size = self.image_size if name == "face" else self.regions[name]
            inputs[name] = x = keras.Input(shape=(*size, self.channels), name=name)
            for layer in shared or _branch_layers(name, self.widths, use_attention, self.bottleneck_ratio, dtype):
                x = layer(x)
            features.append(x)
        x = features[0] if len(features) == 1 else keras.layers.Concatenate(name="fusion_concat", dtype=dtype)(features)
        if self.dropout:
            x = keras.layers.Dropout(self.dropout, name="fusion_dropout", dtype=dtype)(x)
        x = keras.layers.Dense(self.embedding_dim, name="fc", dtype=dtype)(x)
        return keras.Model(inputs, x, name="mrcar_backbone")

    def call(self, inputs, training=None):
        images = {name: inputs[name] for name in self.branch_names}
        embedding = self.backbone(images, training=training)
        if self.head_type == "softmax":
            logits = self.head(embedding)
            return {"probabilities": keras.ops.softmax(logits, axis=-1), "logits": logits}
        cosine = self.head.cosine(embedding)
        return {"probabilities": keras.ops.softmax(self.arcface_scale * cosine, axis=-1), "cosine": cosine}

    def compute_output_shape(self, input_shape):
        shape = (input_shape["face"][0], self.num_classes)
        return {"probabilities": shape, "logits" if self.head_type == "softmax" else "cosine": shape}

    def build_from_config(self, config):
        # Every layer is built in __init__; nothing to do (loading then sets the weights).
        pass

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "channels": self.channels,
            "regions": self.regions,
            "variant": self.variant,
            "head": self.head_type,
            "share_branch_weights": self.share_branch_weights,
            "widths": self.widths,
            "bottleneck_ratio": self.bottleneck_ratio,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout,
            "arcface_scale": self.arcface_scale,
            "arcface_margin": self.arcface_margin,
        })
        return config


def _preset(name, description, settings, input_spec=None, ten_crop=True):
    return Preset(name, description, settings, input_spec=input_spec, ten_crop=ten_crop)


def _step_settings(epochs, batch_size, decay_start, decay_every):
    return {
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "momentum": 0.9,
        "batch_size": batch_size,
        "lr_schedule": "step",
        "lr_decay_start": decay_start,
        "lr_decay_every": decay_every,
        "lr_decay_factor": 0.9,
        "epochs": epochs,
    }


MRCAR_SPEC = InputSpec(image_size=(44, 44), source_size=(48, 48), channels=1, regions=region_sizes((44, 44)))
RAFDB_SPEC = InputSpec(image_size=(98, 98), source_size=(100, 100), channels=3, regions=region_sizes((98, 98)))

# Sec. IV-A-2. The paper does not name the optimiser: SGD with momentum 0.9 is our choice
# (the usual one with lr 0.01 and step decay in PyTorch FER code). Ten-crop testing: Sec. IV-A-1.
PRESETS = [
    _preset(
        "fer2013",
        "MrCAR on FER2013 (Lan et al. 2023, Sec. IV-A): random 44x44 crops of 48x48, SGD lr 0.01, "
        "batch 32, 200 epochs, lr x0.9 every 5 epochs after epoch 80, ten-crop test.",
        _step_settings(epochs=200, batch_size=32, decay_start=80, decay_every=5),
    ),
    Preset(
        "fer2013_cosine",
        "MrCAR with our FER2013 recipe (not the paper's; the recipe study in benchmarks/RESULTS.md, issue 10): "
        "ArcFace s=32 with the margin growing from 0 over 5 epochs, SGD Nesterov lr 0.01 batch 32, 1 warm-up epoch + "
        "cosine over 60 epochs, weight decay 5e-3 per unit lr, ten-crop test.",
        {"optimizer": "sgd", "nesterov": True, "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 5e-3, "lr_schedule": "cosine",
         "warmup_epochs": 1, "batch_size": 32, "epochs": 60},
        model_options={"arcface_scale": 32.0},
        objective_options={"margin_warmup_epochs": 5},
        ten_crop=True,
    ),
    _preset(
        "rafdb",
        "MrCAR on RAF-DB (Lan et al. 2023, Sec. IV-A): random 98x98 RGB crops of 100x100, SGD lr 0.01, "
        "batch 32, 200 epochs, lr x0.9 every 5 epochs after epoch 50, ten-crop test.",
        _step_settings(epochs=200, batch_size=32, decay_start=50, decay_every=5),
        input_spec=RAFDB_SPEC,
    ),
    _preset(
        "ckplus",
        "MrCAR on CK+ (Lan et al. 2023, Sec. IV-A): 44x44 crops of 48x48 faces, SGD lr 0.01, batch 64, "
        "100 epochs, lr x0.9 every 2 epochs after epoch 20, 10-fold CV, ten-crop test.",
        _step_settings(epochs=100, batch_size=64, decay_start=20, decay_every=2),
    ),
    _preset(
        "jaffe",
        "MrCAR on JAFFE (Lan et al. 2023, Sec. IV-A): 44x44 crops of 48x48 faces, SGD lr 0.01, batch 64, "
        "100 epochs, lr x0.9 every epoch after epoch 20, 10-fold CV, ten-crop test.",
        _step_settings(epochs=100, batch_size=64, decay_start=20, decay_every=1),
    ),
]


def mrcar_objective(model: MrCAR, target_kind: str, label_smoothing: float = 0.0, margin_warmup_epochs: float = 0.0) -> Objective:
    """MrCAR's loss: the ArcFace loss of Eq. 10 (``fer_keras.losses.ArcFaceMarginLoss``, scale
    and margin of the model) on the ``cosine`` output, from class ids, the margin optionally
    growing from 0 over ``margin_warmup_epochs``, the target optionally smoothed
    (``label_smoothing``; not in the paper); a softmax head (Table 6, -ALoss) trains with
    cross-entropy from its ``logits`` output (on probabilities, a head whose logits exploded
    would get zero gradient: see ``fer_keras.losses.crossentropy``)."""
    if model.head_type == "softmax":
        return Objective([Term("crossentropy", CrossEntropy(label_smoothing, from_logits=True), output="logits")])
    loss = ArcFaceMarginLoss(model.arcface_scale, model.arcface_margin, margin_warmup_epochs, label_smoothing=label_smoothing)
    term = Term("arcface", loss, output="cosine", target_kinds=("labels",))
    return Objective([term])


@register_model("mrcar", input_spec=MRCAR_SPEC, presets=PRESETS, default_preset="fer2013", objective=mrcar_objective, parallel_branches=True)
def build_mrcar(
    num_classes: int,
    input_spec: InputSpec = MRCAR_SPEC,
    variant: str = "full",
    head: str | None = None,
    share_branch_weights: bool = False,
    arcface_scale: float = 16.0,
    arcface_margin: float = 0.5,
    embedding_dim: int = 512,
    dropout: float = 0.0,
    widths: tuple = (64, 128, 256, 512),
    bottleneck_ratio: int = 4,
) -> keras.Model:
    """Build MrCAR (or a Table 6 ablation) for ``input_spec``.

    Args:
        num_classes: int. Number of classes.
        input_spec: InputSpec. ``face`` size and channels; ``regions`` gives the eyes and
            mouth sizes (derived from the face size with :func:`region_sizes` when absent).
        variant, head, share_branch_weights, arcface_scale, arcface_margin, embedding_dim,
            dropout, widths, bottleneck_ratio: see ``MrCAR``.
    """
    regions = dict(input_spec.regions) if all(name in input_spec.regions for name in REGIONS) else None
    return MrCAR(
        num_classes,
        image_size=input_spec.image_size,
        channels=input_spec.channels,
        regions=regions,
        variant=variant,
        head=head,
        share_branch_weights=share_branch_weights,
        arcface_scale=arcface_scale,
        arcface_margin=arcface_margin,
        embedding_dim=embedding_dim,
        dropout=dropout,
        widths=widths,
        bottleneck_ratio=bottleneck_ratio,
    )
