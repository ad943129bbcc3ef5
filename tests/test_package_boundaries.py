"""Package boundaries of ARCHITECTURE.md: no cycles, inference apart from training."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path) -> set[str]:
    """Every module a file imports, at any level (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _files(*folders):
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def test_models_layers_and_losses_never_import_pipelines():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "pipelines") for p in _files("fer_keras/models", "fer_keras/layers", "fer_keras/losses")}
    assert not {k: v for k, v in offenders.items() if v}


def test_pipelines_and_fer_spec_never_import_fer_keras():
    """fer_spec is the neutral contract; pipelines import it, not fer_keras: no package cycle."""
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] in ("fer_keras", "serving")) for p in _files("pipelines", "fer_spec")}
    assert not {k: v for k, v in offenders.items() if v}
    spec_imports = {m.split(".")[0] for p in _files("fer_spec") for m in _imports(p)}
    assert not spec_imports & {"pipelines", "fer_keras", "tensorflow", "keras"}


def test_the_inference_path_never_loads_the_training_package():
    code = (
        "import sys, fer_keras.inference, fer_keras.export, fer_keras.recognizer, fer_keras.weights.build, fer_keras.evaluate;"
        "from fer_keras.saving import load_model; load_model('fer_keras/weights/baseline-fer2013.keras');"
        "print(sorted(m for m in sys.modules if m.startswith('fer_keras.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
