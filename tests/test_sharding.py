"""Extraction split across replicas (tf.distribute) and across processes (shards)."""

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import tflm
from tflm.cli import main
from tflm.features import SentenceFeatures, extract
from tflm.features.sharding import check_shards, merge_caches

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["a gorgeous , witty , seductive movie .", "ugh", "Not bad .", "The Rock is destined to be great .",
         "it drags on for far too long .", "lovely performances", "a mess"]
PROMPT = " All in all, the movie was"


def test_shards_merge_into_the_arrays_of_one_run(tmp_path, monkeypatch):
    monkeypatch.setattr(extract, "CHUNK_SIZE", 2)  # 7 texts -> 4 chunks
    lm = tflm.load_lm("tiny-gpt2")
    whole = SentenceFeatures(lm, progress=False).f_pair(TEXTS, PROMPT)
    roots = [str(tmp_path / f"shard{i}") for i in range(3)]
    for i, root in enumerate(roots):
        sf = SentenceFeatures(lm, cache_dir=root, progress=False, num_shards=3, shard_index=i)
        part = sf.f_pair(TEXTS, PROMPT)
        mine = [r for r in range(len(TEXTS)) if (r // 2) % 3 == i]
        np.testing.assert_allclose(part[1][mine], whole[1][mine], atol=1e-6)
        assert np.isnan(np.delete(part[0], mine, axis=0)).all()
        assert sf.last_stats["missing_rows"] == len(TEXTS) - len(mine)
    merged = str(tmp_path / "merged")
    assert merge_caches(roots, merged) == 8  # 4 chunks x (f, f*)
    sf = SentenceFeatures(lm, cache_dir=merged, progress=False)
    np.testing.assert_allclose(sf.f(TEXTS), whole[0], atol=1e-6)
    np.testing.assert_allclose(sf.f(TEXTS, prompt=PROMPT), whole[1], atol=1e-6)
    assert sf.last_stats["computed_tokens"] == 0 and sf.last_stats["missing_rows"] == 0


@pytest.mark.parametrize("k, i, message", [(0, 0, "num_shards must be an integer >= 1"),
                                           (2, 2, r"shard_index must be an integer in \[0, 1\]"),
                                           (2, -1, r"shard_index must be"), (1.5, 0, "num_shards")])
def test_out_of_range_shards_raise(k, i, message):
    with pytest.raises(ValueError, match=message):
        check_shards(k, i)


def test_sharding_needs_a_cache_and_cli_reports_bad_shards(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs a cache directory"):
        SentenceFeatures(tflm.load_lm("tiny-gpt2"), num_shards=2, shard_index=0)
    rc = main(["features", "--model", "tiny-gpt2", "--task", "sst2", "--out", str(tmp_path / "x.npz"),
               "--num-shards", "2", "--shard-index", "5"])
    assert rc == 2 and "shard_index must be an integer in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_mirrored_two_logical_cpus_equals_single_device():
    code = textwrap.dedent(f"""
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import tflm
        from tflm.distribute import get_strategy
        from tflm.features import SentenceFeatures
        strategy = get_strategy("mirrored")
        lm = tflm.load_lm("tiny-llama")
        texts = {TEXTS!r}
        one = SentenceFeatures(lm, progress=False, max_tokens=24).f_pair(texts, {PROMPT!r})
        two = SentenceFeatures(lm, progress=False, max_tokens=24, strategy=strategy).f_pair(texts, {PROMPT!r})
        print(json.dumps({{"replicas": strategy.num_replicas_in_sync,
                          "diff": max(float(np.abs(a - b).max()) for a, b in zip(one, two))}}))
    """)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["replicas"] == 2 and res["diff"] <= 1e-5, res
