"""The README's preprocess-then-train recipe, parsed from README.md and run as written.

The commands run in ``tmp_path/work`` beside a link ``tmp_path/shared`` to the shared data,
so ``../shared/datasets/fer2013`` and ``.cache/fer2013`` resolve as they do from the
repository root. Only a small ``--limit`` (and one training epoch) is appended.
"""

from __future__ import annotations

import json
import shlex

from tests.cli_output import ROOT, run_cli
LIMIT = 48
# What each command gets appended to stay small; everything else is the README's text.
QUICK = {"pipelines.preprocess": [f"--limit={LIMIT}"], "fer_keras.train": [f"--limit={LIMIT}", "--epochs=1", "--batch_size=16"]}


def readme_commands(section: str) -> list[list[str]]:
    """The commands of the first ```bash block after the heading ``section`` of README.md."""
    text = (ROOT / "README.md").read_text()
    block = text.split(f"### {section}\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_readme_preprocess_then_train_recipe_runs_as_written(shared_dir, tmp_path):
    commands = readme_commands("Face preprocessing (MTCNN)")
    assert [command[:3] for command in commands] == [["python", "-m", "pipelines.preprocess"], ["python", "-m", "fer_keras.train"]]
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(shared_dir, target_is_directory=True)
    for command in commands:
        done = run_cli(*command[1:], *QUICK[command[2]], cwd=work)
        assert done.returncode == 0, f"{shlex.join(command)}\n{done.stderr[-3000:]}"
    for split in ("train", "val"):
        assert json.loads((work / ".cache/fer2013" / split / "manifest.json").read_text())["counts"]["examples"] == LIMIT
    run = json.loads((work / "runs/baseline-cache/run.json").read_text())
    assert run["dataset"] == "cache" and run["train_images"] == run["val_images"] == LIMIT
