"""The training loop: one custom loop for the default, mirrored and multi-worker strategies.

Why not ``model.fit``: Keras 3 ``fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585, ``Attempt to convert a value (PerReplica...)``). One loop written
with ``strategy.run`` over a distributed dataset behaves the same under every strategy, so
losses with state and the metrics agree everywhere.

What it keeps from ``fit``: a Keras progress bar, per-epoch CSV history and TensorBoard
scalars, the best-on-validation ``.keras`` model, and resumption. The role of Keras'
``BackupAndRestore`` is played by a checkpoint (``fer_keras.training.checkpoint``) saved every
``checkpoint_every`` steps and at each epoch end: the model, the optimiser, the epoch and the
step inside it, the running totals of the epoch's metrics, and the state of every random
generator the step draws from (dropout and other random layers). Each epoch's data order and
augmentation depend only on ``(seed, epoch)`` (``pipelines.input.train_dataset``), and a
resumed run skips the batches already done, so a run killed at any step and resumed ends
with the same weights, bit for bit, as one never interrupted (checked on one device and
under the mirrored strategy; a resume needs the same number of replicas). The history row of
an interrupted epoch covers the whole epoch: its ``seconds`` add the killed run's time up to
its last checkpoint, its ``images_per_sec`` are measured by the run that finished it.

The loss is the model's declared objective (``fer_keras.objective``): its terms read the
model's named outputs (auxiliary ones such as an embedding or ArcFace cosines included),
a per-batch loss choice draws from ``(seed, step)`` once per global batch (the ``Context``
also carries the fractional epoch for losses that follow training progress), stateful losses
(class centres) have their update statistics summed over replicas and applied after the
optimiser step, and their state is part of the checkpoint. Training accuracy is the argmax
of the inference output (``ModelSpec.output``) in training mode (dropout on).

The learning rate is set per epoch (``fer_keras.training.schedules``). The schedule
``cosine_then_step_on_plateau`` (FAML's two phases) switches on a plateau of the epoch's
training loss; the rule's state is a part of the checkpoint (``plateau``), so a resumed run
switches at the same epoch.

Frozen-then-unfrozen fine-tuning (``freeze_epochs``, ``head_layers``): for the first
``freeze_epochs`` epochs only the variables of the layers named in ``head_layers`` (by default
``predictions``, the classifier every ResNet-family model ends with) are updated; from then on
every trainable variable is. "Frozen" means the optimiser leaves the other variables alone (no
gradient step, no weight decay); the network still runs in training mode, so batch
normalisation keeps normalising with batch statistics and its moving averages follow the new
data (Keras' ``trainable = False`` would also switch those layers to inference mode, and would
be saved into ``best.keras``). The phase is a function of the epoch, so a resumed run freezes
exactly as an uninterrupted one. This is the transfer-learning schedule of
``fer_keras.cv --init_weights`` (B. Li's ResNet-101 paper, Sec. 3.5: the general shallow
features are kept while the task's classifier is learnt, then the whole network is fine-tuned).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import tempfile
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from fer_keras.inference import evaluate_arrays, inference_output
from fer_keras.objective import Context, Objective, Targets
from fer_keras.saving import model_spec, save_model
from fer_keras.training.checkpoint import RunCheckpoint, random_states
from fer_keras.training.schedules import PLATEAU_SCHEDULE, PlateauState, learning_rate_at, make_optimizer, plateau_update
from fer_keras.training.strategy import task_info
from pipelines import input as input_pipeline
from pipelines.cli import progress_bar

HISTORY_FIELDS = ("epoch", "learning_rate", "loss", "accuracy", "val_loss", "val_accuracy", "val_mean_class_accuracy", "seconds", "images_per_sec")


@dataclasses.dataclass
class LoopConfig:
    """Settings of one run of the loop (the CLI fills them from flags and presets)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    lr_decay_start: int = 0
    lr_decay_every: int = 1
    lr_decay_factor: float = 0.1
    warmup_epochs: int = 0
    plateau_patience: int = 3
    plateau_min_delta: float = 1e-3
    phase2_lr: float = 1e-5
    freeze_epochs: int = 0
    head_layers: tuple[str, ...] = ("predictions",)
    seed: int = 0
    oversample: bool = False
    class_weighting: bool = False
    augmentation: input_pipeline.Augmentation = dataclasses.field(default_factory=input_pipeline.Augmentation)
    checkpoint_every: int = 200
    jit_compile: bool = False
    eval_batch_size: int = 256
    verbose: int = 1


def batch_draw(seed: int, global_step):
    """The uniform number in [0, 1) of global batch ``global_step``, for per-batch loss
    choices (``fer_keras.objective.LossChoice``): a function of ``(seed, step)`` only."""
    return tf.random.stateless_uniform([], seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(global_step, tf.int64)]))


class Trainer:
    """Trains the model built by ``build_fn`` under ``strategy`` with its objective, writing into ``output_dir``.

    Args:
        build_fn: callable returning an uncompiled ``keras.Model`` carrying a ``ModelSpec``
            (``fer_keras.registry.build_model``); called inside the strategy scope.
        objective_fn: callable ``model -> Objective`` (``fer_keras.objective.call_factory``
            with the registered factory); called inside the strategy scope.
        config: LoopConfig.
        output_dir: str. Receives ``checkpoints/``, ``history.csv``, ``logs/``, ``best.keras``.
        strategy: a ``tf.distribute.Strategy``.
        target_kind: how the training targets are meant (``LoadedArrays.target_kind``):
            ``"labels"``, ``"distribution"``, ``"multi_hot"``, or ``"sampled"``
            (distributions to draw each epoch's class ids from).
    """

    def __init__(self, build_fn: Callable[[], keras.Model], objective_fn: Callable[[keras.Model], Objective], config: LoopConfig, output_dir: str, strategy: tf.distribute.Strategy, target_kind: str = "labels"):
        self.config, self.strategy = config, strategy
        self.sample_labels = target_kind == "sampled"
        self.loss_target_kind = "labels" if self.sample_labels else target_kind
        self.output_dir = output_dir
        self.is_chief, task_id = task_info(strategy)
        # Non-chief workers must save too (collectives), into scratch space that is thrown away.
        self.write_dir = output_dir if self.is_chief else tempfile.mkdtemp(prefix=f"fer_keras_worker{task_id}_")
        with strategy.scope():
            self.model = build_fn()
            self.objective = objective_fn(self.model)
            self.optimizer = make_optimizer(config.optimizer, config.learning_rate, config.momentum, config.weight_decay, config.nesterov)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
            self.best_val_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_accuracy")
            # The current epoch's running totals up to ``step_in_epoch``: training loss sum,
            # correct predictions, images counted, seconds spent.
            self.epoch_totals = {name: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=f"epoch_{name}") for name in ("loss", "correct", "images", "seconds")}
            loss_state = {f"loss_{term.name}": term.loss for term in self.objective.stateful_terms}
            # The plateau rule's state (``schedules.PlateauState``), with schedules that have one.
            self.plateau = {
                "best_loss": tf.Variable(float("inf"), dtype=tf.float64, trainable=False, name="plateau_best_loss"),
                "bad_epochs": tf.Variable(0, dtype=tf.int64, trainable=False, name="plateau_bad_epochs"),
                "switch_epoch": tf.Variable(-1, dtype=tf.int64, trainable=False, name="plateau_switch_epoch"),
            } if config.lr_schedule == PLATEAU_SCHEDULE else {}
            self.random_states = random_states([self.model, *loss_state.values()])
        self.model_spec = model_spec(self.model)
        self.spec, self.num_classes = self.model_spec.input_spec, self.model_spec.num_classes
        self.objective.check_targets(self.loss_target_kind)
        parts = dict(model=self.model, optimizer=self.optimizer, epoch=self.epoch, step_in_epoch=self.step_in_epoch, best_val_accuracy=self.best_val_accuracy, **loss_state)
        if self.plateau:
            parts["plateau"] = self.plateau
        self.checkpoint = RunCheckpoint(dict(parts, random_states=self.random_states, epoch_totals=self.epoch_totals), os.path.join(self.write_dir, "checkpoints"))
        self.head_variables = self._head_variables() if config.freeze_epochs > 0 else None

    def _head_variables(self) -> list:
        """The trainable variables of ``config.head_layers`` (the only ones updated while frozen)."""
        names = [layer.name for layer in self.model.layers]
        missing = [name for name in self.config.head_layers if name not in names]
        if missing:
            raise ValueError(f"head_layers {missing}: model {self.model.name!r} has no such layer (its last layers: {names[-6:]}). "
                             "Name the layers trained while the rest is frozen (freeze_epochs).")
        variables = [v for name in self.config.head_layers for v in self.model.get_layer(name).trainable_variables]
        if not variables:
            raise ValueError(f"head_layers {list(self.config.head_layers)} of model {self.model.name!r} have no trainable variables.")
        return variables

    # -- resumption -------------------------------------------------------------------
    def restore(self) -> bool:
        """Restore the latest checkpoint if there is one; True when a run is resumed."""
        return self.checkpoint.restore(os.path.join(self.output_dir, "checkpoints"))

    def _save_checkpoint(self, totals: dict) -> None:
        """Save with ``totals`` (loss, correct, images, seconds) as the epoch's running totals."""
        for name, value in totals.items():
            self.epoch_totals[name].assign(value)
        self.checkpoint.save()

    # -- the distributed step ---------------------------------------------------------
    def make_train_step(self, global_batch: int, steps_per_epoch: int = 1, frozen: bool = False):
        """The compiled distributed step: ``step(iterator, global_step) -> (loss_sum, correct)``
        over one global batch (``global_step / steps_per_epoch`` is the fractional epoch).
        ``frozen``: only the head's variables are updated (``freeze_epochs``)."""
        model, optimizer, strategy, objective = self.model, self.optimizer, self.strategy, self.objective
        variables = self.head_variables if frozen else model.trainable_variables
        spec, kind, seed = self.model_spec, self.loss_target_kind, self.config.seed
        teacher_spec = model_spec(objective.teacher) if objective.teacher is not None else None

        def replica_step(inputs, targets, weights, draw, epoch):
            batch_targets = Targets.from_batch(targets, kind)
            if objective.teacher is not None:
                soft = inference_output(objective.teacher(inputs, training=False), teacher_spec)
                batch_targets = Targets(batch_targets.labels, soft, "distribution")
            with tf.GradientTape() as tape:
                outputs = model(inputs, training=True)
                outputs = outputs if isinstance(outputs, dict) else {spec.output: outputs}
                per_example, _ = objective(batch_targets, outputs, Context(draw, epoch))
                per_example = per_example * weights
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            gradients = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            context = tf.distribute.get_replica_context()
            for term in objective.stateful_terms:
                sums = term.loss.statistics(batch_targets, outputs[term.output])
                term.loss.apply_statistics(*[context.all_reduce("SUM", value) for value in sums])
            predicted = tf.argmax(inference_output(outputs, spec), axis=-1, output_type=tf.int32)
            correct = tf.reduce_sum(tf.cast(tf.equal(batch_targets.labels, predicted), tf.float32))
            return tf.reduce_sum(tf.cast(per_example, tf.float32)), correct

        compiled_step = tf.function(replica_step, jit_compile=True) if self.config.jit_compile else replica_step

        @tf.function
        def train_step(iterator, global_step):
            # One draw per global batch for per-batch loss choices: the same on every replica
            # and in a resumed run.
            draw = batch_draw(seed, global_step)
            epoch = tf.cast(global_step, tf.float32) / float(steps_per_epoch)
            inputs, targets, weights = next(iterator)
            loss_sum, correct = strategy.run(compiled_step, args=(inputs, targets, weights, draw, epoch))
            return strategy.reduce("SUM", loss_sum, axis=None), strategy.reduce("SUM", correct, axis=None)

        return train_step

    # -- training ---------------------------------------------------------------------
    def fit(self, train_images: np.ndarray, train_targets: np.ndarray, val_images: np.ndarray, val_targets: np.ndarray) -> list[dict]:
        """Train from the restored (or initial) state to ``config.epochs``; returns the history rows."""
        cfg = self.config
        global_batch = cfg.batch_size
        if global_batch % self.strategy.num_replicas_in_sync:
            raise ValueError(f"batch_size {global_batch} must be divisible by the {self.strategy.num_replicas_in_sync} replicas.")
        steps = len(train_images) // global_batch
        if steps == 0:
            raise ValueError(f"batch_size {global_batch} is larger than the {len(train_images)} training images.")
        weights = input_pipeline.class_weights(train_targets, self.num_classes) if cfg.class_weighting else None
        train_steps = {frozen: self.make_train_step(global_batch, steps, frozen) for frozen in {False, cfg.freeze_epochs > 0}}
        history = self._read_history()
        writer = tf.summary.create_file_writer(os.path.join(self.write_dir, "logs")) if self.is_chief else None

        while int(self.epoch.numpy()) < cfg.epochs:
            epoch = int(self.epoch.numpy())
            first_step = int(self.step_in_epoch.numpy())
            switch_epoch = int(self.plateau["switch_epoch"].numpy()) if self.plateau else -1
            frozen = epoch < cfg.freeze_epochs
            train_step = train_steps[frozen]
            lr = learning_rate_at(epoch, cfg.learning_rate, cfg.lr_schedule, cfg.epochs, cfg.lr_decay_start, cfg.lr_decay_every, cfg.lr_decay_factor, cfg.warmup_epochs, switch_epoch, cfg.phase2_lr)
            self.optimizer.learning_rate.assign(lr)
            dataset = input_pipeline.train_dataset(train_images, train_targets, self.spec, global_batch, epoch=epoch, seed=cfg.seed, augmentation=cfg.augmentation, oversample=cfg.oversample, weights=weights, sample_labels=self.sample_labels)
            dataset = dataset.skip(first_step)
            iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
            if self.is_chief and cfg.verbose:
                print(f"Epoch {epoch + 1}/{cfg.epochs} (lr {lr:.3g})" + (", head only" if frozen else "") + (f", resuming at step {first_step}" if first_step else ""), flush=True)
            # Totals over the whole epoch, the steps a killed run did before its checkpoint included.
            totals = {name: float(variable.numpy()) for name, variable in self.epoch_totals.items()}
            seen = 0  # images of this session
            warmup = min(steps - first_step - 1, max(5, (steps - first_step) // 10))
            start = time.perf_counter()
            steady_start, steady_images = None, 0
            with progress_bar(enabled=bool(self.is_chief and cfg.verbose)) as progress:
                task = progress.add_task("train", total=steps, completed=first_step)
                for step in range(first_step, steps):
                    batch_loss, batch_correct = train_step(iterator, tf.constant(epoch * steps + step, tf.int64))
                    totals["loss"] += float(batch_loss)
                    totals["correct"] += float(batch_correct)
                    totals["images"] += global_batch
                    seen += global_batch
                    if step - first_step == warmup:
                        steady_start = time.perf_counter()
                    elif steady_start is not None:
                        steady_images += global_batch
                    rate = f"  {steady_images / (time.perf_counter() - steady_start):.0f} img/s" if steady_images else ""
                    progress.update(task, completed=step + 1, description=f"loss {totals['loss'] / totals['images']:.4f}  accuracy {totals['correct'] / totals['images']:.4f}{rate}")
                    self.step_in_epoch.assign(step + 1)
                    if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < steps:
                        self._save_checkpoint(dict(totals, seconds=totals["seconds"] + time.perf_counter() - start))
            train_end = time.perf_counter()
            seconds = totals["seconds"] + train_end - start
            steady_rate = steady_images / (train_end - steady_start) if steady_images else seen / max(train_end - start, 1e-9)
            val = evaluate_arrays(self.model, val_images, val_targets, cfg.eval_batch_size)
            row = {
                "epoch": epoch + 1,
                "learning_rate": lr,
                "loss": totals["loss"] / totals["images"],
                "accuracy": totals["correct"] / totals["images"],
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "val_mean_class_accuracy": val["mean_class_accuracy"],
                "seconds": seconds,
                "images_per_sec": steady_rate,
            }
            history.append(row)
            if self.is_chief and cfg.verbose:
                print(f"  val_loss {row['val_loss']:.4f}  val_accuracy {row['val_accuracy']:.4f}  val_mean_class_accuracy {row['val_mean_class_accuracy']:.4f}  {seconds:.0f}s", flush=True)
            self._update_plateau(epoch, row["loss"])
            improved = row["val_accuracy"] > float(self.best_val_accuracy.numpy())
            if improved:
                self.best_val_accuracy.assign(row["val_accuracy"])
                self._save_model("best.keras")
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self._write_history(history)
            if writer is not None:
                with writer.as_default(step=epoch + 1):
                    for key in HISTORY_FIELDS[1:]:
                        tf.summary.scalar(key, row[key])
                writer.flush()
            self._save_checkpoint({name: 0.0 for name in self.epoch_totals})
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return history

    def _update_plateau(self, epoch: int, loss: float) -> None:
        """Apply the plateau rule to the finished epoch's training loss (no-op without one)."""
        if not self.plateau:
            return
        before = PlateauState(*(float(self.plateau[k].numpy()) if k == "best_loss" else int(self.plateau[k].numpy()) for k in ("best_loss", "bad_epochs", "switch_epoch")))
        after = plateau_update(before, epoch, loss, self.config.plateau_patience, self.config.plateau_min_delta)
        for name, value in dataclasses.asdict(after).items():
            self.plateau[name].assign(value)
        if after.switch_epoch >= 0 > before.switch_epoch and self.is_chief and self.config.verbose:
            print(f"  training loss on a plateau ({after.bad_epochs} epochs without a gain > {self.config.plateau_min_delta:g}): learning-rate phase 2 from epoch {after.switch_epoch + 1}", flush=True)

    # -- files --------------------------------------------------------------------------
    def _save_model(self, name: str) -> None:
        if self.is_chief:
            save_model(self.model, os.path.join(self.output_dir, name))

    def _history_path(self) -> str:
        return os.path.join(self.output_dir, "history.csv")

    def _read_history(self) -> list[dict]:
        """Rows of epochs already finished (a resumed run keeps them, drops any later ones)."""
        path = self._history_path()
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        done = int(self.epoch.numpy())
        return [dict(row, epoch=int(row["epoch"])) for row in rows if row["epoch"] <= done]

    def _write_history(self, history: list[dict]) -> None:
        if not self.is_chief:
            return
        path = self._history_path()
        with open(path + ".tmp", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows(history)
        os.replace(path + ".tmp", path)
