"""Calibrated probabilities: temperature scaling, expected calibration error, NLL.

Temperature scaling (C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern
Neural Networks", ICML 2017, Sec. 4.2): one scalar ``T > 0`` fitted on held-out data to
minimise the negative log-likelihood of ``softmax(log p / T)``; the ranking, hence the
accuracy, does not change. The fitted ``T`` is stored in the model's ``ModelSpec``
(``.keras`` file, SavedModel metadata, card) and applied wherever the model is scored
(``fer_keras.inference``), exported graphs included.

Parameterized temperature scaling (C. Tomani, D. Cremers, F. Buettner, "Parameterized
Temperature Scaling for Boosting the Expressive Power in Post-Hoc Uncertainty Calibration",
ECCV 2022): the temperature becomes a function of the face's own sorted log-probabilities,
``T(x) = T * exp(b + w . sort(log p)(x))``, fitted the same way. Still rank-preserving (one
positive ``T(x)`` per face), it fixes what one ``T`` cannot: an ArcFace head that is
over-confident on some faces and under-confident on others (``mrcar-fer2013``, RESULTS.md).
The paper predicts ``T(x)`` with a small network; ours is its linear, log-link special case
(``K + 1`` numbers, stored in ``ModelSpec.temperature_weights``), which is enough here.

Expected calibration error (Guo et al. Eq. 3, after Naeini et al. 2015): confidences (top-1
probabilities) in ``bins`` equal-width bins over [0, 1];
``ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize


def apply_temperature(probabilities: np.ndarray, temperature: float, weights: Sequence[float] = ()) -> np.ndarray:
    """``softmax(log p / T(x))`` row-wise, in float64: ``T(x) = temperature`` or, with
    ``weights = (w_1..w_K, b)``, ``temperature * exp(clip(b + w . sort_desc(log p), -10, 10))``
    (the NumPy reference of ``fer_keras.inference.inference_output``)."""
    log_p = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0))
    temperature = np.full((len(log_p), 1), float(temperature))
    if len(weights):
        ranked = -np.sort(-log_p, axis=1)
        temperature = temperature * np.exp(np.clip(ranked @ np.asarray(weights[:-1], np.float64) + weights[-1], -10.0, 10.0))[:, None]
    logits = log_p / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p_y``."""
    picked = np.asarray(probabilities, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[tuple[float, float, float]]:
    """``(share of examples, accuracy, mean confidence)`` of each non-empty bin of the top-1
    confidence (``bins`` equal-width bins over [0, 1], right-closed, 0 in the first)."""
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return [(float((index == b).mean()), float(correct[index == b].mean()), float(confidence[index == b].mean())) for b in range(bins) if np.any(index == b)]


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence over ``bins`` equal-width bins (see ``reliability_bins``)."""
    return float(sum(share * abs(accuracy - confidence) for share, accuracy, confidence in reliability_bins(probabilities, labels, bins)))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The ``T`` in ``[low, high]`` minimising the NLL of ``softmax(log p / T)``: golden-section
    search on ``log T`` (the NLL is convex in ``1 / T``, so unimodal in ``log T``)."""
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one example.")
    nll = lambda log_t: negative_log_likelihood(apply_temperature(probabilities, np.exp(log_t)), labels)  # noqa: E731
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > 1e-5:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return float(np.exp((a + b) / 2.0))


def fit_temperature_weights(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, ...]:
    """The ``(w_1..w_K, b)`` of a per-face temperature (see ``apply_temperature``) minimising the
    NLL, by L-BFGS (scipy) from the best single temperature (``w = 0``, ``b = log T``)."""
    if len(labels) == 0:
        raise ValueError("fit_temperature_weights needs at least one example.")
    num_classes = np.asarray(probabilities).shape[1]
    start = np.append(np.zeros(num_classes), np.log(fit_temperature(probabilities, labels)))
    result = minimize(lambda w: negative_log_likelihood(apply_temperature(probabilities, 1.0, w), labels), start, method="L-BFGS-B")
    return tuple(float(w) for w in result.x)


def calibration_report(probabilities: np.ndarray, labels: np.ndarray, temperature: float, bins: int = 15, weights: Sequence[float] = ()) -> dict:
    """NLL and ECE before and after ``temperature`` (and ``weights``, if any; the accuracy,
    which they keep)."""
    calibrated = apply_temperature(probabilities, temperature, weights)
    return {
        "temperature": float(temperature),
        "temperature_weights": [float(w) for w in weights],
        "num_examples": int(len(labels)),
        "accuracy": float(np.mean(np.asarray(probabilities).argmax(1) == labels)),
        "nll_before": negative_log_likelihood(probabilities, labels),
        "nll_after": negative_log_likelihood(calibrated, labels),
        "ece_before": expected_calibration_error(probabilities, labels, bins),
        "ece_after": expected_calibration_error(calibrated, labels, bins),
        "bins": bins,
    }


def split_halves(num_examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random halving of ``range(num_examples)``: fit on one half, report on the other."""
    order = np.random.default_rng(seed).permutation(num_examples)
    return np.sort(order[: num_examples // 2]), np.sort(order[num_examples // 2 :])
