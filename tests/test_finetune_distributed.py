"""Fine-tuning under MultiWorkerMirroredStrategy: two local worker processes on 127.0.0.1.

Each worker runs the same `finetune` call with its TF_CONFIG (free loopback
ports); both must finish (bounded by a timeout) with the same selected run,
2 replicas in sync, and the chief (worker 0) writes the report.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def balanced_task(folder):
    with open(os.path.join(REPO, "tflm", "data", "sst2", "train.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f][1:]
    by_label = {y: [t for lab, t in rows if lab == y and len(t) < 90][:16] for y in ("0", "1")}
    for split, (a, b) in {"train": (0, 8), "dev": (8, 12), "test": (12, 16)}.items():
        lines = ["label\ttext"] + [f"{y}\t{by_label[y][i]}" for i in range(a, b) for y in ("0", "1")]
        with open(os.path.join(folder, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def test_multi_worker_two_local_workers(tmp_path):
    task = tmp_path / "toy"
    task.mkdir()
    balanced_task(str(task))
    out = str(tmp_path / "out")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    code = textwrap.dedent(f"""
        import json
        from tflm.finetune import finetune
        r = finetune("tiny-gpt2", {str(task)!r}, lrs=[1e-3], batch_sizes=[4], epochs=1,
                     strategy="multiworker", out_dir={out!r}, seed=0, verbose=0)
        print(json.dumps({{"selected": r["selected"], "replicas": r["replicas"], "run": r["runs"][0]}}))
    """)
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=TIMEOUT_S)
            assert p.returncode == 0, stderr[-3000:]
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    except subprocess.TimeoutExpired:
        pytest.fail(f"multi-worker fine-tuning did not finish within {TIMEOUT_S} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    chief, worker = results
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["run"]["per_replica_batch_size"] == 2 and chief["run"]["steps_per_epoch"] == 4
    assert chief["selected"] == worker["selected"]
    assert os.path.isfile(os.path.join(out, "results.json"))  # the chief's report
    assert os.path.isfile(os.path.join(out, "workers", "worker_1", "grid_state.json"))  # worker 1's own state
    assert not os.path.exists(os.path.join(out, "workers", "worker_1", "results.json"))
