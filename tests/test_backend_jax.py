"""The model code uses only keras / keras.ops, so it must also build and train under JAX."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json
import keras
import numpy as np
from vhrmodel.losses import CTCLoss
from vhrmodel.presets import build_model
from vhrmodel.decoding import ctc_greedy_decode

keras.utils.set_random_seed(0)
model = build_model("tiny", alphabet="abcde", preprocessing={"height": 32})
model.compile(optimizer="adam", loss=CTCLoss())
images = np.full((4, 32, 61, 1), 255, np.uint8)
images[:, 8:24, :50] = np.random.default_rng(0).integers(0, 256, (4, 16, 50, 1))
labels = np.array([[1, 2, 3], [4, 5, 0], [2, 0, 0], [3, 3, 1]], np.int32)
x = {"images": images, "widths": np.array([61, 50, 40, 61], np.int32)}
loss = model.train_on_batch(x, labels)
logits = model.predict(x, verbose=0)
print(json.dumps({"backend": keras.backend.backend(), "loss": float(loss), "shape": list(logits.shape),
                  "texts": len(ctc_greedy_decode(logits, model.charset))}))
"""


@pytest.mark.jax
def test_tiny_model_trains_one_step_under_jax():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install 'jax[cpu]', or the '.[jax]' extra)")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert result["shape"] == [4, 61 // 4, 6]
    assert result["loss"] > 0 and result["loss"] < float("inf")
    assert result["texts"] == 4
