"""Store reader: open checks, random access, batches, bucketing, sharding, transforms, Keras and tf.data."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from vhrdata.charset import Charset
from vhrdata.errors import StoreError, UnknownCharacterError
from vhrdata.preprocess import PAD_VALUE, PreprocessSettings
from vhrdata.store import Batch, build_store, open_store
from vhrdata.store.disk_format import INDEX_FILE, SHARD_META_FILE
from vhrdata.store.toy_records import write_toy_records

SETTINGS = PreprocessSettings(height=16, max_width=400)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("reader")
    # Widths from 20 to 400 px (at height 16): bucketing has something to gain.
    write_toy_records(base / "records", n=120, heights=(16, 20), widths=(20, 400), seed=5,
                      splits=(("train", 0.75), ("val", 0.25)))
    build_store(base / "records", base / "store", SETTINGS, workers=1, shards=3)
    return base / "store"


@pytest.fixture
def train(store_path):
    return open_store(store_path).split("train")


def test_random_access_matches_iteration(train):
    samples = list(train)
    assert len(samples) == len(train) > 60
    for i in (0, 1, len(train) // 2, len(train) - 1):
        assert train[i].id == samples[i].id
        np.testing.assert_array_equal(train[i].image, samples[i].image)
    assert train[-1].id == samples[-1].id
    with pytest.raises(IndexError):
        train[len(train)]
    assert all(s.image.shape[0] == 16 for s in samples)


def test_an_epoch_of_batches_covers_every_record_once(train):
    charset = open_store(train.store.path).charset()
    ids = []
    for b in train.batches(batch_size=8, seed=3):
        assert isinstance(b, Batch) and b.images.dtype == np.uint8 and b.labels.dtype == np.int32
        assert b.images.shape[1] == 16 and b.images.shape[2] == b.widths.max()
        for j in range(len(b)):
            w = b.widths[j]
            np.testing.assert_array_equal(b.images[j, :, :w], train[int(b.indices[j])].image)
            assert (b.images[j, :, w:] == PAD_VALUE).all()
            n = b.label_lengths[j]
            assert charset.decode(b.labels[j, :n]) == b.texts[j] and (b.labels[j, n:] == 0).all()
            assert n == len(b.texts[j]) and b.labels[j, :n].min() >= 1
        ids += b.ids
    assert sorted(ids) == sorted(s.id for s in train)


def test_shuffle_is_deterministic_per_seed_and_epoch(train):
    def order(**kw):
        return np.concatenate(train.batch_plan(8, **kw)).tolist()

    assert order(seed=1, epoch=0) == order(seed=1, epoch=0)
    assert order(seed=1, epoch=0) != order(seed=1, epoch=1)
    assert order(seed=1, epoch=0) != order(seed=2, epoch=0)
    assert order(shuffle=False, bucket_window=0) == list(range(len(train)))


def test_drop_remainder_and_num_batches(train):
    n = len(train)
    assert train.num_batches(7) == -(-n // 7)
    plan = train.batch_plan(7, drop_remainder=True)
    assert len(plan) == n // 7 and all(len(b) == 7 for b in plan)


def mean_padding(ds, **kwargs) -> float:
    batches = list(ds.batches(batch_size=8, seed=0, **kwargs))
    return float(np.mean([b.padding_fraction() for b in batches]))


def test_width_bucketing_reduces_padding(train):
    plain = mean_padding(train, bucket_window=0)
    bucketed = mean_padding(train, bucket_window=64)
    # Widths spread over 20..400 px: random batches pad roughly half their pixels; sorting
    # inside 64-record windows leaves neighbours of similar width.
    assert plain > 0.3
    assert bucketed < plain / 2, f"bucketing cut padding only from {plain:.3f} to {bucketed:.3f}"


def test_shards_split_the_data_between_hosts(train):
    n = len(train)
    parts = [np.concatenate(train.batch_plan(4, seed=7, shard_index=k, num_shards=3)) for k in range(3)]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == n // 3
    flat = np.concatenate(parts)
    assert len(set(flat.tolist())) == len(flat)  # disjoint
    unshuffled = [np.concatenate(train.batch_plan(4, shuffle=False, shard_index=k, num_shards=3)) for k in range(3)]
    assert sorted(np.concatenate(unshuffled).tolist()) == list(range(n))  # evaluation sees every record
    with pytest.raises(ValueError, match="shard_index"):
        train.batch_plan(4, shard_index=3, num_shards=3)


def test_a_given_charset_encodes_the_labels(train):
    alphabet = open_store(train.store.path).alphabet
    reverse = Charset(alphabet[::-1])
    b = next(train.batches(batch_size=4, charset=reverse))
    for j in range(len(b)):
        assert reverse.decode(b.labels[j, : b.label_lengths[j]]) == b.texts[j]
    with pytest.raises(UnknownCharacterError, match="outside the charset"):
        next(train.batches(batch_size=64, charset=Charset(alphabet[1:])))


def flip_left_right(batch: Batch, rng: np.random.Generator) -> Batch:
    """A toy augmentation: mirror every image inside its real width, and say which rng draw was used."""
    images = batch.images.copy()
    for j, w in enumerate(batch.widths):
        images[j, :, :w] = images[j, :, :w][:, ::-1]
    batch.images = images
    batch.ids = [f"{i}#{rng.integers(1 << 30)}" for i in batch.ids]
    return batch


def test_transform_runs_in_worker_processes_with_the_same_result(train):
    local = list(train.batches(batch_size=16, seed=2, transform=flip_left_right))
    pooled = list(train.batches(batch_size=16, seed=2, transform=flip_left_right, workers=2))
    assert len(local) == len(pooled) == train.num_batches(16)
    for a, b in zip(local, pooled):
        np.testing.assert_array_equal(a.images, b.images)
        assert a.ids == b.ids
    first = local[0]
    j = 0
    raw = train[int(first.indices[j])].image
    np.testing.assert_array_equal(first.images[j, :, : first.widths[j]], raw[:, ::-1])


def test_datasets_pickle_for_worker_processes(train):
    copy = pickle.loads(pickle.dumps(train))
    assert copy[3].id == train[3].id and len(copy) == len(train)


def test_open_store_refuses_foreign_stale_and_edited_stores(store_path, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(store_path, bad)
    index = json.loads((bad / INDEX_FILE).read_text())

    def write(d):
        (bad / INDEX_FILE).write_text(json.dumps(d))

    write({**index, "schema_version": 99})
    with pytest.raises(StoreError, match="schema version 99"):
        open_store(bad)
    write({**index, "format": "something-else"})
    with pytest.raises(StoreError, match="not a vhr store"):
        open_store(bad)
    write({**index, "settings": {**index["settings"], "height": 17}})
    with pytest.raises(StoreError, match="do not match their hash"):
        open_store(bad)
    write(index)
    meta_path = bad / "val" / "shard-00001-of-00003.lmdb" / SHARD_META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(StoreError, match="val/shard-00001-of-00003.lmdb does not match index.json"):
        open_store(bad)
    with pytest.raises(StoreError, match="no 'test' split"):
        open_store(store_path).split("test")

def test_batches_kept_by_the_caller_are_never_overwritten(train):
    # The reader recycles batch buffers; one still referenced (whole, or as a view) must stay intact.
    kept = list(train.batches(batch_size=8, seed=1))
    views = [b.images[..., None] for b in train.batches(batch_size=8, seed=2)]
    for b in kept:
        for j in range(len(b)):
            np.testing.assert_array_equal(b.images[j, :, : b.widths[j]], train[int(b.indices[j])].image)
    for v, idx in zip(views, train.batch_plan(8, seed=2)):
        for j, i in enumerate(idx):
            img = train[int(i)].image
            np.testing.assert_array_equal(v[j, :, : img.shape[1], 0], img)


def test_buffer_pool_reuses_only_free_buffers():
    from vhrdata.store.reader import BufferPool

    pool = BufferPool(keep=2)
    a = pool.take((2, 3, 4))
    b = pool.take((2, 3, 4))
    assert not np.shares_memory(a, b) and a.ctypes.data % 64 == 0
    a_addr = a.ctypes.data
    held = b[..., None]
    del a, b
    c = pool.take((2, 3, 4))
    assert c.ctypes.data == a_addr  # the free one came back
    assert not np.shares_memory(c, held)
    d = pool.take((2, 3, 4))  # both pooled buffers are taken: a fresh, unpooled array
    assert not np.shares_memory(d, held) and not np.shares_memory(d, c)
