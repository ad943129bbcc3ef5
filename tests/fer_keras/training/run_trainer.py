"""Subprocess entry for the distribution tests: train the baseline on a real FER2013 subset.

Usage: python run_trainer.py STRATEGY FER2013_DIR OUTPUT_DIR [LOGICAL_CPUS]
Prints the history rows and the final class centres as one JSON line prefixed with ``HISTORY``.

The objective exercises every kind of term the loop supports: cross-entropy and a
label-smoothed one chosen per batch (``LossChoice``), plus a center loss whose centres a rule
updates (summed over replicas) on the probabilities output.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

strategy_name, data_dir, output_dir = sys.argv[1:4]
if len(sys.argv) > 4:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))

import keras  # noqa: E402

from fer_keras.losses import CenterLoss, CrossEntropy  # noqa: E402
from fer_keras.objective import LossChoice, Objective, Term  # noqa: E402
from fer_keras.registry import build_model  # noqa: E402
from fer_keras.training.loop import LoopConfig, Trainer  # noqa: E402
from fer_keras.training.strategy import make_strategy  # noqa: E402
from pipelines.datasets import load_arrays, open_dataset  # noqa: E402

keras.utils.set_random_seed(0)
train = load_arrays(open_dataset("fer2013", data_dir, "train"), limit=512, progress=False)
val = load_arrays(open_dataset("fer2013", data_dir, "val"), limit=128, progress=False)
strategy = make_strategy(strategy_name)
if strategy_name == "mirrored":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = LoopConfig(epochs=2, batch_size=32, optimizer="sgd", learning_rate=0.01, lr_schedule="constant", augmentation=__import__("pipelines.input", fromlist=["x"]).NO_AUGMENTATION, verbose=0)


def objective(model):
    choice = LossChoice([(0.5, CrossEntropy()), (0.5, CrossEntropy(label_smoothing=0.1))])
    return Objective([Term("multi_loss", choice), Term("center", CenterLoss(7, 7, alpha=0.5), weight=0.1)])


trainer = Trainer(lambda: build_model("baseline", 7, dropout=0.0), objective, config, output_dir, strategy)
history = trainer.fit(train.images, train.targets, val.images, val.targets)
centers = trainer.objective.stateful_terms[0].loss.centers.numpy().tolist()
print("HISTORY " + json.dumps({"replicas": strategy.num_replicas_in_sync, "history": history, "centers": centers}), flush=True)
