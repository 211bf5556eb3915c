"""The Kaggle API as hubpub calls it: kagglehub for uploads and downloads, and the Kaggle SDK client
kagglehub builds for the model's and each variation's metadata. Every failure is one line
(`hub_error`); `hubpub.destinations.kaggle` plans and sequences the calls, and hands in its plan's
values (`KaggleModel`, `KaggleVariation`), which this module reads but does not import."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from hubpub.destinations.hub import hub_error
from hubpub.errors import PublishError

log = logging.getLogger(__name__)

MARKER = "hubpub.json"  # in every version: what it holds, so a re-publish can compare
CREDENTIALS = "set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN (or ~/.kaggle/kaggle.json)"


def check_credentials() -> None:
    from kagglehub.config import get_kaggle_credentials

    if get_kaggle_credentials() is None:
        raise PublishError(f"no Kaggle credentials: {CREDENTIALS}; nothing was uploaded")


@contextlib.contextmanager
def one_user_agent():
    """kagglehub's clients, each with the user agent of the first while the block runs.

    kagglehub builds a client for every file it uploads or downloads, and each client's user agent walks
    the caller's stack with `inspect.stack()` six times, looking for keras_hub and the like (none are in
    hubpub's stack, so every client's agent is the same). With TensorFlow imported each walk scans every
    module (`inspect.getmodule`, for each frame without a file), and a publish or audit makes a client per
    file: the first agent is reused instead. The library's own function is back after."""
    import kagglehub.clients as clients

    original = clients.get_user_agent
    agent = _called_once(original)
    clients.get_user_agent = lambda: agent
    try:
        yield
    finally:
        clients.get_user_agent = original


@functools.cache
def _called_once(user_agent) -> str:
    return user_agent()


class KaggleApi:
    """The calls hubpub makes, through kagglehub and the Kaggle SDK client it builds; each failure is
    one `PublishError` line naming what was being done."""

    def __init__(self, model):  # a KaggleModel of the plan
        self.model = model
        self._client = None

    def __enter__(self) -> KaggleApi:
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.__exit__(*exc)
            self._client = None

    def _models(self):
        """The SDK's model service, on one client for the whole publish (`one_user_agent` says why)."""
        from kagglehub.clients import build_kaggle_client

        if self._client is None:
            with one_user_agent():
                self._client = build_kaggle_client().__enter__()
        return self._client.models.model_api_client

    def _call(self, what: str, fn):
        from kagglehub.exceptions import BackendError

        try:
            response = fn(self._models())
        except Exception as e:  # requests, kagglesdk and kagglehub raise many types
            raise hub_error(f"{what} on Kaggle", e) from None
        error = getattr(response, "error", "")
        if error:
            raise hub_error(f"{what} on Kaggle", BackendError(error))
        return response

    def _exists(self, what: str, fn) -> Any:
        """`fn`'s response, or None when Kaggle says 404 (or 403, its answer for another's private model)."""
        import requests

        try:
            return fn(self._models())
        except requests.HTTPError as e:
            if e.response is not None and e.response.status_code in (403, 404):
                return None
            if e.response is not None and e.response.status_code == 401:
                raise PublishError(f"{what} on Kaggle: the credentials were refused (HTTP 401); {CREDENTIALS} "
                                   "with a current key; nothing was uploaded") from None
            raise hub_error(f"{what} on Kaggle", e) from None
        except Exception as e:
            raise hub_error(f"{what} on Kaggle", e) from None

    def upsert_model(self) -> None:
        from google.protobuf.field_mask_pb2 import FieldMask
        from kagglesdk.models.types.model_api_service import (
            ApiCreateModelRequest,
            ApiGetModelRequest,
            ApiUpdateModelRequest,
        )

        m = self.model
        get = ApiGetModelRequest()
        get.owner_slug, get.model_slug = m.owner, m.slug
        if self._exists(f"reading the model {m.owner}/{m.slug}", lambda c: c.get_model(get)) is None:
            r = ApiCreateModelRequest()
            r.owner_slug, r.slug = m.owner, m.slug
            fields = {"title": m.title, "subtitle": m.subtitle, "is_private": m.is_private,
                      "description": m.description, "provenance_sources": m.provenance_sources}
            for k, value in fields.items():
                setattr(r, k, value)
            self._call(f"creating the model {m.owner}/{m.slug}", lambda c: c.create_model(r))
            log.info("created the Kaggle model %s/%s (%s)", m.owner, m.slug, "private" if m.is_private else "public")
            return
        r = ApiUpdateModelRequest()
        r.owner_slug, r.model_slug = m.owner, m.slug
        r.title, r.subtitle, r.is_private = m.title, m.subtitle, m.is_private
        r.description, r.provenance_sources = m.description, m.provenance_sources
        r.update_mask = FieldMask(paths=["title", "subtitle", "is_private", "description", "provenance_sources"])
        self._call(f"updating the model {m.owner}/{m.slug}", lambda c: c.update_model(r))

    def latest(self, v) -> tuple[int | None, str | None, object | None]:
        """(latest version number, the sha256 its hubpub.json names, the instance), or Nones if none."""
        from kagglesdk.models.types.model_api_service import ApiGetModelInstanceRequest
        from kagglesdk.models.types.model_enums import ModelFramework

        r = ApiGetModelInstanceRequest()
        r.owner_slug, r.model_slug, r.instance_slug = self.model.owner, self.model.slug, v.slug
        r.framework = _framework(v.framework, ModelFramework)
        instance = self._exists(f"reading {v.handle(self.model)}", lambda c: c.get_model_instance(r))
        if instance is None:
            return None, None, None
        n = instance.version_number
        return n, self._marker_sha(f"{v.handle(self.model)}/{n}"), instance

    def _marker_sha(self, handle: str) -> str | None:
        import kagglehub

        with tempfile.TemporaryDirectory(prefix="hubpub-kaggle-marker-") as tmp:
            try:
                with one_user_agent():
                    path = kagglehub.model_download(handle, MARKER, output_dir=tmp, force_download=True)
                return json.loads(Path(path).read_text()).get("sha256")
            except Exception as e:  # no hubpub.json: a version made by something else
                log.debug("%s: no readable %s: %s", handle, MARKER, e)
                return None

    def upload(self, v, folder: Path, *, new: bool, sigstore: bool = False) -> None:
        import kagglehub

        handle = v.handle(self.model)
        try:  # sigstore: kagglehub's own keyless signing of the version, with the token Kaggle issues
            with one_user_agent():
                kagglehub.model_upload(handle, str(folder), license_name=v.license_name,
                                       version_notes=v.version_notes, sigstore=sigstore)
        except Exception as e:  # kagglehub retries resets itself; what it gives up on is one line here
            raise hub_error(f"uploading {handle} ({'a new variation' if new else 'a new version'}); no version was "
                            "made from a partial upload, run publish again", e) from None

    def update_variation(self, v, instance) -> bool:
        """Bring the variation's page (overview, usage, fine-tunable, training data) to the docs'; whether
        anything changed."""
        from google.protobuf.field_mask_pb2 import FieldMask
        from kagglesdk.models.types.model_api_service import ApiUpdateModelInstanceRequest
        from kagglesdk.models.types.model_enums import ModelFramework

        wanted = {"overview": v.overview, "usage": v.usage, "fine_tunable": v.fine_tunable,
                  "training_data": list(v.training_data)}
        if instance is not None and all(getattr(instance, k) == w for k, w in wanted.items()):
            return False
        r = ApiUpdateModelInstanceRequest()
        r.owner_slug, r.model_slug, r.instance_slug = self.model.owner, self.model.slug, v.slug
        r.framework = _framework(v.framework, ModelFramework)
        for k, w in wanted.items():
            setattr(r, k, w)
        r.update_mask = FieldMask(paths=list(wanted))
        self._call(f"updating the page of {v.handle(self.model)}", lambda c: c.update_model_instance(r))
        return True


# The frameworks of Kaggle's model handles (`OWNER/MODEL/FRAMEWORK/VARIATION`), as kagglehub writes them.
HANDLE_FRAMEWORKS = ("tensorFlow1", "tensorFlow2", "tfLite", "tfJs", "pyTorch", "jax", "flax", "onnx", "keras",
                     "transformers")


def variations(owner: str, model: str) -> list[tuple[str, str, int]]:
    """(framework, variation, latest version) of each variation of a Kaggle model."""
    from types import SimpleNamespace

    from kagglesdk.models.types.model_api_service import ApiGetModelRequest
    from kagglesdk.models.types.model_enums import ModelFramework

    get = ApiGetModelRequest()
    get.owner_slug, get.model_slug = owner, model
    with KaggleApi(SimpleNamespace(owner=owner, slug=model)) as api:
        found = api._call(f"reading the model {owner}/{model}", lambda c: c.get_model(get))
    names = {_framework(n, ModelFramework): n for n in HANDLE_FRAMEWORKS}
    return [(names[i.framework], i.slug, i.version_number) for i in found.instances or [] if i.framework in names]


def variation_files(owner: str, model: str, framework: str, slug: str, version: int) -> list[tuple[str, int]]:
    """(path, size) of each file of a variation's version."""
    from types import SimpleNamespace

    from kagglesdk.models.types.model_api_service import ApiListModelInstanceVersionFilesRequest
    from kagglesdk.models.types.model_enums import ModelFramework

    files, token = [], ""
    with KaggleApi(SimpleNamespace(owner=owner, slug=model)) as api:
        while True:
            r = ApiListModelInstanceVersionFilesRequest()
            r.owner_slug, r.model_slug, r.instance_slug, r.version_number = owner, model, slug, version
            r.framework, r.page_token = _framework(framework, ModelFramework), token
            page = api._call(f"listing {owner}/{model}/{framework}/{slug}/{version}",
                             lambda c, r=r: c.list_model_instance_version_files(r))
            files += [(f.name, int(f.size)) for f in page.files or []]
            token = page.next_page_token
            if not token:
                return files


def _framework(name: str, enum):
    """kagglesdk's enum value of a framework's name in a handle: `tensorFlow2` -> MODEL_FRAMEWORK_TENSOR_FLOW_2."""
    return getattr(enum, "MODEL_FRAMEWORK_" + re.sub(r"(?<=[a-z])(?=[A-Z0-9])", "_", name).upper())


def download_variation(handle: str, into: Path) -> Path:
    """A published version's files, as its users get them (`kagglehub.model_download`)."""
    import kagglehub

    try:
        with one_user_agent():
            return Path(kagglehub.model_download(handle, output_dir=str(into), force_download=True))
    except Exception as e:
        raise hub_error(f"downloading {handle} from Kaggle", e) from None
