"""A small VGG-style CNN: the reference point that makes the whole loop work end to end.

Not from a paper. Three conv stages (2x conv3x3-BN-ReLU, max-pool), global average pool,
dropout, softmax. About 0.3 M parameters at 44x44x1.
"""

from __future__ import annotations

import keras

from fer_spec import InputSpec
from fer_keras.layers import BatchNormalization
from fer_keras.registry import Preset, register_model

BASELINE_SPEC = InputSpec(image_size=(44, 44), source_size=(48, 48), channels=1)

PRESETS = [
    Preset(
        "fer2013",
        "Baseline CNN on 48x48 faces: random 44x44 crops, flips, small rotation/scale; Adam 1e-3, cosine decay.",
        {"optimizer": "adam", "learning_rate": 1e-3, "lr_schedule": "cosine", "batch_size": 64, "epochs": 10},
    ),
    Preset(
        "fer2013_vgg4",
        "VGG-style CNN for the CPU budget: 4 stages of 2x conv3x3-BN-ReLU (32-64-128-256, 1.2 M parameters), "
        "random 44x44 crops of 48x48, flips, rotation/scale; SGD Nesterov 0.9 lr 0.02, weight decay 5e-4, "
        "cosine over 50 epochs, batch 64, label smoothing 0.1 (after Khaireddin & Chen 2021, recipe A of RECIPES.md).",
        {"optimizer": "sgd", "nesterov": True, "learning_rate": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine", "batch_size": 64, "epochs": 50},
        model_options={"widths": (32, 64, 128, 256), "dropout": 0.4},
        objective_options={"label_smoothing": 0.1},
    ),
    Preset(
        "fer2013_vgg4_wide",
        "fer2013_vgg4 at 1.5x width (48-96-192-384, 2.6 M parameters) with random erasing (p 0.5, as recipe A), 60 epochs.",
        {"optimizer": "sgd", "nesterov": True, "learning_rate": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "cosine", "batch_size": 64, "epochs": 60,
         "augmentation": {"erase_probability": 0.5}},
        model_options={"widths": (48, 96, 192, 384), "dropout": 0.4},
        objective_options={"label_smoothing": 0.1},
    ),
    Preset(
        "demo",
        "Baseline CNN on the built-in demo faces: a short run that shows the whole loop.",
        {"optimizer": "adam", "learning_rate": 2e-3, "lr_schedule": "cosine", "batch_size": 64, "epochs": 6},
    ),
]


@register_model("baseline", input_spec=BASELINE_SPEC, presets=PRESETS, default_preset="fer2013")
def build_baseline(num_classes: int, input_spec: InputSpec = BASELINE_SPEC, widths=(32, 64, 128), dropout=0.3):
    """Build the baseline CNN.

    Args:
        num_classes: int. Number of output classes.
        input_spec: InputSpec. Only the ``face`` input is used.
        widths: tuple of int. Filters of the three stages.
        dropout: float. Dropout rate before the classifier.
    """
    inputs = keras.Input(shape=input_spec.input_shapes()["face"], name="face")
    x = inputs
    for stage, width in enumerate(widths):
        for j in range(2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{stage}_{j}")(x)
            x = BatchNormalization(momentum=0.9, name=f"bn{stage}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{stage}_{j}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{stage}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model({"face": inputs}, outputs, name="baseline")
