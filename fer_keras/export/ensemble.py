"""Export several trained members as one ensemble SavedModel with T2V, NOI and bagging votes.

Members may be different architectures with different input specs: each gets its own
preprocessing of the decoded bytes (``pipelines.input.eval_inputs`` on its spec), images are
decoded once per distinct (source size, channels). The votes are ``fer_keras.voting``, the
same code evaluation uses.

Signatures, each with input ``images`` string ``[N]`` of encoded image bytes:

- ``t2v``, ``noi``, ``bagging``: outputs ``vote_scores`` float32 ``[N, C]``, ``class_ids``
  int64 ``[N]``, ``labels`` string ``[N]`` and ``member_probabilities`` float32 ``[M, N, C]``.
- ``serving_default``: the rule named by ``default``.
- ``metadata``: as for single models (``fer_keras.export.savedmodel``), with the members'
  names and specs, the rules, ``alpha``/``beta`` and the default rule in ``metadata_json``.
"""

from __future__ import annotations

import tempfile

import keras
import tensorflow as tf

from fer_keras import voting
from fer_keras.export.savedmodel import add_metadata, build_metadata, decode_images, write_version_atomically
from fer_keras.inference import probabilities
from fer_keras.saving import float32_compute, model_spec


def export_ensemble(
    members: list[keras.Model],
    export_root: str,
    name: str,
    version: int | None = None,
    default: str = "t2v",
    alpha: float = 1.9,
    beta: float = 1.0,
    extra_metadata: dict | None = None,
) -> str:
    """Export ``members`` as ``<export_root>/<name>/<version>/`` (see the module docstring).

    Args:
        members: trained Keras models carrying their ``ModelSpec`` s, with the same class
            names in the same order (each may have its own input spec).
        export_root, name, version: as in ``export_model``.
        default: str. Rule served as ``serving_default``: "t2v", "noi" or "bagging".
        alpha, beta: float. T2V weights of first and second choices (paper: 1.9, 1.0).
        extra_metadata: dict. More JSON-serialisable metadata.

    Returns:
        The version directory written.
    """
    if not members:
        raise ValueError("An ensemble needs at least one member.")
    if default not in voting.VOTING_RULES:
        raise ValueError(f"default must be one of {sorted(voting.VOTING_RULES)}. Received: default={default!r}")
    members = [float32_compute(m) for m in members]  # as single-model export: float32 kernels
    specs = [model_spec(m) for m in members]
    if len({s.class_names for s in specs}) != 1:
        raise ValueError(f"Members disagree on their classes: {[(m.name, list(s.class_names)) for m, s in zip(members, specs)]}")
    class_names = list(specs[0].class_names)

    def member_probabilities(images):
        decoded = {}
        scores = []
        for model, spec in zip(members, specs):
            key = (tuple(spec.input_spec.source_size), spec.input_spec.channels)
            if key not in decoded:
                decoded[key] = decode_images(images, spec.input_spec)
            scores.append(probabilities(model, decoded[key], spec))
        return tf.stack(scores, axis=0)

    def vote_fn(rule):
        def fn(images):
            probabilities = member_probabilities(images)
            if rule == "t2v":
                vote_scores, class_ids = voting.t2v(probabilities, alpha=alpha, beta=beta)
            else:
                vote_scores, class_ids = voting.VOTING_RULES[rule](probabilities)
            class_ids = tf.cast(class_ids, tf.int64)
            return {
                "vote_scores": tf.cast(vote_scores, tf.float32),
                "class_ids": class_ids,
                "labels": tf.gather(tf.constant(class_names), class_ids),
                "member_probabilities": probabilities,
            }

        return fn

    metadata = build_metadata(name, specs[0], extra_metadata)
    metadata.update(
        {
            "ensemble": True,
            "members": [
                {"keras_model_name": m.name, "model_spec": s.to_dict()}
                for m, s in zip(members, specs)
            ],
            "voting_rules": sorted(voting.VOTING_RULES),
            "default_vote": default,
            "alpha": alpha,
            "beta": beta,
        }
    )
    images_spec = [tf.TensorSpec([None], tf.string, name="images")]

    def write(tmp_dir):
        archive = keras.export.ExportArchive()  # no track(): see export_model, weights are stored once
        archive.add_endpoint("serving_default", vote_fn(default), input_signature=images_spec)
        for rule in voting.VOTING_RULES:
            archive.add_endpoint(rule, vote_fn(rule), input_signature=images_spec)
        with tempfile.TemporaryDirectory() as asset_dir:
            add_metadata(archive, metadata, asset_dir)
            archive.write_out(tmp_dir, verbose=False)

    return write_version_atomically(export_root, name, version, write)
