"""Fine-tuning under MultiWorkerMirroredStrategy: two local worker processes on 127.0.0.1.

Each worker runs the same `finetune` call with its TF_CONFIG (free loopback
ports); both must finish (bounded by a timeout) with the same selected run,
2 replicas in sync, and the chief (worker 0) writes the report.
"""

import json
import os
import sys
import textwrap

import pytest

from conftest import write_sst2_subset
from tflm.distribute import run_local_workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120


@pytest.mark.slow
def test_multi_worker_two_local_workers(tmp_path):
    task = tmp_path / "toy"
    task.mkdir()
    write_sst2_subset(str(task))
    out = str(tmp_path / "out")
    code = textwrap.dedent(f"""
        import json
        from tflm.finetune import finetune
        r = finetune("tiny-gpt2", {str(task)!r}, lrs=[1e-3], batch_sizes=[4], epochs=1,
                     strategy="multiworker", out_dir={out!r}, seed=0, verbose=0)
        print(json.dumps({{"selected": r["selected"], "replicas": r["replicas"], "run": r["runs"][0]}}))
    """)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    try:
        done = run_local_workers([sys.executable, "-c", code], 2, timeout=TIMEOUT_S, env=env)
    except TimeoutError:
        pytest.fail(f"multi-worker fine-tuning did not finish within {TIMEOUT_S} s")
    results = [json.loads(r.stdout.strip().splitlines()[-1]) for r in done]
    chief, worker = results
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["run"]["per_replica_batch_size"] == 2 and chief["run"]["steps_per_epoch"] == 4
    assert chief["selected"] == worker["selected"]
    assert os.path.isfile(os.path.join(out, "results.json"))  # the chief's report
    assert os.path.isfile(os.path.join(out, "workers", "worker_1", "grid_state.json"))  # worker 1's own state
    assert not os.path.exists(os.path.join(out, "workers", "worker_1", "results.json"))
