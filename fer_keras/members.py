"""Members of an ensemble or of an FGA population: each one run of the training loop in its own folder.

A member is trained exactly as ``fer_keras.train`` trains a model: the registered builder,
the preset's settings with overrides, the model's declared objective, one
``fer_keras.training.loop.Trainer`` writing ``checkpoints/``, ``history.csv`` and
``best.keras`` into the member's folder. Members differ by their seed (weights, data order,
augmentation) or by their starting weights (an FGA fused network).

Resumption: ``recipe.json`` records what the folder trains; a killed member resumes from its
checkpoint; a finished member (``member.json`` written) is loaded, never retrained. A folder
that holds a member of another recipe is an error, not a silent reuse.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import keras
import numpy as np

from fer_keras.objective import call_factory
from fer_keras.registry import build_model, get_model_entry
from fer_keras.saving import attach_spec, load_model, model_spec, save_model
from fer_keras.training.loop import LoopConfig, Trainer
from fer_keras.training.strategy import make_strategy
from fer_spec import InputSpec
from pipelines.datasets import LoadedArrays
from pipelines.input import Augmentation, class_weights

RECIPE_FILE = "recipe.json"
RECORD_FILE = "member.json"
MODEL_FILE = "best.keras"
# LoopConfig fields a CLI sets from its own flags, never from a preset.
_CLI_OWNED = {"seed", "oversample", "class_weighting", "checkpoint_every", "jit_compile", "verbose"}


def loop_setting_names() -> list[str]:
    """The training settings a preset (or an override) may set: ``LoopConfig`` fields the CLIs do not own."""
    return [f.name for f in dataclasses.fields(LoopConfig) if f.name not in _CLI_OWNED]


def flag_overrides(flag_values, names: tuple[str, ...]) -> dict:
    """The training settings among ``names`` that a CLI's flags set (not None), plus
    ``--head_layers`` when given: the overrides ``MemberRecipe.from_preset`` applies."""
    overrides = {name: getattr(flag_values, name) for name in names if getattr(flag_values, name) is not None}
    if flag_values.head_layers:
        overrides["head_layers"] = list(flag_values.head_layers)
    return overrides


def write_json(path: str, payload: Any) -> str:
    """Write ``payload`` as indented JSON, atomically (temporary file, then rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


@dataclasses.dataclass(frozen=True)
class MemberRecipe:
    """How every member of a population is trained (all but the seed and starting weights).

    Args:
        model: str. Registered model name.
        preset: str. Preset of that model.
        settings: dict. The preset's training settings with the overrides applied
            (``LoopConfig`` fields and ``augmentation``).
        model_options, objective_options: dict. Builder and objective options (preset's, overridden).
        dataset: str. Training data set, recorded in the model's spec.
        ten_crop: bool. Whether scoring defaults to ten-crop testing.
    """

    model: str
    preset: str
    settings: dict
    model_options: dict
    objective_options: dict
    dataset: str
    ten_crop: bool = False

    @classmethod
    def from_preset(cls, model: str, preset: str | None = None, dataset: str = "demo", overrides: dict | None = None,
                    model_options: dict | None = None, objective_options: dict | None = None) -> MemberRecipe:
        """The recipe of ``model`` with ``preset`` (default: the model's; ``demo`` on demo data),
        its settings and options overridden (an ``augmentation`` override replaces only the
        fields it names). Unknown presets, settings, augmentation fields or options are a
        ``ValueError`` naming the known ones."""
        entry = get_model_entry(model)
        name = preset or ("demo" if dataset == "demo" and "demo" in entry.presets else entry.default_preset)
        if name not in entry.presets:
            raise ValueError(f"Unknown preset {name!r} for {model}. Known: {', '.join(entry.presets)}")
        chosen = entry.presets[name]
        overrides = dict(overrides or {})
        settings = dict(chosen.settings, **overrides)
        known = loop_setting_names()
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"Unknown training setting(s) {unknown}. Known: {sorted(known)}")
        if "augmentation" in overrides:
            settings["augmentation"] = dict(chosen.settings.get("augmentation", {}), **overrides["augmentation"])
        fields = {f.name for f in dataclasses.fields(Augmentation)}
        unknown = sorted(set(settings.get("augmentation", {})) - fields)
        if unknown:
            raise ValueError(f"Unknown augmentation field(s) {unknown}. Known: {sorted(fields)}")
        model_options = dict(chosen.model_options, **(model_options or {}))
        objective_options = dict(chosen.objective_options, **(objective_options or {}))
        entry.check_options(model_options, objective_options)
        return cls(model, name, settings, model_options, objective_options, dataset, chosen.ten_crop)

    def input_spec(self) -> InputSpec:
        """The input the members read (the preset's, else the model's default)."""
        entry = get_model_entry(self.model)
        return entry.presets[self.preset].input_spec or entry.input_spec

    def with_settings(self, **overrides) -> MemberRecipe:
        """The same recipe with some training settings replaced (e.g. a short fine-tuning)."""
        return dataclasses.replace(self, settings=dict(self.settings, **overrides))

    def loop_config(self, seed: int, verbose: int = 1) -> LoopConfig:
        settings = dict(self.settings)
        augmentation = Augmentation(**settings.pop("augmentation", {}))
        return LoopConfig(**settings, augmentation=augmentation, seed=seed, verbose=verbose)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


def data_objective_options(entry, objective_options: dict, targets, num_classes: int) -> dict:
    """``objective_options`` plus what the objective takes from the training data: for an
    objective with a ``class_weights`` option (FAML's weighted cross-entropy, Eq. 2) the
    training set's inverse-frequency weights ``N / (K n_k)``, unless the options set them."""
    if "class_weights" not in entry.objective_option_names() or "class_weights" in objective_options:
        return dict(objective_options)
    return dict(objective_options, class_weights=tuple(float(w) for w in class_weights(targets, num_classes)))


def is_finished(run_dir: str) -> bool:
    """True when ``run_dir`` holds a finished member (its ``member.json``)."""
    return os.path.isfile(os.path.join(run_dir, RECORD_FILE))


def read_record(run_dir: str) -> dict:
    """The finished member's record, with ``path`` = ``<run_dir>/best.keras``: derived from
    where the folder is now, so a run folder can be moved (a stored path is ignored)."""
    with open(os.path.join(run_dir, RECORD_FILE)) as f:
        return dict(json.load(f), path=os.path.join(run_dir, MODEL_FILE))


def _check_recipe(run_dir: str, recipe: MemberRecipe, seed: int, initial_model: str | None) -> None:
    """Write ``recipe.json``, or check that the one already there describes the same member."""
    wanted = {"recipe": recipe.to_dict(), "seed": seed, "initial_model": initial_model}
    path = os.path.join(run_dir, RECIPE_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            found = json.load(f)
        if found != wanted:
            changed = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise ValueError(f"{run_dir} holds a member trained with another {', '.join(changed)} ({found} vs {wanted}). Choose another folder.")
        return
    os.makedirs(run_dir, exist_ok=True)
    write_json(path, wanted)


def train_member(recipe: MemberRecipe, run_dir: str, seed: int, train: LoadedArrays, val: LoadedArrays,
                 initial_model: str | None = None, verbose: int = 1) -> dict:
    """Train (or resume, or load the record of) one member in ``run_dir``.

    Args:
        recipe: MemberRecipe.
        run_dir: str. The member's own folder (a ``Trainer`` output folder).
        seed: int. Seed of weights, data order and augmentation.
        train, val: arrays of the training and validation splits at the recipe's input spec.
        initial_model: str or None. A ``.keras`` file to start from instead of fresh weights
            (an FGA fused network); its architecture must be the recipe's.
        verbose: int. 0 silent, 1 progress bar.

    Returns:
        The member's record (``member.json``, see ``read_record``): ``path`` of its best model, ``val_accuracy``,
        ``epochs``, ``images_per_sec`` (median over epochs after the first), ``seed``,
        ``resumed``, ``trained`` (False when it was already finished).
    """
    _check_recipe(run_dir, recipe, seed, initial_model)
    if is_finished(run_dir):
        return dict(read_record(run_dir), trained=False)
    entry = get_model_entry(recipe.model)
    spec = dataclasses.replace(recipe.input_spec(), framing=train.framing)
    class_names = tuple(train.class_names)
    target_kind = "labels" if train.target_kind == "sampled" else train.target_kind

    def build():
        if initial_model:
            return load_initial_model(initial_model, train.framing, recipe.dataset, recipe.ten_crop)
        return build_model(recipe.model, class_names, spec, ten_crop=recipe.ten_crop, dataset=recipe.dataset, **recipe.model_options)

    objective_options = data_objective_options(entry, recipe.objective_options, train.targets, len(class_names))
    keras.utils.set_random_seed(seed)
    trainer = Trainer(build, lambda model: call_factory(entry.objective, model, target_kind, objective_options),
                      recipe.loop_config(seed, verbose), run_dir, make_strategy("default"), target_kind=train.target_kind)
    resumed = trainer.restore()
    history = trainer.fit(train.images, train.targets, val.images, val.targets)
    save_model(trainer.model, os.path.join(run_dir, "final.keras"))
    steady = [row["images_per_sec"] for row in history[1:]] or [row["images_per_sec"] for row in history]
    record = {
        "seed": seed,
        "initial_model": initial_model,
        "epochs": len(history),
        "val_accuracy": max(row["val_accuracy"] for row in history),
        "images_per_sec": float(np.median(steady)),
        "resumed": resumed,
        "recipe": recipe.to_dict(),
    }
    write_json(os.path.join(run_dir, RECORD_FILE), record)
    return dict(read_record(run_dir), trained=True)


def check_init_weights(path: str, recipe: MemberRecipe, data: LoadedArrays) -> str:
    """The file of a model training starts from (``--init_weights`` of ``fer_keras.train``, ``cv``
    and ``ensemble``): ``path``, or the shipped model of that name. It must be the recipe's
    architecture, predict the data's classes and read the recipe's input (crop, source size,
    channels, regions, normalisation; the framing follows the data); otherwise a ``ValueError``
    saying which."""
    if not os.path.isfile(path):
        from fer_keras import weights

        shipped = weights.pretrained_names()
        if path not in shipped:
            raise ValueError(f"init_weights {path}: no such .keras file, nor a shipped model of that name ({', '.join(shipped)}).")
        path = weights.weights_path(path)
    spec = model_spec(load_model(path))
    if spec.architecture != recipe.model:
        raise ValueError(f"init_weights {path} is a {spec.architecture}; --model is {recipe.model}. Start from the same architecture.")
    if tuple(spec.class_names) != tuple(data.class_names):
        raise ValueError(f"init_weights {path} predicts {list(spec.class_names)}; the data has {list(data.class_names)}. "
                         "Start from a model trained on the same classes.")
    # Framing is the data's to say (``load_initial_model`` sets it); every other field is the
    # network's: a crop or region of another size would train on inputs the spec does not record.
    theirs, wanted = spec.input_spec.to_dict(), recipe.input_spec().to_dict()
    differing = [name for name in wanted if name != "framing" and theirs[name] != wanted[name]]
    if differing:
        raise ValueError(f"init_weights {path} reads " + ", ".join(f"{name}={theirs[name]}" for name in differing)
                         + f"; preset {recipe.preset!r} of {recipe.model} reads " + ", ".join(f"{name}={wanted[name]}" for name in differing) + ".")
    return path


def load_initial_model(path: str, framing: str, dataset: str, ten_crop: bool) -> keras.Model:
    """``path`` loaded to be trained further. Its calibration is reset (a temperature fitted to
    the old weights says nothing about the new ones) and its spec names the data it is now
    trained on: that data's framing and name, and the run's test crop."""
    model = load_model(path)
    spec = model_spec(model)
    return attach_spec(model, spec.replace(temperature=1.0, temperature_weights=(), dataset=dataset, ten_crop=ten_crop,
                                           input_spec=dataclasses.replace(spec.input_spec, framing=framing)))
