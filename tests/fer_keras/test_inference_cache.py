"""``predict_scores`` reuses one compiled ``Scorer`` per live model and settings (no retracing
per training epoch), rebuilds it when the model's spec changes, and never keeps a model alive."""

from __future__ import annotations

import gc

import numpy as np

from fer_keras import inference
from fer_keras.registry import build_model
from fer_keras.saving import attach_spec, model_spec


def _model():
    return build_model("baseline", 7, widths=(4, 4, 4))


def test_repeated_scoring_traces_once_and_follows_weight_changes(fer_val_subset):
    model = _model()
    images = fer_val_subset.images[:40]
    first = inference.predict_scores(model, images, batch_size=16)
    scorer = inference.cached_scorer(model, False, 16)
    for _ in range(3):
        np.testing.assert_array_equal(inference.predict_scores(model, images, batch_size=16), first)
    assert inference.cached_scorer(model, False, 16) is scorer
    assert scorer._forward.experimental_get_tracing_count() == 2  # batches of 16 and the last 8, once each
    model.set_weights([w * 0.5 for w in model.get_weights()])  # a training step changes weights in place
    assert not np.allclose(inference.predict_scores(model, images, batch_size=16), first)
    np.testing.assert_allclose(inference.predict_scores(model, images, batch_size=16), inference.Scorer(model, False, 16)(images), rtol=1e-6)
    assert inference.cached_scorer(model, True, 16) is not scorer  # other settings, another scorer


def test_a_new_spec_gets_a_new_scorer(fer_val_subset):
    model = _model()
    images = fer_val_subset.images[:8]
    before = inference.predict_scores(model, images)
    attach_spec(model, model_spec(model).replace(temperature=2.0))
    after = inference.predict_scores(model, images)
    np.testing.assert_allclose(after, inference.Scorer(model)(images), rtol=1e-6)
    assert not np.allclose(after, before)


def test_the_cache_does_not_keep_models_alive(fer_val_subset):
    gc.collect()
    count = len(inference._SCORERS)
    model = _model()
    inference.predict_scores(model, fer_val_subset.images[:4])
    assert len(inference._SCORERS) == count + 1
    del model
    gc.collect()
    assert len(inference._SCORERS) == count
