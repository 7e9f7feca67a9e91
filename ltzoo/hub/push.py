"""Push a run folder to the Hugging Face Hub as one commit.

    push_run("runs/btm-fmnist_lt-resnet32_cifar-s0", "ltzoo/btm-fmnist-lt-resnet32")

Uploads ``config.json``, ``model.safetensors``, ``results.json``, the per-class recall plot and a
``README.md`` model card generated on the fly (`ltzoo.hub.card.build_card`) in ONE commit, after
creating the repo (and the branch of ``revision``) if needed. The run folder is only read: nothing is
written into it. A re-push is a new commit that updates the card (and any file that changed).

The token comes from huggingface_hub's usual places (``token=``, ``HF_TOKEN``, ``hf auth login``'s
stored token). It never appears in a message or a log: every error text is scrubbed of it.

Transient failures are retried, ``attempts`` times in all with exponential back-off: those that
huggingface_hub's public ``http_backoff`` retries (connection errors, timeouts, HTTP 408/429/5xx);
authentication, permission and not-found errors are not. Either way a
failure ends in a `HubError` that names the problem and the fix. Retrying a commit whose answer was
lost can at worst create a second, identical commit.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ltzoo.errors import UserError
from ltzoo.runfolder.layout import (
    CARD,
    MODEL_CONFIG,
    PER_CLASS_PLOT,
    PREDICTIONS,
    RELIABILITY,
    RESULTS,
    UNCALIBRATED_HEAD,
    WEIGHTS,
)

_logger = logging.getLogger(__name__)

#: Files of a run folder that are uploaded (those present; the first three must be).
REQUIRED = (MODEL_CONFIG, WEIGHTS, RESULTS)
OPTIONAL = (PER_CLASS_PLOT, RELIABILITY, PREDICTIONS, UNCALIBRATED_HEAD)  # predictions: for ltzoo compare

_sleep = time.sleep  # patched by tests
T = TypeVar("T")


class HubError(UserError, RuntimeError):
    """A push that failed, with a message that says what went wrong and what to do (never the token).

    A `ltzoo.errors.UserError` (one line, exit code 2 under `ltzoo.errors.run_main`); still a RuntimeError.
    """

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "hf_***") if token else text


@functools.cache
def _transient() -> tuple[tuple[type[BaseException], ...], tuple[int, ...]]:
    """What huggingface_hub itself retries: the exceptions and HTTP statuses of its public ``http_backoff``.

    Read from the defaults of `huggingface_hub.utils.http_backoff` (a dropped connection, a timeout, a
    protocol error; 408, 429 and 5xx), so ltzoo follows whatever HTTP client and policy the installed
    huggingface_hub has; Python's own ConnectionError / TimeoutError are added for the layers below it.
    """
    from huggingface_hub.utils import http_backoff

    params = inspect.signature(http_backoff).parameters
    excs = params["retry_on_exceptions"].default
    statuses = params["retry_on_status_codes"].default
    excs = excs if isinstance(excs, tuple) else (excs,)
    statuses = statuses if isinstance(statuses, tuple) else (statuses,)
    return tuple(dict.fromkeys((ConnectionError, TimeoutError, *excs))), tuple(statuses)


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def hub_error(exc: BaseException, action: str, repo_id: str, token: str | None) -> HubError | None:
    """Translate an exception of huggingface_hub into a `HubError` (None: not a Hub failure, re-raise it)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return HubError(
            f"cannot {action}: huggingface_hub is in offline mode (HF_HUB_OFFLINE is set); unset HF_HUB_OFFLINE to push"
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if getattr(exc, "response", None) is not None else None
        detail = _scrub(exc.server_message or str(exc).splitlines()[0], token).strip()
        if status == 401:
            msg = (
                f"cannot {action}: the Hub rejected the credentials (HTTP 401: {detail}). Log in with "
                "`hf auth login`, or set HF_TOKEN to a token with write access"
            )
        elif status == 403:
            msg = (
                f"cannot {action}: permission denied for {repo_id} (HTTP 403: {detail}). Use a token with "
                f"write access to the '{repo_id.split('/')[0]}' namespace (`hf auth login` or HF_TOKEN)"
            )
        elif status == 404:
            msg = (
                f"cannot {action}: not found (HTTP 404: {detail}). Check the repo id {repo_id!r}, the "
                "--revision, and that HF_ENDPOINT points at the Hub"
            )
        elif status in _transient()[1] or (status is not None and status >= 500):
            msg = (
                f"cannot {action}: the Hub at {_endpoint()} answered HTTP {status} ({detail}); it may be down "
                "or rate-limiting: retry later"
            )
            return HubError(msg, status, retryable=True)
        else:
            msg = f"cannot {action}: the Hub refused the request (HTTP {status}: {detail})"
        return HubError(msg, status)
    if isinstance(exc, _transient()[0]):
        msg = (
            f"cannot {action}: the Hub at {_endpoint()} could not be reached ({type(exc).__name__}: "
            f"{_scrub(str(exc), token)}); check the network connection, proxy settings and HF_ENDPOINT"
        )
        return HubError(msg, retryable=True)
    return None


def with_retries(
    fn: Callable[[], T], action: str, repo_id: str, token: str | None, attempts: int = 3, backoff: float = 2.0
) -> T:
    """Call ``fn``; retry transient Hub failures (``attempts`` calls in all, waiting 2, 4, ... s)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            err = hub_error(exc, action, repo_id, token)
            if err is None:
                raise
            if not err.retryable or attempt == attempts:
                if err.retryable:
                    err = HubError(f"{err} (gave up after {attempts} attempts)", err.status, True)
                raise err from None
            wait = backoff * 2 ** (attempt - 1)
            _logger.warning("%s; retrying in %.0f s (attempt %d of %d)", err, wait, attempt + 1, attempts)
            _sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def upload_plan(run_dir: str | Path) -> list[Path]:
    """The files of a run folder that a push uploads (besides the generated README.md)."""
    from ltzoo.runfolder.model_io import check_weights

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist", "check the path")
    check_weights(run_dir)  # missing or corrupt weights: named, with the fix
    missing = [n for n in REQUIRED if not (run_dir / n).is_file()]
    if missing:
        raise UserError(
            f"{run_dir} lacks {', '.join(missing)}: not a finished ltzoo run folder",
            "finish the run (run its recipe again with the same --output) or pass another run folder",
        )
    return [run_dir / n for n in REQUIRED + OPTIONAL if (run_dir / n).is_file()]


def push_run(
    run_dir: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    name: str | None = None,
    parent_ids: Sequence[str | None] | None = None,
    commit_message: str | None = None,
    attempts: int = 3,
) -> Any:
    """Upload a run folder to ``repo_id`` in one commit; returns huggingface_hub's ``CommitInfo``.

    Args:
        run_dir: a finished run folder; only read.
        repo_id: ``ORG/NAME``; created (``private`` or public) if it does not exist. ``private`` is not
            applied to an existing repo.
        revision: the branch to commit to (created from ``main`` if missing); default ``main``.
        dry_run: touch no network; return a dict describing what would be uploaded.
        token: a Hub token; default huggingface_hub's (HF_TOKEN, then the ``hf auth login`` one).
        name, parent_ids: passed to `ltzoo.hub.card.build_card`.
        attempts: calls per Hub request before a transient failure is reported.

    Raises:
        HubError: the Hub could not be reached, refused the credentials or the request, or kept failing.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    from ltzoo import __version__
    from ltzoo.hub.card import build_card

    run_dir = Path(run_dir)
    files = upload_plan(run_dir)
    card = build_card(run_dir, repo_id=repo_id, name=name, parent_ids=parent_ids)
    readme = str(card).encode("utf-8")
    meta = card.data.to_dict().get("ltzoo") or {}
    message = commit_message or (
        f"Upload {meta.get('name', repo_id)} ({meta.get('method')} "
        f"{meta.get('backbone')} on {meta.get('dataset')}) with ltzoo {__version__}"
    )
    effective = token or get_token()
    if dry_run:
        return {
            "dry_run": True,
            "repo_id": repo_id,
            "revision": revision or "main",
            "private": private,
            "endpoint": _endpoint(),
            "commit_message": message,
            "token_found": effective is not None,
            "files": [{"path_in_repo": p.name, "source": str(p), "bytes": p.stat().st_size} for p in files]
            + [{"path_in_repo": CARD, "source": "(generated model card)", "bytes": len(readme)}],
            "card": readme.decode("utf-8"),
        }
    if not effective:
        raise HubError(
            "no Hugging Face token found: log in with `hf auth login`, or set HF_TOKEN to a token with write access"
        )
    api = HfApi(token=effective)

    def operations() -> list:  # fresh operations for every attempt (they keep upload state)
        return [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files] + [
            CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=readme)
        ]

    def call(fn: Callable[[], T], action: str) -> T:
        return with_retries(fn, action, repo_id, effective, attempts=attempts)

    _logger.info("pushing %d files of %s to %s@%s", len(files) + 1, run_dir, repo_id, revision or "main")
    call(
        lambda: api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"),
        f"create the repo {repo_id}",
    )
    if revision and revision != "main":
        call(lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), f"create the branch {revision}")
    info = call(
        lambda: api.create_commit(
            repo_id, operations=operations(), commit_message=message, revision=revision, repo_type="model"
        ),
        f"upload {run_dir} to {repo_id}",
    )
    _logger.info("pushed %s: %s", repo_id, getattr(info, "commit_url", info))
    return info
