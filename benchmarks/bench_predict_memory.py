"""Peak memory of ``python -m fer_keras.predict`` on large photos: this tree against a reference.

    git worktree add ../ref_cli <commit>        # the tree to compare with (e.g. before a change)
    python benchmarks/bench_predict_memory.py [--reference=../ref_cli] [--side=6000] [--cases=small,1,2] [--repeats=1]

Makes large JPEGs in a temporary folder (deleted at the end, never committed): real photos
of ``../shared/faces`` upscaled to fill a ``side`` x ``side`` frame (one face of about half
the frame), then runs the CLI in a fresh subprocess per measurement on: the original small
photo (the process's own footprint: TensorFlow, MTCNN, the model), one large photo, and two
large photos in one call. Peak resident memory is the child's ``ru_maxrss`` from
``os.wait4`` (what ``/usr/bin/time -v`` reports as "Maximum resident set size"); wall time
is printed too but is noisy on a shared machine. Trees alternate (reference, this tree) for
each case; with ``--repeats`` > 1 the median (min-max) is shown. Mind the machine's memory:
before the working-size detection one 6000x6000 photo took 11 GB and two were killed by
the kernel's OOM killer at 20 GB on a 24 GiB machine; ``--cases`` picks the cases to run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = ("angry_man.png", "surprised_man.png")


def make_large_photo(source: str, side: int, target: str) -> str:
    """``source`` upscaled (bicubic) to fill a black ``side`` x ``side`` frame, as a JPEG."""
    photo = Image.open(source).convert("RGB")
    scale = side / max(photo.size)
    size = (round(photo.width * scale), round(photo.height * scale))
    frame = Image.new("RGB", (side, side))
    frame.paste(photo.resize(size, Image.BICUBIC), ((side - size[0]) // 2, (side - size[1]) // 2))
    frame.save(target, quality=92)
    return target


def peak_of_predict(tree: str, paths: list[str]) -> tuple[float, float, str]:
    """``(peak RSS in MB, wall seconds, the summary line)`` of one CLI run from ``tree``."""
    env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fer_keras.predict", *paths, "--noprogress"], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{tree}: fer_keras.predict exited with {proc.returncode}\n{out}")
    summary = next(line for line in out.splitlines() if "photo(s)" in line)
    return usage.ru_maxrss / 1024, seconds, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", help="Another checkout of the repository (git worktree) to compare with; none: this tree only.")
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cases", default="small,1,2", help="Any of: small (the original photo), 1 and 2 (large photos in one call).")
    args = parser.parse_args()

    trees = {"reference": os.path.abspath(args.reference)} if args.reference else {}
    trees["this tree"] = ROOT
    with tempfile.TemporaryDirectory() as tmp:
        sources = [os.path.join(args.shared, "faces", name) for name in PHOTOS]
        large = [make_large_photo(path, args.side, os.path.join(tmp, f"large_{i}.jpg")) for i, path in enumerate(sources)]
        cases = {"small": ("1 small photo (378 px)", sources[:1]), "1": (f"1 photo {args.side}x{args.side}", large[:1]), "2": (f"2 photos {args.side}x{args.side}", large)}
        print(f"fer_keras.predict peak RSS (MB) and wall time (s); {args.repeats} run(s) per cell, trees alternating; {os.cpu_count()} CPUs\n")
        print("| photos | " + " | ".join(f"{name}: peak MB | {name}: s" for name in trees) + " | faces found (this tree) |")
        print("|---|" + "---:|---:|" * len(trees) + "---|")
        for case, paths in (cases[key] for key in args.cases.split(",")):
            runs = {name: [] for name in trees}
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    runs[name].append(peak_of_predict(tree, paths))
            cells = []
            for name in trees:
                peaks, seconds = [r[0] for r in runs[name]], [r[1] for r in runs[name]]
                cells += [_cell(peaks, "{:.0f}"), _cell(seconds, "{:.1f}")]
            print(f"| {case} | " + " | ".join(cells) + f" | {runs['this tree'][-1][2]} |")


def _cell(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


if __name__ == "__main__":
    main()
