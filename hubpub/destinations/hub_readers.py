"""A collection published on a hub, read as a whole for `hubpub audit`: every file of hubpub's
repositories on the Hugging Face Hub (those holding `hubpub.json`), or of the latest version of every
variation of a Kaggle model. Names are `<repository>/<path>` and `<framework>/<variation>/<path>`.

Listing reads the hub's file lists only; a file's bytes come with the first read of its folder (a
repository's snapshot, a version's download), made once into a temp folder that `close` removes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from pathlib import Path

from hubpub.destinations.hub import hub_error

MARKER = "hubpub.json"


class _FolderCache:
    """Each folder downloaded once, on first use, below one temp folder."""

    def __init__(self, fetch):
        self._root = Path(tempfile.mkdtemp(prefix="hubpub-audit-"))
        self._fetch, self._done = fetch, {}

    def folder(self, name: str) -> Path:
        if name not in self._done:
            self._done[name] = self._fetch(name, self._root / name.replace("/", "__"))
        return self._done[name]

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


class _FolderReader:
    """Reading a file by its folder, downloaded whole on first use (`_cache`), `depth` parts deep."""

    depth: int
    _cache: _FolderCache

    @contextlib.contextmanager
    def local_copy(self, relative: str):
        *folder, path = relative.split("/", self.depth)
        yield self._cache.folder("/".join(folder)) / path

    @contextlib.contextmanager
    def local_folder(self, folder: str):
        yield self._cache.folder(folder)

    def close(self) -> None:
        self._cache.close()


class HfReader(_FolderReader):
    """`hf://ORG`: the files of ORG's repositories that hubpub published, at `main`, through the client
    `hubpub.destinations.hf` hands in (`api()`: an HfApi; `download(repo_id, into)`: a snapshot)."""

    def __init__(self, owner: str, *, api, download):
        self.owner, self._api = owner, api
        self._cache = _FolderCache(lambda repo, into: download(f"{owner}/{repo}", into))

    def listing(self) -> dict[str, int]:
        from huggingface_hub.hf_api import RepoFile

        api = self._api()
        out: dict[str, int] = {}
        try:
            repos = [m.id for m in api.list_models(author=self.owner)]
            for repo in repos:
                files = {f"{repo.split('/', 1)[1]}/{e.path}": e.size
                         for e in api.list_repo_tree(repo, recursive=True) if isinstance(e, RepoFile)}
                if f"{repo.split('/', 1)[1]}/{MARKER}" in files:  # one of hubpub's
                    out |= files
        except Exception as e:  # huggingface_hub raises many types
            raise hub_error(f"listing hf://{self.owner}", e) from None
        return out

    depth = 1  # a name's first part is its folder: the repository

    def key_of(self, url: str) -> str | None:
        """`https://huggingface.co/ORG/REPO[/resolve|blob/REV/PATH]` -> `REPO[/PATH]`; None elsewhere."""
        m = re.fullmatch(rf"https://huggingface\.co/{re.escape(self.owner)}/([^/?#]+)(?:/(?:resolve|blob)/[^/]+/"
                         r"([^?#]+))?/?(?:[?#].*)?", url)
        return None if m is None else m[1] + (f"/{m[2]}" if m[2] else "")


class KaggleReader(_FolderReader):
    """`kaggle://OWNER/MODEL`: the files of the latest version of each of the model's variations."""

    def __init__(self, owner: str, model: str):
        from hubpub.destinations.kaggle_client import download_variation

        self.owner, self.model = owner, model
        self._versions: dict[str, int] = {}  # a variation's folder -> its version listed
        self._cache = _FolderCache(lambda folder, into: download_variation(
            f"{owner}/{model}/{folder}/{self._versions[folder]}", into))

    def listing(self) -> dict[str, int]:
        from hubpub.destinations.kaggle_client import variation_files, variations

        out: dict[str, int] = {}
        for framework, slug, version in variations(self.owner, self.model):
            folder = f"{framework}/{slug}"
            self._versions[folder] = version
            out |= {f"{folder}/{name}": size for name, size in variation_files(self.owner, self.model, framework,
                                                                                slug, version)}
        return out

    depth = 2  # a name's first two parts are its folder: the framework and the variation

    def key_of(self, url: str) -> str | None:
        """`https://www.kaggle.com/models/OWNER/MODEL/FRAMEWORK/SLUG[/VERSION]` -> `FRAMEWORK/SLUG`."""
        m = re.fullmatch(rf"https://www\.kaggle\.com/models/{re.escape(self.owner)}/{re.escape(self.model)}/"
                         r"([^/?#]+)/([^/?#]+)(?:/\d+)?/?(?:[?#].*)?", url)
        return None if m is None else f"{m[1]}/{m[2]}"
