"""The one (x, y) contract: the public adapters feed model.fit with the project's loss."""

import numpy as np
import pytest

from vhrdata.store import open_store
from vhrmodel.inputs import StorePyDataset, store_tf_dataset, to_keras, train_alphabet


def test_to_keras_gives_images_widths_and_zero_padded_labels(line_store):
    batch = next(open_store(line_store).split("train").batches(4, shuffle=False))
    x, y = to_keras(batch, width_multiple=64, label_multiple=16)
    assert set(x) == {"images", "widths"}
    assert x["images"].shape[0] == 4 and x["images"].shape[2] % 64 == 0 and x["images"].shape[3] == 1
    np.testing.assert_array_equal(x["widths"], batch.widths)
    assert y.shape[1] % 16 == 0 and y.dtype == np.int32
    np.testing.assert_array_equal((y > 0).sum(axis=1), batch.label_lengths)


def test_pydataset_and_tf_dataset_yield_the_same_batches(line_store):
    pytest.importorskip("tensorflow")
    train = open_store(line_store).split("train")
    kwargs = dict(shuffle=True, seed=3, epoch=1)
    pyds = StorePyDataset(train, 4, **kwargs)
    tfds = store_tf_dataset(train, 4, **kwargs)
    for i, (tx, ty) in enumerate(tfds.as_numpy_iterator()):
        px, py = pyds[i]
        np.testing.assert_array_equal(tx["images"], px["images"])
        np.testing.assert_array_equal(tx["widths"], px["widths"])
        np.testing.assert_array_equal(ty, py)
    assert i + 1 == len(pyds)


def test_two_steps_through_the_public_adapter_with_the_project_loss_decrease_it(line_store):
    import keras

    from vhrmodel.losses import CTCLoss
    from vhrmodel.presets import build_model

    store = open_store(line_store)
    keras.utils.set_random_seed(0)
    model = build_model("tiny", alphabet=store.alphabet, preprocessing={"height": store.settings.height})
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=CTCLoss())
    data = StorePyDataset(store.split("train"), 16, shuffle=False)
    x, y = data[0]
    first = float(model.train_on_batch(x, y))
    second = float(model.train_on_batch(x, y))
    assert np.isfinite(first) and np.isfinite(second)
    assert second < first


def test_the_model_charset_comes_from_the_train_split(tmp_path):
    from vhrmodel_fixtures import TEXTS, build_line_store

    # val and test hold a line whose characters the training labels never show
    store = open_store(build_line_store(tmp_path, texts=TEXTS[:6], held_out=("XQZ",)))
    chars = train_alphabet(store, "train")
    assert set(chars) == set("".join(TEXTS[:6]))
    assert not set("XQZ") & set(chars) and set("XQZ") <= set(store.alphabet)
    assert chars == "".join(c for c in store.alphabet if c in chars)
