"""The benchmarks run end to end on tiny models (smoke runs in subprocesses, slow).

They print ratios rather than assert speed; what is tested here is that each still runs against
the current library and prints its verdict lines, so a refactor cannot silently break one.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHIPPED_DATA = os.path.join(ROOT, "tflm", "data")


def run_bench(script, *args, tmp_path):
    env = dict(os.environ, TFLM_CACHE=str(tmp_path / "cache"), PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_real_lm_bench_tiny(tmp_path):
    pytest.importorskip("transformers")
    out = run_bench("real_lm.py", "--model", "tiny", "--sst2-texts", "40", "--data", SHIPPED_DATA,
                    "--probe-tasks", "sst2", "--probe-max-test", "100", tmp_path=tmp_path)
    assert "no IMDb data" in out  # the shipped data has SST-2 only
    rows = [line.split() for line in out.splitlines() if line.startswith(("float32  sst2", "bfloat16 sst2"))]
    assert len(rows) == 2 and all(int(r[3]) == 40 for r in rows)  # one summary row per dtype, 40 texts
    assert float(rows[0][-1]) < 1e-4  # float32 f agrees with transformers
    packed_pad, unpacked_pad = (float(rows[0][i].rstrip("%")) for i in (6, 8))  # columns after "sst2 test"
    assert packed_pad < unpacked_pad  # packing computes fewer padding tokens than the padded batches
    assert "target float32 sst2 test: packed / transformers" in out and "target bfloat16 sst2 test" in out
    assert "sst2   f      n=6920" in out and "sst2   phi_p  n=6920" in out
    assert "speedup >= 5x:" in out and "accuracy within 0.3 points: yes" in out


@pytest.mark.slow
def test_gemm_bench_small(tmp_path):
    pytest.importorskip("torch")
    out = run_bench("gemm.py", "--m", "64", "--k", "32", "--n", "48", "--repeats", "2", "--threads", "1",
                    tmp_path=tmp_path)
    rows = [line.split() for line in out.splitlines() if line.startswith(("bfloat16", "float32"))]
    assert [(r[0], " ".join(r[1:4])) for r in rows] == [  # both weight layouts per dtype
        ("bfloat16", "A @ B"), ("bfloat16", "A @ B^T"), ("float32", "A @ B"), ("float32", "A @ B^T")]
    assert all(float(r[-1]) > 0 for r in rows)  # a torch / TF ratio on every row
    assert "(1 threads), torch" in out and "(1 threads); load" in out


@pytest.mark.slow
def test_probe_bench_tiny(tmp_path):
    out = run_bench("probe.py", "--model", "tiny-gpt2", "--tasks", "sst2", "--features", "f",
                    "--data", SHIPPED_DATA, "--max-train", "300", "--max-test", "100", tmp_path=tmp_path)
    assert "sst2   f      n=300" in out and "accuracy within 0.3 points: yes" in out


@pytest.mark.slow
def test_profile_bench_tiny(tmp_path):
    out = run_bench("profile_lm.py", "--model", "tiny-llama", "--batch", "4", "--length", "8",
                    "--long-length", "16", "--dtypes", "float32", "--repeats", "1", tmp_path=tmp_path)
    assert "matmul" in out


@pytest.mark.slow
def test_quad_loss_bench_quick(tmp_path):
    out = run_bench("quad_loss.py", "--quick", tmp_path=tmp_path)
    assert "Gram" in out or "gram" in out


@pytest.mark.slow
def test_packing_bench_tiny(tmp_path):
    out = run_bench("packing.py", "--model", "tiny-llama", "--data", SHIPPED_DATA, "--sst2-texts", "40",
                    "--pack-lengths", "64,256", "--dtypes", "float32", tmp_path=tmp_path)
    rows = {line.split()[0] + " " + line.split()[1]: line for line in out.splitlines() if "x" in line and "tok/s" in line}
    assert "unpacked " in " ".join(rows) and "packed 64" in rows and "packed 256" in rows
    assert all(float(line.split()[-1]) < 1e-5 for line in rows.values())  # packed f == unpacked f (float32)
    assert "first-call cost" in out


@pytest.mark.slow
def test_first_call_bench_tiny(tmp_path):
    out = run_bench("first_call.py", "--model", "tiny-llama", tmp_path=tmp_path)
    for option in ("baseline", "unpacked", "grappler-off", "second-extractor"):
        assert any(line.split()[0] == option and "first-call cost" in line for line in out.splitlines()), out
    assert "tokenize" in out and "for 1,821 texts" in out


@pytest.mark.slow
def test_finetune_bench_tiny(tmp_path):
    pytest.importorskip("transformers")
    out = run_bench("finetune.py", "--model", "tiny", "--steps", "2", "--batch-sizes", "8", "--dtypes", "float32",
                    "--diagnostics", "--data", SHIPPED_DATA, tmp_path=tmp_path)
    rows = [line.split() for line in out.splitlines() if line.startswith("float32  8 ")]
    engines = [" ".join(r[2:-4]) for r in rows]
    assert engines == ["tflm", "tflm, embedding frozen", "transformers"], out
    assert float(rows[-1][-1]) == 1.0 and all(float(r[-1]) > 0 for r in rows)  # ratios against transformers
    assert "fixed cost of a run outside the steady-state steps (float32, batch 8" in out
    assert "total (one dev evaluation)" in out


@pytest.mark.slow
def test_first_step_bench_tiny(tmp_path):
    out = run_bench("first_step.py", "--model", "tiny-llama", "--dtype", "float32", "--options",
                    "baseline,grappler-off,no-constant_folding", tmp_path=tmp_path)
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith(("baseline", "grappler", "no-"))}
    assert set(rows) == {"baseline", "grappler-off", "no-constant_folding"} and all(len(r) == 6 for r in rows.values())


@pytest.mark.slow
def test_kill_resume_bench_tiny(tmp_path):
    out = run_bench("kill_resume.py", "--data", SHIPPED_DATA, "--max-train", "2000", "--max-eval", "64",
                    "--lrs", "1e-3", "--batch-sizes", "8", "--kill-after", "1", "--out", str(tmp_path / "kr"),
                    tmp_path=tmp_path)
    assert "run_resume at epoch [2]" in out  # killed mid-epoch 2, resumed from epoch 1's backup
    assert "identical reports (runs, histories, selection, test accuracy): yes" in out


@pytest.mark.slow
def test_profile_train_bench_tiny(tmp_path):
    out = run_bench("profile_train.py", "--model", "tiny-llama", "--shapes", "4x8", "--dtypes", "float32",
                    "--repeats", "1", tmp_path=tmp_path)
    names = ("train step", "forward", "forward + backward", "Adam alone", "matmul floor", "rest (metrics, casts)")
    assert all(f"    {n} " in out for n in names), out
