"""Loading a user's own copy of a dataset: files, a `save_to_disk` folder, or a hub id already in the HF cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # datasets is imported on use, so the CLI starts fast
    import datasets

READERS = {".parquet": "from_parquet", ".jsonl": "from_json", ".json": "from_json", ".csv": "from_csv"}


def load_table(source: str | Path, split: str | None = None) -> datasets.Dataset:
    """One split of a dataset from a local path or a cached hub id.

    A file holds one split ('train'); a folder is a `save_to_disk` dataset (a DatasetDict picks `split`, by default
    'train' or its only split) or holds files named by split (`30k_train.parquet`, `test.jsonl`, ...). Anything
    else is treated as a hub id, which must already be in the HF datasets cache: nothing is downloaded here.
    """
    path = Path(source).expanduser()
    if path.exists():
        return _local(path, split)
    if str(source).startswith((".", "/", "~")) or Path(str(source)).suffix in READERS:
        raise FileNotFoundError(f"dataset not found: {path}")
    return _cached_hub(str(source), split)


def _local(path: Path, split: str | None) -> datasets.Dataset:
    import datasets

    if path.is_file():
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise ValueError(
                f"{path}: unsupported format {path.suffix!r}; use one of {', '.join(READERS)} "
                "or a save_to_disk directory"
            )
        _single_split(split, path)
        return getattr(datasets.Dataset, reader)(str(path))
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        return _pick_split(datasets.load_from_disk(str(path)), split, path)
    by_split = {p.stem: p for p in sorted(path.iterdir()) if p.suffix.lower() in READERS}
    if not by_split:
        raise ValueError(f"{path} is neither a save_to_disk folder nor holds {', '.join(READERS)} files named by split")
    name = split or ("train" if "train" in by_split or len(by_split) != 1 else next(iter(by_split)))
    if name not in by_split:
        raise ValueError(f"split {name!r} not in {path}; available splits: {', '.join(by_split)}")
    return _local(by_split[name], None)


def _pick_split(data: datasets.Dataset | datasets.DatasetDict, split: str | None, path: Path) -> datasets.Dataset:
    """The requested split of a DatasetDict ('train', or its only split, by default)."""
    import datasets

    if isinstance(data, datasets.Dataset):
        _single_split(split, path)
        return data
    name = split or ("train" if "train" in data or len(data) != 1 else next(iter(data)))
    if name not in data:
        raise ValueError(f"split {name!r} not in {path}; available splits: {', '.join(data)}")
    return data[name]


def _single_split(split: str | None, path: Path) -> None:
    """A single file or Dataset has one split, 'train'; asking for another is a mistake worth reporting."""
    if split not in (None, "train"):
        raise ValueError(
            f"split {split!r} not in {path}: it holds a single dataset (split 'train'); "
            f"use a folder with one file per split (e.g. {split}.parquet) or a save_to_disk DatasetDict"
        )


def _cached_hub(repo_id: str, split: str | None) -> datasets.Dataset:
    import datasets

    try:
        return datasets.load_dataset(repo_id, split=split or "train")
    except Exception as e:  # datasets raises several types for "not cached while offline"
        raise FileNotFoundError(
            f"dataset {repo_id!r} (split {split!r}) is not a local path and not in the HF datasets cache "
            f"({type(e).__name__}). "
            "Provide a local copy (parquet / jsonl files named by split, or a save_to_disk folder) and pass its path, "
            f"or run `hf download {repo_id} --repo-type dataset` on a machine with internet and copy "
            "~/.cache/huggingface."
        ) from None
