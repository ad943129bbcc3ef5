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


def main(argv):
    del argv
    from fer_keras import weights
    from fer_keras.calibration import split_halves
    from fer_keras.inference import predict_scores
    from fer_keras.metrics import classification_report
    from fer_keras.saving import load_model, model_spec
    from pipelines.datasets import load_split, open_dataset

    model = load_model(weights.weights_path(FLAGS.model))
    spec = model_spec(model)
    names = list(spec.class_names)
    val = load_split("fer2013", FLAGS.data_dir, "val", spec.input_spec, progress=False)
    # The priors need the training labels only: the listing has them, no image is decoded.
    train_labels = [record.target for record in open_dataset("fer2013", FLAGS.data_dir, "train").records()]
    prior = np.bincount(train_labels, minlength=len(names)) / len(train_labels)
    log_p = np.log(predict_scores(model, val.images) + 1e-12)
    rare = names[int(np.argmin(prior))]
    halves = split_halves(len(val.targets), 0)
    print(f"{FLAGS.model}: FER2013 val, {len(val.targets)} images; rarest class {rare} (prior {prior.min():.3f})")
    print(f"| tau | accuracy (half 1 / half 2) | mean per-class | {rare} recall |\n|---:|---|---|---|")
    for tau in (float(t) for t in FLAGS.taus):
        adjusted = log_p - tau * np.log(prior)
        reports = [classification_report(val.targets[h], adjusted[h], names) for h in halves]
        columns = [[r["accuracy"] for r in reports], [r["mean_class_accuracy"] for r in reports], [r["per_class"][rare]["sensitivity"] for r in reports]]
        print(f"| {tau:g} | " + " | ".join(" / ".join(f"{100 * v:.2f}" for v in column) for column in columns) + " |")


if __name__ == "__main__":
    app.run(main)
