"""Post-hoc logit adjustment of a shipped model: does subtracting tau * log(class prior) buy recall
of the rare classes (disgust) at little accuracy?

    python benchmarks/logit_adjustment.py --model=mrcar-fer2013 [--taus=0,0.25,0.5,0.75,1]

Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, Eq. 9 (post-hoc form):
predict ``argmax_y log p(y|x) - tau * log pi_y`` with ``pi`` the FER2013 training class
frequencies. Scores the validation split once (the model's calibrated probabilities, centre
crop), then reports accuracy, mean per-class accuracy and disgust recall per tau on the two
seeded halves ``fer_keras.calibrate`` uses (choose tau on the first, read the second).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mrcar-fer2013", "Shipped model name.")
flags.DEFINE_string("data_dir", "../shared/datasets/fer2013", "FER2013 class folders.")
flags.DEFINE_list("taus", ["0", "0.25", "0.5", "0.75", "1"], "Adjustment strengths to try.")


def scores(predicted: np.ndarray, labels: np.ndarray, num_classes: int, rare: int) -> tuple[float, float, float]:
    """Accuracy, mean per-class accuracy and the recall of class ``rare``."""
    recalls = [np.mean(predicted[labels == k] == k) for k in range(num_classes)]
    return float(np.mean(predicted == labels)), float(np.mean(recalls)), float(recalls[rare])


def main(argv):
    del argv
    from fer_keras import weights
    from fer_keras.calibration import split_halves
    from fer_keras.inference import predict_scores
    from fer_keras.saving import load_model, model_spec
    from pipelines.datasets import load_split

    model = load_model(weights.weights_path(FLAGS.model))
    spec = model_spec(model)
    val = load_split("fer2013", FLAGS.data_dir, "val", spec.input_spec, progress=False)
    train_labels = load_split("fer2013", FLAGS.data_dir, "train", spec.input_spec, progress=False).targets
    num_classes = len(spec.class_names)
    prior = np.bincount(train_labels, minlength=num_classes) / len(train_labels)
    log_p = np.log(predict_scores(model, val.images) + 1e-12)
    rare = int(np.argmin(prior))
    halves = split_halves(len(val.targets), 0)
    print(f"{FLAGS.model}: FER2013 val, {len(val.targets)} images; rarest class {spec.class_names[rare]} (prior {prior[rare]:.3f})")
    print(f"| tau | accuracy (half 1 / half 2) | mean per-class | {spec.class_names[rare]} recall |\n|---:|---|---|---|")
    for tau in (float(t) for t in FLAGS.taus):
        predicted = np.argmax(log_p - tau * np.log(prior), axis=-1)
        rows = [scores(predicted[h], val.targets[h], num_classes, rare) for h in halves]
        print(f"| {tau:g} | " + " | ".join(" / ".join(f"{100 * r[i]:.2f}" for r in rows) for i in range(3)) + " |")


if __name__ == "__main__":
    app.run(main)
