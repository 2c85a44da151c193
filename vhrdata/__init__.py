"""vhrdata: ingest, clean, split and compile handwritten Vietnamese text-line datasets."""

__version__ = "0.1.0"
