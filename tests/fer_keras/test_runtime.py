"""The thread plan: branchy models run ops side by side, others split each op (fer_keras.runtime)."""

import os
import platform
import subprocess
import sys

import pytest

from fer_keras.registry import get_model_entry, model_names
from fer_keras.runtime import ThreadPlan, check_bfloat16, configure, cpu_flags, cpu_model, thread_plan


def test_plan_per_kind_of_graph():
    assert thread_plan(2, parallel_branches=True) == ThreadPlan(intra_op=1, inter_op=2)
    assert thread_plan(2, parallel_branches=False) == ThreadPlan(intra_op=2, inter_op=2)
    assert thread_plan(1, parallel_branches=True) == ThreadPlan(intra_op=1, inter_op=1)
    cores = os.cpu_count()
    assert thread_plan(None, parallel_branches=False) == ThreadPlan(intra_op=cores, inter_op=cores)


def test_bad_thread_count_is_an_error():
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        thread_plan(0, parallel_branches=False)


def test_only_mrcar_declares_parallel_branches():
    assert {name for name in model_names() if get_model_entry(name).parallel_branches} == {"mrcar"}


def test_configure_sets_tensorflow_thread_pools():
    code = (
        "import tensorflow as tf, keras\n"
        "from fer_keras.runtime import configure\n"
        "plan = configure(2, True, parallel_branches=True, cpu_features=frozenset({'avx512_bf16'}))\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads(), keras.mixed_precision.dtype_policy().name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.stdout.split()[-3:] == ["1", "2", "mixed_bfloat16"]


def test_cpu_flags_and_model_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                   "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n")
    assert cpu_flags(str(x86)) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(str(arm)) == {"fp", "asimd", "sve", "bf16"}
    assert cpu_flags(str(tmp_path / "absent")) is None
    assert cpu_model(str(x86)) == "AMD EPYC"
    assert cpu_model(str(arm)) == cpu_model(str(tmp_path / "absent")) == (platform.processor() or "unknown")  # no model name line


def test_mixed_precision_is_refused_on_cpus_without_bfloat16_arithmetic():
    """On an AVX2-only CPU a mixed-bf16 MrCAR step ran ~6.6x slower than float32: an error, not a crawl."""
    for native in ({"avx2", "avx512f", "avx512_bf16"}, {"avx2", "amx_bf16"}, {"asimd", "bf16"}):
        check_bfloat16(frozenset(native))
    check_bfloat16(None)  # the system does not say: allowed
    with pytest.raises(ValueError, match=r"no bfloat16 arithmetic .*drop --mixed_precision"):
        check_bfloat16(frozenset({"avx", "avx2", "fma", "avx512f"}))
    with pytest.raises(ValueError, match="drop --mixed_precision"):
        configure(2, True, cpu_features=frozenset({"avx2"}))


def test_the_architecture_is_read_from_a_keras_file_without_tensorflow(tmp_path):
    """fga / ensemble --members choose the thread plan from the first member file, before TensorFlow starts."""
    from fer_keras import weights
    from fer_keras.saving import recorded_architecture

    assert recorded_architecture(weights.weights_path("mrcar-fer2013")) == "mrcar"
    assert recorded_architecture(weights.weights_path("vgg4-fer2013")) == "baseline"
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    assert recorded_architecture(str(tmp_path / "broken.keras")) is None  # the load fails later with its own error
    assert recorded_architecture(str(tmp_path / "absent.keras")) is None
