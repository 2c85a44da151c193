"""Multi-worker training on this machine: two processes, MultiWorkerMirroredStrategy from TF_CONFIG.

The real scale-out mechanism, on 127.0.0.1: each worker reads its own half of the training
split, gradients are all-reduced, the chief writes the run folder, and both replicas end with
the same weights.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from vhrmodel_fixtures import TEXTS, build_line_store

WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
from vhrmodel_fixtures import overfit_config
from vhrmodel.train import train
summary = train({store!r}, {out!r}, overfit_config(epochs=1, grid_samples=0, workers=0, batch_size=2))
print("SUMMARY " + json.dumps({{k: summary[k] for k in ("chief", "worker_index", "workers_in_cluster", "train_lines",
                                                      "train_samples", "replicas", "run_dir")}}))
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_epoch_each_on_its_own_shard(tmp_path):
    pytest.importorskip("tensorflow")
    store = build_line_store(tmp_path, texts=TEXTS)
    out = tmp_path / "run"
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    tests = str(Path(__file__).resolve().parent)
    script = WORKER.format(tests=tests, store=str(store), out=str(out))
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=tests))
    results = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=900)
            assert p.returncode == 0, stderr[-3000:]
            line = [x for x in stdout.splitlines() if x.startswith("SUMMARY ")][-1]
            results.append(json.loads(line[len("SUMMARY "):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    chief, other = results
    assert chief["chief"] and not other["chief"]
    assert [r["worker_index"] for r in results] == [0, 1]
    assert all(r["workers_in_cluster"] == 2 and r["replicas"] == 2 for r in results)
    # each worker read its own half of the 16 training lines
    assert chief["train_lines"] == other["train_lines"] == len(TEXTS) // 2
    assert chief["train_samples"] + other["train_samples"] == len(TEXTS)
    assert (out / "model.keras").is_file() and (out / "last.keras").is_file()
    from vhrmodel.artifact import load_model

    a = load_model(out / "last.keras").get_weights()
    b = load_model(Path(other["run_dir"]) / "last.keras").get_weights()
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
