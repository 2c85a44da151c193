"""Sharded LMDB store of preprocessed line images: build, verify, read, batch.

Example:
    >>> from vhrdata.store import build_store, open_store, verify_store  # doctest: +SKIP
    >>> build_store("work/records", "work/store")  # doctest: +SKIP
    >>> assert verify_store("work/store").ok  # doctest: +SKIP
    >>> for batch in open_store("work/store").split("train").batches(32):  # doctest: +SKIP
    ...     ...
"""

from vhrdata.ctc import ctc_frames_needed
from vhrdata.store.disk_format import SCHEMA_VERSION, decode_record, encode_record, is_store
from vhrdata.store.reader import Batch, LabelEncoder, Sample, SplitDataset, Store, open_store
from vhrdata.store.verify import VerifyReport, verify_store
from vhrdata.store.writer import BuildResult, ShardWriter, build_store

__all__ = [
    "SCHEMA_VERSION",
    "Batch",
    "BuildResult",
    "LabelEncoder",
    "Sample",
    "ShardWriter",
    "SplitDataset",
    "Store",
    "VerifyReport",
    "build_store",
    "ctc_frames_needed",
    "decode_record",
    "encode_record",
    "is_store",
    "open_store",
    "verify_store",
]
