"""Loading a user's own copy of a dataset: parquet, JSON Lines, JSON, CSV files or a `save_to_disk` folder."""
from __future__ import annotations

from pathlib import Path

import datasets

FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def load_table(path: str | Path, split: str | None = None) -> datasets.Dataset:
    """One split of a local dataset; a folder is read with `load_from_disk` (a DatasetDict needs `split`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset path {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FORMATS)
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            ds = datasets.load_from_disk(str(path))
        elif files:  # a folder of split files, e.g. 30k_train.parquet, 30k_test.parquet
            by_split = {p.stem: p for p in files}
            if split not in by_split:
                raise ValueError(f"split {split!r} not found in {str(path)!r}; available: {sorted(by_split)}")
            return load_table(by_split[split])
        else:
            raise ValueError(f"{str(path)!r} is neither a save_to_disk folder nor holds {sorted(FORMATS)} files")
    else:
        fmt = FORMATS.get(path.suffix)
        if fmt is None:
            raise ValueError(f"{str(path)!r}: unsupported file type {path.suffix!r}; expected one of {sorted(FORMATS)}")
        ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"split {split!r} not found in {str(path)!r}; available: {sorted(ds)}")
        ds = ds[split]
    return ds
