"""Is MrCAR's softmax head (Table 6, -ALoss) numerically stable at the preset's learning rate?

    python benchmarks/softmax_head_stability.py --data_dir=../shared/datasets/fer2013 [--steps=150]

Trains the global-only MrCAR with a Dense softmax head (``head="softmax"``) for ``--steps``
SGD steps (momentum 0.9, batch 32, centre crops of real FER2013 training faces, same seed
and data for every setting) and logs, every 10 steps: the cross-entropy, the largest logit
magnitude, the embedding's mean L2 norm, the global gradient norm and how many classes the
batch's predictions use. The loss is ``fer_keras.losses.crossentropy`` on the probabilities
(as the softmax head trained before) or from the logits (as it trains now). Settings: the
preset (lr 0.01), lr 0.001, lr 0.01 with a linear warm-up over the first ``--steps`` steps,
lr 0.01 with the gradient clipped to norm 5, lr 0.01 from logits, and the ArcFace head at
lr 0.01 (its logits are bounded by ``s``). A collapse shows as the loss stuck near
``-log(1e-7) = 16`` or a fixed value with one predicted class and zero gradient.
"""

from __future__ import annotations

import argparse

import numpy as np


def run(setting, images, labels, steps, batch_size=32, seed=0):
    import keras
    import tensorflow as tf

    from fer_keras.models.mrcar import MRCAR_SPEC, build_mrcar
    from fer_keras.losses.arcface import arcface_loss
    from fer_keras.losses.crossentropy import crossentropy
    from fer_keras.objective import Targets

    keras.utils.set_random_seed(seed)
    head = "arcface" if setting == "arcface lr 0.01" else "softmax"
    model = build_mrcar(7, MRCAR_SPEC, variant="global_only", head=head)
    base_lr = 0.001 if setting == "lr 0.001" else 0.01
    optimizer = keras.optimizers.SGD(base_lr, momentum=0.9)
    clip = 5.0 if setting == "lr 0.01, clip norm 5" else None
    log = []
    for step in range(steps):
        if setting == "lr 0.01, warm-up":
            optimizer.learning_rate.assign(base_lr * (step + 1) / steps)
        index = np.arange(step * batch_size, (step + 1) * batch_size) % len(images)
        x = tf.convert_to_tensor(images[index])
        y = tf.convert_to_tensor(labels[index])
        with tf.GradientTape() as tape:
            embedding = model.backbone({"face": x}, training=True)
            if head == "softmax":
                logits = tf.matmul(embedding, model.head.kernel) + model.head.bias
                targets = Targets.from_batch(y, "labels")
                if setting == "lr 0.01, from logits":
                    loss = tf.reduce_mean(crossentropy(targets, logits, from_logits=True))
                else:
                    loss = tf.reduce_mean(crossentropy(targets, tf.nn.softmax(logits)))
            else:
                cosine = model.head.cosine(embedding)
                logits = model.arcface_scale * cosine
                loss = tf.reduce_mean(arcface_loss(y, cosine, model.arcface_scale, model.arcface_margin))
        grads = tape.gradient(loss, model.trainable_variables)
        norm = float(tf.linalg.global_norm(grads))
        if clip:
            grads, _ = tf.clip_by_global_norm(grads, clip)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if step % 10 == 0 or step == steps - 1:
            log.append({
                "step": step, "loss": float(loss), "max_abs_logit": float(tf.reduce_max(tf.abs(logits))),
                "embedding_norm": float(tf.reduce_mean(tf.norm(embedding, axis=1))), "grad_norm": norm,
                "classes_predicted": int(len(np.unique(np.argmax(logits.numpy(), 1)))),
            })
    return log


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--images", type=int, default=4800)
    parser.add_argument("--only", default="", help="Settings to run, separated by ';' (default: all).")
    args = parser.parse_args()

    from pipelines.datasets import load_arrays, open_dataset

    train = load_arrays(open_dataset("fer2013", args.data_dir, "train"), image_size=(48, 48), channels=1, limit=args.images, progress=False)
    images = (train.images[:, 2:46, 2:46, :].astype("float32") / 255.0)
    labels = train.targets.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    settings = ("lr 0.01 (preset)", "lr 0.001", "lr 0.01, warm-up", "lr 0.01, clip norm 5", "lr 0.01, from logits", "arcface lr 0.01")
    for setting in [name for name in settings if not args.only or name in args.only.split(";")]:
        log = run(setting, images, labels, args.steps)
        print(f"\n{setting}")
        print("| step | loss | max abs logit | embedding norm | grad norm | classes predicted |")
        print("|---:|---:|---:|---:|---:|---:|")
        for row in log:
            print(f"| {row['step']} | {row['loss']:.3f} | {row['max_abs_logit']:.1f} | {row['embedding_norm']:.1f} | {row['grad_norm']:.2f} | {row['classes_predicted']} |")


if __name__ == "__main__":
    main()
