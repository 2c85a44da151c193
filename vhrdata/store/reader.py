"""Read a store: random access, sequential scans, and padded, width-bucketed batches.

Reading is built for speed: shards are opened read-only without locks, records are parsed as
numpy views straight out of the LMDB memory map, every image is copied exactly once (into its
batch), and labels of a whole batch are encoded in one vectorised lookup.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from vhrdata.batching import Batch, LabelEncoder, bucketed_plan, pad_images
from vhrdata.charset import Charset
from vhrdata.errors import StoreError
from vhrdata.preprocess import PAD_VALUE, PreprocessSettings
from vhrdata.store import disk_format
from vhrdata.store.disk_format import FLAG_NO_WRITER, HEADER, HEADER_SIZE, SHARD_META_FILE, SPLIT_ORDER

log = logging.getLogger(__name__)

class Sample(NamedTuple):
    """One stored record: the preprocessed image (uint8 H×W), its label, id and writer."""

    image: np.ndarray
    text: str
    id: str
    writer: str | None


Transform = Callable[[Batch, np.random.Generator], Batch]


def _refcount(items: list, i: int) -> int:
    return sys.getrefcount(items[i])


class BufferPool:
    """Hands out batch buffers, reusing those that nothing references any more.

    A fresh multi-megabyte array costs a page fault and a kernel page-zeroing per 4 KiB on first
    write, which made batch assembly 4-5x slower than the copies themselves. A buffer is reused
    only when its reference count shows that no batch, view or tensor still points into it (every
    numpy view keeps a reference to the array owning its memory), so consumers may keep batches
    as long as they like. Buffers start on a 64-byte boundary, which lets TensorFlow take them
    without a copy.

    Args:
        keep: how many buffers to hold on to; more batches alive at once get unpooled arrays.
    """

    ALIGNMENT = 64

    def __init__(self, keep: int = 6):
        self.keep = keep
        # The arrays that own the memory: every view handed out references one of them.
        self._owners: list[np.ndarray] = []
        # What the count reads for an array only the list holds, measured the same way as below:
        # interpreters differ in the temporary references they count.
        self._free_refs = _refcount([np.empty(1, dtype=np.uint8)], 0)

    def take(self, shape: tuple[int, ...], capacity: int = 0) -> np.ndarray:
        """An uninitialised uint8 array of `shape`; a new buffer gets at least `capacity` bytes."""
        nbytes = int(np.prod(shape))
        free = None
        for i in range(len(self._owners)):
            # (Not `for owner in ...`: the loop variable, or enumerate's cached tuple, would count.)
            if _refcount(self._owners, i) <= self._free_refs:
                if self._owners[i].nbytes - self.ALIGNMENT >= nbytes:
                    return self._view(self._owners[i], shape, nbytes)
                free = i
        if free is not None:
            self._owners.pop(free)  # too small: replace it with a larger one
        owner = np.empty(max(nbytes, capacity) + self.ALIGNMENT, dtype=np.uint8)
        if len(self._owners) < self.keep:
            self._owners.append(owner)
        return self._view(owner, shape, nbytes)

    def _view(self, owner: np.ndarray, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        start = (-owner.ctypes.data) % self.ALIGNMENT
        view = owner[start : start + nbytes].reshape(shape)
        return view


class Store:
    """An opened store. Use `open_store(path)`.

    Attributes:
        path: the store folder.
        index: the parsed index.json.
        settings: the PreprocessSettings the images were made with.
        alphabet: sorted characters of every stored label (all splits).
        splits: names of the splits present, in train/val/test order.
    """

    def __init__(self, path: Path, index: dict[str, Any], settings: PreprocessSettings):
        self.path = path
        self.index = index
        self.settings = settings
        self.alphabet: str = index["alphabet"]
        self.splits: tuple[str, ...] = tuple(s for s in SPLIT_ORDER if s in index["splits"])
        self._datasets: dict[str, SplitDataset] = {}

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={self.index['splits'][s]['count']}" for s in self.splits)
        return f"Store({str(self.path)!r}, {counts})"

    def charset(self) -> Charset:
        """A Charset of the store's full alphabet (every split)."""
        return Charset(self.alphabet)

    def split_alphabet(self, name: str) -> str:
        """Sorted characters of one split's labels (the model's charset comes from "train")."""
        if name not in self.index["splits"]:
            raise StoreError(f"{self.path} has no {name!r} split; it has {', '.join(self.splits) or 'none'}")
        return self.index["splits"][name]["alphabet"]

    def split(self, name: str) -> "SplitDataset":
        """The records of one split."""
        if name not in self.index["splits"]:
            raise StoreError(f"{self.path} has no {name!r} split; it has {', '.join(self.splits) or 'none'}")
        if name not in self._datasets:
            self._datasets[name] = SplitDataset(self, name)
        return self._datasets[name]


def open_store(path: str | Path, *, settings: PreprocessSettings | None = None) -> Store:
    """Open a store after checking that it is whole and what it claims to be.

    Checks the format and schema version, that the settings match their hash (and `settings`, when
    given), and that every shard is present with the count and content hash the index records.
    Record checksums are only read by `verify_store`, which reads everything.

    Args:
        path: the store folder.
        settings: if given, refuse a store made with other preprocessing settings.

    Raises:
        StoreError: the store is missing, foreign, stale, half-built, or of other settings.

    Example:
        >>> store = open_store("work/store")  # doctest: +SKIP
        >>> batch = next(store.split("train").batches(batch_size=32))  # doctest: +SKIP
    """
    path = Path(path)
    index = disk_format.read_index(path)
    try:
        stored = PreprocessSettings.from_dict(index["settings"])
    except (KeyError, TypeError, ValueError) as ex:
        raise StoreError(f"{path}/index.json has unreadable preprocessing settings: {ex}") from None
    if stored.hash() != index.get("settings_hash"):
        raise StoreError(f"{path}/index.json: the settings do not match their hash; the index was edited or is corrupt")
    if settings is not None and settings != stored:
        build = index.get("build", {})
        records = build.get("records") or "RECORDS"
        downsample = build.get("downsample")
        flags = settings.cli_flags() + (f" --downsample {downsample}" if downsample else "")
        raise StoreError(
            f"{path} was preprocessed with other settings ({'; '.join(stored.diff(settings))}); rebuild a "
            f"matching store with `vhrdata build-lmdb {records} --out {path} {flags} --overwrite` "
            "(or --out a new folder)"
        )
    identity = index.get("build", {}).get("identity")
    for split, info in index["splits"].items():
        total = 0
        for entry in info["shards"]:
            shard_dir = path / entry["path"]
            meta_path = shard_dir / SHARD_META_FILE
            if not meta_path.exists():
                raise StoreError(f"{path}: shard {entry['path']} is missing; rebuild with `vhrdata build-lmdb`")
            meta = disk_format.read_json(meta_path)
            if meta.get("sha256") != entry["sha256"] or meta.get("count") != entry["count"] or meta.get("identity") != identity:
                raise StoreError(
                    f"{path}: shard {entry['path']} does not match index.json (stale or replaced shard); "
                    "rebuild with `vhrdata build-lmdb --overwrite`"
                )
            if entry["first"] != total:
                raise StoreError(f"{path}/index.json: shard {entry['path']} starts at {entry['first']}, expected {total}")
            total += entry["count"]
        if total != info["count"]:
            raise StoreError(f"{path}/index.json: split {split} counts {info['count']} records, its shards {total}")
    log.debug("opened store %s (%s)", path, ", ".join(f"{k}={v['count']}" for k, v in index["splits"].items()))
    return Store(path, index, stored)


class SplitDataset:
    """The records of one split: `len(ds)`, `ds[i]`, `iter(ds)`, `ds.batches(...)` and adapters.

    Safe to pickle (for worker processes): each process reopens the shards itself.
    """

    def __init__(self, store: Store, name: str):
        self.store = store
        self.name = name
        self.height = store.settings.height
        info = store.index["splits"][name]
        self._shard_dirs = [store.path / e["path"] for e in info["shards"]]
        counts = [e["count"] for e in info["shards"]]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        parts = []
        for d, n in zip(self._shard_dirs, counts):
            parts.append(disk_format.load_widths(d, n))
        #: int32 width of every record, in index order.
        self.widths = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        self._max_width = int(self.widths.max()) if len(self.widths) else 0
        self._local: threading.local | None = None
        self._local_pid = -1
        self._encoders: dict[str, LabelEncoder] = {}
        self._check_entries()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_local"] = None
        state["_local_pid"] = -1
        state["_encoders"] = {}
        return state

    def __repr__(self) -> str:
        return f"SplitDataset({str(self.store.path)!r}, {self.name!r}, {len(self)} records)"

    def _check_entries(self) -> None:
        for d, (a, b) in zip(self._shard_dirs, zip(self._offsets[:-1], self._offsets[1:])):
            entries = disk_format.open_env(d).stat()["entries"]
            if entries != b - a:
                raise StoreError(f"shard {d} holds {entries} records, index.json says {b - a}; run `vhrdata verify`")

    def _get_txns(self) -> list:
        # One set of read transactions per process and thread (an LMDB transaction must not be
        # used by two threads at once, and never across fork). They live as long as the dataset:
        # shards never change once written, and a long-lived transaction keeps buffers valid.
        if self._local is None or self._local_pid != os.getpid():
            self._local = threading.local()
            self._local_pid = os.getpid()
        txns = getattr(self._local, "txns", None)
        if txns is None:
            txns = self._local.txns = [disk_format.open_env(d).begin(buffers=True) for d in self._shard_dirs]
            self._local.pool = BufferPool()
        return txns

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for split {self.name!r} of {n} records")
        s = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return s, i - int(self._offsets[s])

    def __getitem__(self, i: int) -> Sample:
        s, local = self._locate(int(i))
        value = self._get_txns()[s].get(disk_format.record_key(local))
        if value is None:
            raise StoreError(f"shard {self._shard_dirs[s]} has no key {local:09d}; run `vhrdata verify {self.store.path}`")
        return self._checked_sample(value, s, local)

    def _damaged(self, s: int, key: int, why: str) -> StoreError:
        return StoreError(
            f"shard {self._shard_dirs[s]} key {key:09d}: the record is damaged ({why}); run "
            f"`vhrdata verify {self.store.path}` to list every fault, then {disk_format.rebuild_hint(self._shard_dirs[s])}"
        )

    def _checked_sample(self, value, s: int, key: int) -> Sample:
        try:
            disk_format.check_record(value)
            return _sample(value)
        except (ValueError, UnicodeDecodeError) as ex:
            raise self._damaged(s, key, str(ex)) from None

    def __iter__(self) -> Iterator[Sample]:
        txns = self._get_txns()
        for s, txn in enumerate(txns):
            for n, (_, value) in enumerate(txn.cursor()):
                yield self._checked_sample(value, s, n)

    def charset(self) -> Charset:
        return self.store.charset()

    def _encoder(self, charset: Charset | None) -> LabelEncoder:
        charset = charset or self.store.charset()
        enc = self._encoders.get(charset.chars)
        if enc is None:
            enc = self._encoders[charset.chars] = LabelEncoder(charset)
        return enc

    # ------------------------------------------------------------------ batching

    def batch_plan(
        self,
        batch_size: int = 32,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        bucket_window: int | None = None,
        shard_index: int = 0,
        num_shards: int = 1,
        drop_remainder: bool = False,
    ) -> list[np.ndarray]:
        """The record indices of every batch of one epoch, in the order `batches` yields them.

        The plan depends only on its arguments, so every process and host computes the same one.

        Args:
            batch_size: records per batch.
            shuffle: shuffle with a generator seeded by (seed, epoch).
            seed, epoch: the shuffle seed; a new epoch gives a new order.
            bucket_window: sort by width inside windows of this many records (rounded up to whole
                batches); None = 32 batches; 0 = no bucketing.
            shard_index, num_shards: take every num_shards-th record starting at shard_index.
                When shuffling, every shard gets the same number of records (up to num_shards-1
                records of the epoch's permutation are left out) so synchronous hosts stay in step.
            drop_remainder: drop a last, smaller batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
        if num_shards < 1 or not 0 <= shard_index < num_shards:
            raise ValueError(
                f"shard_index must be in [0, num_shards). Received: shard_index={shard_index}, num_shards={num_shards}"
            )
        n = len(self)
        rng = np.random.default_rng([seed, epoch]) if shuffle else None
        if rng is not None:
            order = rng.permutation(n)[shard_index::num_shards][: n // num_shards]
        else:
            order = np.arange(n, dtype=np.int64)[shard_index::num_shards]
        return bucketed_plan(self.widths, batch_size, rng, bucket_window, order=order, drop_remainder=drop_remainder)

    def num_batches(self, batch_size: int = 32, **plan_kwargs) -> int:
        """Number of batches `batches` yields with these arguments (the same every epoch)."""
        return len(self.batch_plan(batch_size, **plan_kwargs))

    def load_batch(self, indices, charset: Charset | None = None) -> Batch:
        """Read the records at `indices` into one padded Batch."""
        return self._load(np.asarray(indices, dtype=np.int64), self._encoder(charset))

    def _load(self, idx: np.ndarray, encoder: LabelEncoder) -> Batch:
        txns = self._get_txns()
        n = len(self)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"batch indices out of range for split {self.name!r} of {n} records")
        shard = np.searchsorted(self._offsets, idx, side="right") - 1
        local = (idx - self._offsets[shard]).tolist()
        b, h = len(idx), self.height
        widths = self.widths[idx]
        w_max = int(widths.max()) if b else 0
        # Sized for the widest record, a pooled buffer fits every later batch of this size.
        images = self._local.pool.take((b, h, w_max), capacity=b * h * self._max_width)
        views: list[np.ndarray] = []
        texts: list[str] = []
        ids: list[str] = []
        unpack = HEADER.unpack_from
        frombuffer = np.frombuffer
        crc32 = zlib.crc32
        gets = [t.get for t in txns]
        for s, k in zip(shard.tolist(), local):
            value = gets[s](b"%09d" % k)
            if value is None:
                raise StoreError(f"shard {self._shard_dirs[s]} has no key {k:09d}; run `vhrdata verify {self.store.path}`")
            n = len(value)
            if n < HEADER_SIZE:
                raise self._damaged(s, k, f"{n} bytes, shorter than the record header")
            crc, _, _, rh, rw, tl, il, wl = unpack(value)
            end = HEADER_SIZE + rh * rw
            # Length first (so the CRC never reads past the record), then the CRC over all of it.
            if n != end + tl + il + wl or crc32(value[4:]) != crc or rh != h:
                raise self._damaged(s, k, "CRC32 mismatch" if n == end + tl + il + wl else "length mismatch")
            views.append(frombuffer(value, np.uint8, rh * rw, HEADER_SIZE).reshape(rh, rw))
            try:
                texts.append(str(value[end : end + tl], "utf-8"))
                ids.append(str(value[end + tl : end + tl + il], "utf-8"))
            except UnicodeDecodeError as ex:
                raise self._damaged(s, k, str(ex)) from None
        if b:
            pad_images(views, out=images)
        labels, lengths = encoder(texts)
        return Batch(images, widths.astype(np.int32, copy=False), labels, lengths, texts, ids, idx)

    def batches(
        self,
        batch_size: int = 32,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        bucket_window: int | None = None,
        shard_index: int = 0,
        num_shards: int = 1,
        charset: Charset | None = None,
        transform: Transform | None = None,
        workers: int = 0,
        drop_remainder: bool = False,
    ) -> Iterator[Batch]:
        """Yield padded batches of one epoch (see `batch_plan` for the order).

        Args:
            charset: encodes the labels; defaults to `store.charset()` (every stored character).
            transform: `transform(batch, rng) -> batch`, e.g. augmentation. `rng` is a numpy
                Generator seeded by (seed, epoch, shard_index, batch number), so results do not
                depend on `workers`. Must be picklable (a module-level function) when workers > 0.
            workers: processes that read, pad and transform batches; 0 = this process.
            Keras and tf.data adapters over these batches live in `vhrmodel.inputs`.
            Other arguments: see `batch_plan`.

        Example:
            >>> for b in store.split("train").batches(32, seed=1, epoch=3):  # doctest: +SKIP
            ...     model.train_on_batch(b.images[..., None], b.labels)
        """
        plan = self.batch_plan(
            batch_size, shuffle=shuffle, seed=seed, epoch=epoch, bucket_window=bucket_window,
            shard_index=shard_index, num_shards=num_shards, drop_remainder=drop_remainder,
        )
        seeds = [(seed, epoch, shard_index, k) for k in range(len(plan))]
        if workers <= 0:
            encoder = self._encoder(charset)
            for idx, s in zip(plan, seeds):
                batch = self._load(idx, encoder)
                yield transform(batch, np.random.default_rng(s)) if transform else batch
            return
        yield from _batches_in_workers(self, plan, seeds, charset, transform, workers)


def _sample(value) -> Sample:
    _, _, flags, h, w, tl, il, _ = HEADER.unpack_from(value)
    end = HEADER_SIZE + h * w
    image = np.frombuffer(value, np.uint8, h * w, HEADER_SIZE).reshape(h, w).copy()
    text = str(value[end : end + tl], "utf-8")
    rec_id = str(value[end + tl : end + tl + il], "utf-8")
    writer = None if flags & FLAG_NO_WRITER else str(value[end + tl + il :], "utf-8")
    return Sample(image, text, rec_id, writer)


# ---------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


def _init_batch_worker(ds: SplitDataset, charset_chars: str | None, transform: Transform | None) -> None:
    _WORKER["ds"] = ds
    _WORKER["encoder"] = ds._encoder(Charset(charset_chars) if charset_chars is not None else None)
    _WORKER["transform"] = transform


def _worker_batch(idx: np.ndarray, seed: tuple) -> Batch:
    batch = _WORKER["ds"]._load(idx, _WORKER["encoder"])
    transform = _WORKER["transform"]
    return transform(batch, np.random.default_rng(seed)) if transform else batch


def _batches_in_workers(ds, plan, seeds, charset, transform, workers) -> Iterator[Batch]:
    from concurrent.futures import ProcessPoolExecutor

    from vhrdata.workers import ordered_map, process_context

    chars = charset.chars if charset is not None else None
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=process_context(), initializer=_init_batch_worker,
        initargs=(ds, chars, transform),
    )
    try:
        yield from ordered_map(_worker_batch, zip(plan, seeds), pool, ahead=2 * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
