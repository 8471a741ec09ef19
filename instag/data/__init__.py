"""Clip preprocessing (ingest, tracking, labels, background, geometry prior) and the dataset dir format."""

from instag.data.dataset import FORMAT_VERSION, Dataset, load_dataset, validate_dataset

__all__ = ["FORMAT_VERSION", "Dataset", "load_dataset", "validate_dataset"]
