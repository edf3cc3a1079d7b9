"""`huggingface://datasets/<owner>/<name>?split=...&name=...&revision=...` sources (Llama Stack's form), read with
huggingface_hub: no `datasets` package, the split's data files (Parquet, JSONL / JSON, CSV) read like any other.

Which files hold a split: the dataset card's `configs` (README.md front matter) when it lists `data_files`, else the
hub's naming conventions (a `<split>/` directory, or the split as a word of the file name:
`train-00000-of-00001.parquet`, `qa_test.csv`; a repo whose files name no split is all `train`). `name` picks a
config: its card entry, or its directory. The files come from the hub when it answers, else from the local
Hugging Face cache; with `offline`, from the cache only.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import yaml

from serve.config import HuggingFaceSourceConfig
from serve.errors import InvalidRequestError

if TYPE_CHECKING:  # the ingress imports this module for `available` only
    import pyarrow as pa

PARAMS = ("split", "name", "revision")
DATA_SUFFIXES = (".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".csv", ".tsv")
OTHER_SPLITS = ("train", "test", "validation", "valid", "dev", "eval")
README = "README.md"


def _bad(msg: str) -> InvalidRequestError:
    return InvalidRequestError(msg, param="source.uri", code="invalid_source")


def available() -> bool:
    """Whether this install can read Hugging Face sources (huggingface_hub comes with transformers)."""
    return importlib.util.find_spec("huggingface_hub") is not None


@dataclass(frozen=True)
class HFDatasetRef:
    repo: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None

    @property
    def uri(self) -> str:
        return f"huggingface://datasets/{self.repo}"


def parse_hf_uri(uri: str) -> HFDatasetRef:
    url = urlparse(uri)
    repo = url.path.strip("/")
    if url.netloc != "datasets" or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo):
        raise _bad(f"a Hugging Face source is huggingface://datasets/<owner>/<name>?split=..., got {uri!r}")
    params = parse_qs(url.query, keep_blank_values=True)
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise _bad(f"huggingface:// sources take {', '.join(PARAMS)}; not {', '.join(unknown)}")
    value = {k: v[-1] for k, v in params.items() if v[-1]}
    return HFDatasetRef(repo, value.get("split", "train"), value.get("name"), value.get("revision"))


# ---- which files hold the split ---------------------------------------------------------------------------------

def _card(readme: str | None) -> dict[str, Any]:
    if not readme or not readme.startswith("---"):
        return {}
    front = readme[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def card_data_files(readme: str | None, config: str | None) -> dict[str, list[str]] | None:
    """{split: glob patterns} of `config` (default: the card's default config) from the dataset card; None when
    the card lists no data_files for it."""
    configs = [c for c in _card(readme).get("configs") or [] if isinstance(c, dict)]
    if not configs:
        return None
    if config is not None:
        chosen = next((c for c in configs if c.get("config_name") == config), None)
        if chosen is None:
            names = ", ".join(str(c.get("config_name")) for c in configs)
            raise _bad(f"the dataset has no config {config!r} (its configs: {names})")
    else:
        chosen = next((c for c in configs if c.get("default")), None) or next(
            (c for c in configs if c.get("config_name") == "default"), configs[0])
    files = chosen.get("data_files")
    if isinstance(files, str):
        return {"train": [files]}
    if isinstance(files, list) and files and all(isinstance(f, str) for f in files):
        return {"train": files}
    if isinstance(files, list):
        return {str(f["split"]): [f["path"]] if isinstance(f["path"], str) else list(f["path"])
                for f in files if isinstance(f, dict) and "split" in f and "path" in f}
    return None


def _names_split(path: str, split: str) -> bool:
    parts = PurePosixPath(path).parts
    word = rf"(^|[-._ 0-9]){re.escape(split)}([-._ 0-9]|$)"
    return split in parts[:-1] or re.search(word, parts[-1]) is not None


def split_files(files: list[str], ref: HFDatasetRef, readme: str | None) -> list[str]:
    """The repo files (paths relative to its root) that hold `ref`'s split, in name order."""
    data = sorted(f for f in files if PurePosixPath(f).suffix.lower() in DATA_SUFFIXES)
    patterns = card_data_files(readme, ref.config)
    if patterns is not None:
        if ref.split not in patterns:
            raise _bad(f"{ref.uri} has no split {ref.split!r} (its splits: {', '.join(patterns)})")
        return [f for f in data if any(fnmatch.fnmatch(f, p) for p in patterns[ref.split])]
    if ref.config is not None:
        data = [f for f in data if PurePosixPath(f).parts[0] == ref.config]
        if not data:
            raise _bad(f"{ref.uri} has no config {ref.config!r}")
    chosen = [f for f in data if _names_split(f, ref.split)]
    if not chosen and ref.split == "train" and not any(_names_split(f, s) for f in data for s in OTHER_SPLITS):
        return data  # files that name no split at all are the train split
    return chosen


# ---- fetching and reading ---------------------------------------------------------------------------------------

def _hub_files(ref: HFDatasetRef, cfg: HuggingFaceSourceConfig) -> tuple[Path, list[str]]:
    """Ask the hub what the repo holds, then download the split's files (and the card) into the cache."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    info = HfApi(endpoint=cfg.endpoint).dataset_info(ref.repo, revision=ref.revision)
    files = [s.rfilename for s in info.siblings or []]
    # by the revision's name, not info.sha: the cache then maps the name to its snapshot, for reads without the hub
    common = {"repo_id": ref.repo, "repo_type": "dataset", "revision": ref.revision, "cache_dir": cfg.cache_dir,
              "endpoint": cfg.endpoint}
    readme = Path(hf_hub_download(filename=README, **common)).read_text() if README in files else None
    chosen = split_files(files, ref, readme)
    if not chosen:
        raise _bad(f"{ref.uri} has no data files for split {ref.split!r}")
    return Path(snapshot_download(allow_patterns=chosen, **common)), chosen


def _cached_files(ref: HFDatasetRef, cfg: HuggingFaceSourceConfig, why: str) -> tuple[Path, list[str]]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        root = Path(snapshot_download(ref.repo, repo_type="dataset", revision=ref.revision, cache_dir=cfg.cache_dir,
                                      local_files_only=True))
    except LocalEntryNotFoundError as e:
        partial = getattr(e, "snapshot_path", None)  # a snapshot we downloaded some of the repo's files into
        if partial is None:
            raise _bad(f"{ref.uri} is not in the local Hugging Face cache, and {why}") from None
        root = Path(partial)
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    readme = (root / README).read_text() if (root / README).is_file() else None
    chosen = split_files(files, ref, readme)
    if not chosen:
        raise _bad(f"the cached copy of {ref.uri} has no data files for split {ref.split!r}, and {why}")
    return root, chosen


def _unreachable(exc: Exception) -> bool:
    """No answer from the hub (refused, DNS, timeout, HF_HUB_OFFLINE): OS errors, or the transport errors of the
    HTTP client huggingface_hub uses (httpx, or httpx2 in 2.x)."""
    return isinstance(exc, OSError) or any(c.__name__ == "TransportError" for c in type(exc).__mro__)


def fetch(ref: HFDatasetRef, cfg: HuggingFaceSourceConfig) -> list[Path]:
    """Local paths of the split's files: from the hub, or the cache when the hub cannot be reached."""
    from huggingface_hub.errors import HfHubHTTPError

    if cfg.offline:
        root, chosen = _cached_files(ref, cfg, "this server reads only the cache (datasetio.huggingface.offline)")
        return [root / f for f in chosen]
    try:
        root, chosen = _hub_files(ref, cfg)
    except HfHubHTTPError as e:  # the hub answered: no such repo or revision, gated, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _bad(f"the Hugging Face hub refused {ref.uri}: {first}") from None
    except Exception as e:
        if not _unreachable(e):
            raise
        root, chosen = _cached_files(ref, cfg, f"the Hugging Face hub could not be reached ({type(e).__name__}: "
                                               f"{e})")
    return [root / f for f in chosen]


def load_hf(uri: str, cfg: HuggingFaceSourceConfig) -> pa.Table:
    """The split behind a huggingface:// URI as one table (its files in name order)."""
    import pyarrow as pa

    from deployments.datasets.formats import format_of, parse_bytes

    if not cfg.enabled:
        raise _bad("huggingface:// sources are disabled on this server (datasetio.huggingface.enabled)")
    if not available():
        raise _bad("huggingface:// sources need the huggingface_hub package, which this server lacks")
    ref = parse_hf_uri(uri)
    tables = [parse_bytes(p.read_bytes(), format_of(p.name)) for p in fetch(ref, cfg)]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise _bad(f"the files of {ref.uri} split {ref.split!r} do not share columns: {e}") from None
