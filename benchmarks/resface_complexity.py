"""Parameters and MFLOPs of ResFace's ablation rows at 224x224, next to the paper's Tables 1-5.

    .venv/bin/python benchmarks/resface_complexity.py [--depths=18,50]

Builds the registered ``resface`` model (7 classes, 224x224x3, the ImageNet stem of the
paper's Sec. 4.2) for each row of Tables 1-4 (A baseline, A+B local feature extractor, A+C
channel-spatial modulator, A+B+C) and prints a markdown table:

- Params (M): trainable parameters, as PyTorch's ``sum(p.numel())`` the paper would use
  (batch-norm moving statistics are buffers there, so they are left out here too);
- MFLOPs: multiply-adds of the convolutions and FC layers of one 224x224 image
  (``fer_keras.flops.count_multiply_adds``), the papers' "FLOPs"; and, for reference, all
  FLOPs as TensorFlow's profiler counts them (multiply-add = 2, ``count_flops``).

The paper's numbers are identical for RAF-DB (Tables 1-2) and FER+ (Tables 3-4). Nothing
is timed, so the shared CPU does not matter.
"""

from __future__ import annotations

import argparse

import keras

from fer_keras.flops import count_flops, count_multiply_adds
from fer_keras.models.resface import ROWS
from fer_keras.registry import get_model_entry
from fer_spec import InputSpec

SPEC_224 = InputSpec(image_size=(224, 224), source_size=(240, 240), channels=3)
# (depth, row) -> (Params (M), MFLOPs): Tables 1/3 (ResNet-18) and 2/4 (ResNet-50).
PAPER = {
    (18, "A"): (10.1, 1642.86),
    (18, "A+B"): (10.2, 1659.13),
    (18, "A+C"): (10.3, 1675.39),
    (18, "A+B+C"): (10.4, 1691.66),
    (50, "A"): (12.1, 1968.18),
    (50, "A+B"): (12.2, 1984.45),
    (50, "A+C"): (12.3, 2000.72),
    (50, "A+B+C"): (12.4, 2016.74),
}


def measure(depth: int, row: str) -> tuple[float, float, float]:
    """``(trainable parameters in M, multiply-adds in M, profiler FLOPs in M)`` of one row."""
    local_extractor, modulator = ROWS[row]
    model = get_model_entry("resface").builder(
        num_classes=7, input_spec=SPEC_224, depth=depth, stem="imagenet", local_extractor=local_extractor, modulator=modulator
    )
    params = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    return params / 1e6, count_multiply_adds(model) / 1e6, count_flops(model) / 1e6


def table(depths) -> str:
    lines = [
        "| Backbone | Row | Params (M) | paper | MFLOPs (multiply-adds) | paper | increment over A: ours / paper (MFLOPs) | profiler MFLOPs (MAC = 2) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for depth in depths:
        base = None
        for row in ROWS:
            params, macs, flops = measure(depth, row)
            paper_params, paper_macs = PAPER[(depth, row)]
            base = base or (macs, paper_macs)
            lines.append(
                f"| ResNet-{depth} | {row} | {params:.3f} | {paper_params} | {macs:.2f} | {paper_macs:.2f} "
                f"| {macs - base[0]:+.2f} / {paper_macs - base[1]:+.2f} | {flops:.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="18,50", help="comma-separated ResNet depths (paper: 18,50)")
    args = parser.parse_args()
    print(table([int(d) for d in args.depths.split(",")]))


if __name__ == "__main__":
    main()
