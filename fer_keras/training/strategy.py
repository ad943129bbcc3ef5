"""Distribution strategies selectable by name, and the chief/worker facts the loop needs."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local devices) or ``multi_worker`` (``TF_CONFIG``)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}. Expected one of {STRATEGIES}.")


def task_info(strategy: tf.distribute.Strategy) -> tuple[bool, int]:
    """``(is_chief, task_id)``: the chief writes logs, checkpoints and models; others write scratch copies."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True, 0
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    task_type, task_id = task.get("type"), int(task.get("index", 0))
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return is_chief, task_id
