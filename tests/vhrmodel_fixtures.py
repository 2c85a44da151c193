"""Fixtures for the vhrmodel tests: a tiny synthetic line store and a tiny model trained on it.

Lines are rendered with Pillow in matplotlib's bundled DejaVu Sans (matplotlib is a dependency,
so the font is always there), written as PNG files with records.parquet, and compiled with the
project's own `build_store`. The validation split repeats the training lines under other ids,
so val CER measures how well the model fits its 16 training lines.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

# Short, distinct Vietnamese address fragments: every tone mark and đ, digits and punctuation.
TEXTS = [
    "Hà Nội", "số 12", "Huế", "Đà Nẵng", "ngõ 3", "Cần Thơ", "Vĩnh Long", "Phú Yên",
    "Bà Rịa", "Quận 7", "Sơn La", "Hải Dương", "Long An", "Bến Tre", "Lào Cai", "Cà Mau",
]
HEIGHT = 32


def blocker(*modules: str) -> str:
    """Prepended to a `python -c` program: `modules` (top-level names) cannot be imported."""
    return textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {tuple(modules)!r}
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked in the light-install test")
        sys.meta_path.insert(0, Blocker())
    """)


# Prepended to a `python -c` program: TensorFlow, Keras, tf2onnx and JAX cannot be imported (a light install).
BLOCKER = blocker("tensorflow", "keras", "tf_keras", "tf2onnx", "jax", "jaxlib")


def font(size: int = 26) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def render_line(text: str, path: Path, seed: int = 0, size: int = 26) -> Path:
    """A grey-on-white PNG of `text` with a little per-seed jitter, like a scanned line."""
    rng = np.random.default_rng(seed)
    f = font(size)
    left, top, right, bottom = f.getbbox(text)
    w, h = right - left + 16, 44
    img = Image.new("L", (w, h), int(rng.integers(235, 250)))
    ImageDraw.Draw(img).text((8 - left, (h - (bottom - top)) // 2 - top + int(rng.integers(-2, 3))), text,
                              fill=int(rng.integers(10, 50)), font=f)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_records_dir(root: Path, texts=TEXTS, val_copies: bool = True, test_copies: bool = True,
                      held_out: tuple[str, ...] = ()) -> Path:
    """Render `texts` and write root/records/records.parquet with train (+ val, test copies) splits.

    `held_out` texts go only into val and test.
    """
    from vhrdata.records import write_records

    rows = []
    for k, text in enumerate(held_out):
        path = render_line(text, root / "images" / f"held{k:03d}.png", seed=100 + k)
        data = path.read_bytes()
        base = {"source": "manifest", "writer": "held", "path": str(path.resolve()), "text": text, "raw_text": text,
                "width": Image.open(path).width, "height": Image.open(path).height,
                "sha1": hashlib.sha1(data).hexdigest(), "origin": f"held:{k}"}
        rows.append({**base, "id": f"val/held{k:03d}", "split": "val"})
        rows.append({**base, "id": f"test/held{k:03d}", "split": "test"})
    for i, text in enumerate(texts):
        path = render_line(text, root / "images" / f"line{i:03d}.png", seed=i)
        data = path.read_bytes()
        base = {"source": "manifest", "writer": f"w{i % 4}", "path": str(path.resolve()), "text": text,
                "raw_text": text, "width": Image.open(path).width, "height": Image.open(path).height,
                "sha1": hashlib.sha1(data).hexdigest(), "origin": f"test:{i}"}
        rows.append({**base, "id": f"train/{i:03d}", "split": "train"})
        if val_copies:
            rows.append({**base, "id": f"val/{i:03d}", "split": "val"})
        if test_copies:
            rows.append({**base, "id": f"test/{i:03d}", "split": "test"})
    out = root / "records"
    write_records(pd.DataFrame(rows), out)
    return out


def build_line_store(root: Path, texts=TEXTS, height: int = HEIGHT, **kwargs) -> Path:
    """A store of rendered lines under root/store (records under root/records)."""
    from vhrdata.preprocess import PreprocessSettings
    from vhrdata.store import build_store

    records = write_records_dir(root, texts, **kwargs)
    build_store(records, root / "store", PreprocessSettings(height=height, max_width=512), workers=0)
    return root / "store"


def untrained_tiny_model(store_path: Path, folder: Path) -> Path:
    """folder/model.keras: the tiny preset with the store's charset and settings, random weights
    (fast to make; every line is read wrong)."""
    from vhrdata.store import open_store
    from vhrmodel.artifact import save_model
    from vhrmodel.presets import build_model

    store = open_store(store_path)
    model = build_model("tiny", alphabet=store.alphabet, preprocessing=store.settings.to_dict())
    return save_model(model, folder / "model.keras")


@pytest.fixture(scope="session")
def line_store(tmp_path_factory) -> Path:
    """A store of the 16 TEXTS lines at height 32, in train, val and test (copies)."""
    return build_line_store(tmp_path_factory.mktemp("line_store"))


def overfit_config(**overrides):
    """Training settings that fit the 16 lines with the tiny preset (about a minute on 2 cores)."""
    from vhrmodel.train import TrainConfig

    # A lower BatchNorm momentum lets the inference statistics keep up in a 220-step run.
    settings = dict(preset="tiny", epochs=55, batch_size=4, lr=5e-3, bn_momentum=0.9, fast=True, augment=False,
                    workers=0, early_stopping=0, reduce_lr_patience=100, grid_samples=4, tensorboard=False)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def trained_run(line_store, tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, train summary) of the tiny preset overfitted on `line_store`."""
    from vhrmodel.train import train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    summary = train(line_store, run, overfit_config())
    return run, summary
