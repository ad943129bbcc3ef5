"""Recipe study with equal budgets (issue 10, item 1): MrCAR training settings, one change each.

    python benchmarks/recipe_study.py --data_dir=../shared/datasets/fer2013 [--runs_dir=../runs/recipe-study] [--only=paper,margin_0.2] [--table_only]
    python benchmarks/recipe_study.py --data_dir=../shared/datasets/fer2013 --variant=full --only=margin_0.2,erasing,paper,scale_32

Every setting trains the same cheap proxy with the same seed and budget: MrCAR's global-face
branch (``variant=global_only``, Table 6's MrCAR-Mfe, ~1/3 of the full model's compute) on a
seeded ``--limit`` subset of FER2013 train for ``--epochs`` epochs, validated each epoch on
the whole FER2013 validation split (centre crop). The reference row (``paper``) is the
``mrcar/fer2013`` preset as the paper gives it: SGD lr 0.01, momentum 0.9, batch 32, ArcFace
s=16, m=0.5, no weight decay (the step decay starts at epoch 80, so the learning rate is
constant within the budget); each other row changes one thing.

``--variant=full`` trains the whole MrCAR (global face + three regions) on the same budget, to
check that the proxy ranks settings as the full model does (the table and curves then go to
``recipe-study-full``).

Runs go through the training CLI, one run directory per setting under ``--runs_dir`` (keep
it outside the repository); a finished setting (``report.json``) is skipped and an
interrupted one continues with ``--resume``, so the study survives restarts. The table
(markdown), the per-setting history CSVs and a plot of the validation curves go to
``--figures_dir``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (what changes, extra training flags, extra model options)
SETTINGS = {
    "paper": ("ArcFace s=16, m=0.5; SGD lr 0.01 constant, batch 32, no weight decay", [], []),
    "softmax_head": ("Dense softmax head + cross-entropy (Table 6, -ALoss)", [], ["head=softmax"]),
    "margin_0.2": ("ArcFace m=0.2", [], ["arcface_margin=0.2"]),
    "margin_warmup": ("m grows 0 -> 0.5 over the first 4 epochs", ["--objective_options=margin_warmup_epochs=4"], []),
    "cosine": ("1 warm-up epoch + cosine decay to 0", ["--lr_schedule=cosine", "--warmup_epochs=1"], []),
    "label_smoothing": ("label smoothing 0.1 on the ArcFace target", ["--objective_options=label_smoothing=0.1"], []),
    "weight_decay": ("weight decay 5e-3 per unit lr (Keras SGD; ~ PyTorch coupled 5e-4 with momentum 0.9)", ["--weight_decay=5e-3"], []),
    "oversample": ("class-balanced resampling each epoch", ["--oversample"], []),
    "scale_32": ("ArcFace s=32", [], ["arcface_scale=32"]),
    "batch_64": ("batch 64, lr 0.02 (linear scaling)", ["--batch_size=64", "--learning_rate=0.02"], []),
    "erasing": ("random erasing p=0.5", ["--erase_probability=0.5"], []),
    "paper_seed1": ("`paper` with seed 1 (the noise floor: same setting, another seed)", ["--seed=1"], []),
}


def run_setting(name, args):
    """Train one setting (skipped if finished, resumed if interrupted); returns its run dir."""
    _, flags, model_options = SETTINGS[name]
    run_dir = os.path.join(args.runs_dir, name)
    if os.path.exists(os.path.join(run_dir, "report.json")):
        return run_dir
    resume = os.path.isdir(os.path.join(run_dir, "checkpoints"))
    command = [
        sys.executable, "-m", "fer_keras.train", "--model=mrcar", "--preset=fer2013", "--dataset=fer2013",
        f"--data_dir={args.data_dir}", f"--epochs={args.epochs}", f"--limit={args.limit}", f"--seed={args.seed}",
        *(["--model_options=" + ",".join([*(["variant=global_only"] if args.variant == "global_only" else []), *model_options])]
          if args.variant == "global_only" or model_options else []),
        f"--output_dir={run_dir}", "--verbose=0", *flags, *([f"--threads={args.threads}"] if args.threads else []), *(["--resume"] if resume else []),
    ]
    os.makedirs(args.runs_dir, exist_ok=True)
    print(f"[{name}] {'resuming' if resume else 'starting'}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    with open(os.path.join(args.runs_dir, f"{name}.log"), "a") as log:
        subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    return run_dir


def read_history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as stream:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(stream)]


def summarize(name, rows):
    """One table row: best val accuracy (and its epoch's mean per-class), minutes,
    the mean over the last 3 epochs (less noisy than the best), and the lowest mean per-class
    accuracy over the epochs (1/7 = a collapse to one class)."""
    best = max(rows, key=lambda row: row["val_accuracy"])
    return {
        "setting": name,
        "change": SETTINGS[name][0],
        "best_val_accuracy": best["val_accuracy"],
        "best_epoch": int(best["epoch"]),
        "mean_per_class_at_best": best["val_mean_class_accuracy"],
        "last3_val_accuracy": sum(row["val_accuracy"] for row in rows[-3:]) / len(rows[-3:]),
        "min_mean_per_class": min(row["val_mean_class_accuracy"] for row in rows),
        "epochs": len(rows),
        "minutes": sum(row["seconds"] for row in rows) / 60.0,
    }


def markdown_table(summaries):
    lines = [
        "| setting | change | best val acc (epoch) | mean per-class at best | val acc, mean of last 3 epochs | lowest mean per-class | epochs | minutes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| `{s['setting']}` | {s['change']} | {s['best_val_accuracy']:.4f} ({s['best_epoch']}) | {s['mean_per_class_at_best']:.4f} | "
            f"{s['last3_val_accuracy']:.4f} | {s['min_mean_per_class']:.4f} | {s['epochs']} | {s['minutes']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="FER2013 folders (train/, val/).")
    parser.add_argument("--variant", choices=["global_only", "full"], default="global_only", help="The proxy (MrCAR's global branch) or the full MrCAR.")
    parser.add_argument("--runs_dir", default=None, help="Run directories, outside the repository (default ../runs/recipe-study[-full]).")
    parser.add_argument("--figures_dir", default=None, help="Table and curves (default benchmarks/figures/recipe-study[-full]).")
    parser.add_argument("--threads", type=int, default=None, help="Cores per run (fer_keras.train --threads).")
    parser.add_argument("--only", default="", help="Comma-separated settings (default: all, in table order).")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--limit", type=int, default=5000, help="Training images (seeded subset).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table_only", action="store_true", help="Write the table from finished runs; train nothing.")
    args = parser.parse_args(argv)
    suffix = "" if args.variant == "global_only" else "-full"
    args.runs_dir = args.runs_dir or os.path.join(REPO, "..", "runs", "recipe-study" + suffix)
    args.figures_dir = args.figures_dir or os.path.join(REPO, "benchmarks", "figures", "recipe-study" + suffix)
    names = [n for n in args.only.split(",") if n] or list(SETTINGS)
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")

    from fer_keras.plots import plot_runs

    summaries, curves = [], {}
    os.makedirs(args.figures_dir, exist_ok=True)
    for name in names:
        run_dir = os.path.join(args.runs_dir, name) if args.table_only else run_setting(name, args)
        if not os.path.exists(os.path.join(run_dir, "report.json")):
            continue
        rows = read_history(run_dir)
        summaries.append(summarize(name, rows))
        curves[name] = [row["val_accuracy"] for row in rows]
        shutil.copyfile(os.path.join(run_dir, "history.csv"), os.path.join(args.figures_dir, f"{name}.csv"))
        table = markdown_table(summaries)
        with open(os.path.join(args.figures_dir, "table.md"), "w") as stream:
            stream.write(table)
        plot_runs(curves, os.path.join(args.figures_dir, "val_accuracy.png"), title=f"MrCAR {'global-only' if args.variant == 'global_only' else 'full'}, {args.limit} FER2013 train images, {args.epochs} epochs, seed {args.seed} unless the setting says")
    print(markdown_table(summaries) if summaries else "no finished settings")


if __name__ == "__main__":
    main()
