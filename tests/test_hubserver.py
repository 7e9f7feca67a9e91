"""Tests of tests/hubserver.py: the real huggingface_hub and timm code runs unmodified against LocalHub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hubserver import GITATTRIBUTES, LocalHub, disable_retry_sleep, patch_huggingface_hub, set_hf_offline
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

REPO = "ltzoo/tiny"
BIG = 10 * 1024 * 1024 + 123  # just above the Hub's 10 MB regular-file limit


def _write_folder(root: Path, big: bytes | None = None) -> Path:
    """Create a small model-like folder (nested file included) and return it."""
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"num_classes": 3}))
    (root / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    (root / "sub" / "notes.txt").write_text("nested")
    if big is not None:
        (root / "weights.bin").write_bytes(big)
    return root


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


# ------------------------------------------------------------------------------------------- repos and accounts


def test_create_repo_whoami_and_visibility(local_hub: LocalHub) -> None:
    api = HfApi()
    url = api.create_repo(REPO, private=True, exist_ok=True)
    assert url.repo_id == REPO and url.endpoint == local_hub.endpoint
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(REPO)
    assert info.value.response.status_code == 409

    me = api.whoami()
    assert me["name"] == local_hub.user and "ltzoo" in [org["name"] for org in me["orgs"]]

    model = api.model_info(REPO)
    assert model.id == REPO and model.private is True and model.sha == local_hub.head(REPO)
    assert [s.rfilename for s in model.siblings] == [".gitattributes"]
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(REPO, token=False)  # private repos are hidden from anonymous users
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("ltzoo/missing")

    api.create_repo("ltzoo/data", repo_type="dataset")
    assert local_hub.repo_exists("ltzoo/data", repo_type="dataset") and not local_hub.repo_exists("ltzoo/data")
    assert api.dataset_info("ltzoo/data").id == "ltzoo/data"
    api.delete_repo("ltzoo/data", repo_type="dataset")
    assert not local_hub.repo_exists("ltzoo/data", repo_type="dataset")


# ----------------------------------------------------------------------------------------------------- commits


def test_create_commit_many_files_in_one_commit(local_hub: LocalHub) -> None:
    api = HfApi()
    api.create_repo(REPO)
    big = os.urandom(BIG)
    info = api.create_commit(
        REPO,
        operations=[
            CommitOperationAdd("config.json", b'{"num_classes": 3}'),
            CommitOperationAdd("sub/dir/notes.txt", b"hello"),
            CommitOperationAdd("weights.bin", big),
        ],
        commit_message="add model",
    )
    history = local_hub.history(REPO)
    assert [c.title for c in history] == ["add model", "initial commit"]
    assert info.oid == history[0].sha == api.model_info(REPO).sha
    assert local_hub.request_count("/commit/main", "POST") == 1
    assert local_hub.read_file(REPO, "weights.bin") == big

    assert sorted(api.list_repo_files(REPO)) == [".gitattributes", "config.json", "sub/dir/notes.txt", "weights.bin"]
    root = {e.path: e for e in api.list_repo_tree(REPO)}
    assert isinstance(root["sub"], RepoFolder) and isinstance(root["weights.bin"], RepoFile)
    assert root["weights.bin"].size == BIG and root["weights.bin"].lfs is None  # "regular" upload mode
    assert [e.path for e in api.list_repo_tree(REPO, "sub", recursive=True)] == ["sub/dir", "sub/dir/notes.txt"]
    expanded = list(api.list_repo_tree(REPO, "sub/dir", expand=True))
    assert expanded[0].last_commit.oid == info.oid
    assert [p.path for p in api.get_paths_info(REPO, ["config.json", "sub", "nope"])] == ["config.json", "sub"]

    assert _read(hf_hub_download(REPO, "weights.bin")) == big
    assert _read(hf_hub_download(REPO, "sub/dir/notes.txt", revision=info.oid)) == b"hello"
    assert [c.title for c in api.list_repo_commits(REPO)] == ["add model", "initial commit"]


def test_upload_folder_recommit_and_snapshot_download(local_hub: LocalHub, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo(REPO)
    folder = _write_folder(tmp_path / "model")
    first = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="v1")
    assert local_hub.request_count("/commit/", "POST") == 1  # one commit for all files

    snap = Path(snapshot_download(REPO))
    assert snap.name == first.oid
    assert sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file()) == [
        ".gitattributes",
        "README.md",
        "config.json",
        "sub/notes.txt",
    ]
    assert (snap / ".gitattributes").read_text() == GITATTRIBUTES

    (folder / "config.json").write_text(json.dumps({"num_classes": 5}))
    second = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="v2")
    assert second.oid != first.oid and local_hub.head(REPO) == second.oid
    assert local_hub.history(REPO)[0].files.keys() == local_hub.history(REPO)[1].files.keys()
    assert json.loads(_read(hf_hub_download(REPO, "config.json")))["num_classes"] == 5
    assert json.loads(_read(hf_hub_download(REPO, "config.json", revision=first.oid)))["num_classes"] == 3

    third = api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="no-op")
    assert third.oid == second.oid  # unchanged files are detected through preupload's remote oids

    api.create_commit(REPO, [CommitOperationDelete("sub/")], commit_message="drop sub")
    assert "sub/notes.txt" not in api.list_repo_files(REPO)


def test_branches_revisions_and_not_found_errors(local_hub: LocalHub) -> None:
    api = HfApi()
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"main", path_in_repo="f.txt", repo_id=REPO)
    api.create_branch(REPO, branch="dev")
    api.create_branch(REPO, branch="dev", exist_ok=True)
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="f.txt", repo_id=REPO, revision="dev")

    assert _read(hf_hub_download(REPO, "f.txt")) == b"main"
    assert _read(hf_hub_download(REPO, "f.txt", revision="dev")) == b"dev"
    refs = {ref.name: ref.target_commit for ref in api.list_repo_refs(REPO).branches}
    assert refs == {"main": local_hub.head(REPO), "dev": local_hub.head(REPO, "dev")}
    assert api.model_info(REPO, revision="dev").sha == refs["dev"]

    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "f.txt", revision="nope")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=REPO, revision="nope")
    api.delete_branch(REPO, branch="dev")
    assert [ref.name for ref in api.list_repo_refs(REPO).branches] == ["main"]


def test_resolve_headers_and_ranges(local_hub: LocalHub) -> None:
    api = HfApi()
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="d/f.bin", repo_id=REPO)
    url = f"{local_hub.endpoint}/{REPO}/resolve/main/d/f.bin"

    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as resp:
        assert resp.headers["X-Repo-Commit"] == local_hub.head(REPO)
        assert resp.headers["ETag"] == f'"{local_hub.files(REPO)["d/f.bin"].git_oid}"'
        assert resp.headers["Content-Length"] == "10"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=4-"})) as resp:
        assert resp.status == 206 and resp.read() == b"456789"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{local_hub.endpoint}/{REPO}/resolve/main/nope")
    assert info.value.code == 404 and info.value.headers["X-Error-Code"] == "EntryNotFound"


# ------------------------------------------------------------------------------------------ LFS upload mode


def test_lfs_upload_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalHub(token="tok", lfs_threshold=1024 * 1024) as hub:
        patch_huggingface_hub(monkeypatch, hub.endpoint, tmp_path / "home", "tok")
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # Xet is not implemented: use legacy LFS
        api = HfApi()
        api.create_repo(REPO)
        big = os.urandom(2 * 1024 * 1024)
        folder = _write_folder(tmp_path / "model", big=big)
        api.upload_folder(repo_id=REPO, folder_path=folder)

        assert hub.request_count(".git/info/lfs/objects/batch", "POST") == 1
        assert hub.request_count("/lfs-objects/", "PUT") == 1
        entry = hub.files(REPO)["weights.bin"]
        assert entry.lfs and not hub.files(REPO)["config.json"].lfs
        tree = {e.path: e for e in api.list_repo_tree(REPO)}
        assert tree["weights.bin"].lfs.sha256 == entry.sha256
        path = hf_hub_download(REPO, "weights.bin")
        assert _read(path) == big
        assert os.path.basename(os.path.realpath(path)) == entry.sha256  # cached under X-Linked-Etag

        api.upload_folder(repo_id=REPO, folder_path=folder)  # unchanged: no new commit, no new LFS upload
        assert hub.request_count("/lfs-objects/", "PUT") == 1 and len(hub.history(REPO)) == 2


# ------------------------------------------------------------------------------------- failures and auth errors


def test_injected_500_on_commit_surfaces_as_hf_error(local_hub: LocalHub) -> None:
    api = HfApi()
    api.create_repo(REPO)
    head = local_hub.head(REPO)
    local_hub.fail_next("/commit/", status=500)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="boom")
    assert info.value.response.status_code == 500
    assert local_hub.head(REPO) == head and local_hub.pending_failures() == 0
    api.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="ok")
    assert local_hub.head(REPO) != head


def test_upload_folder_retries_commit_with_bounded_backoff(
    local_hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With hf_xet installed, ``upload_folder`` commits through ``http_backoff`` (5 retries on 5xx)."""
    sleeps = disable_retry_sleep(monkeypatch)
    api = HfApi()
    api.create_repo(REPO)
    folder = _write_folder(tmp_path / "model")

    local_hub.fail_next("/commit/", status=503, times=2)
    api.upload_folder(repo_id=REPO, folder_path=folder)
    assert local_hub.request_count("/commit/", "POST") == 3 and sleeps == [1, 2]

    (folder / "config.json").write_text("{}")
    local_hub.requests.clear()
    local_hub.fail_next("/commit/", status=500, times=100)
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_folder(repo_id=REPO, folder_path=folder)
    assert info.value.response.status_code == 500
    assert local_hub.request_count("/commit/", "POST") == 6  # 1 try + 5 retries, then the error surfaces


def test_auth_errors(local_hub: LocalHub) -> None:
    api = HfApi()
    api.create_repo(REPO)
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(token="hf_wrong").upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=REPO)
    assert info.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(token=False).create_commit(REPO, [CommitOperationAdd("x", b"x")], commit_message="anon")
    assert info.value.response.status_code == 401
    assert len(local_hub.history(REPO)) == 1
    assert _read(hf_hub_download(REPO, ".gitattributes", token=False)) == GITATTRIBUTES.encode()  # public read


def test_subprocess_inherits_hub_environment(local_hub: LocalHub, tmp_path: Path) -> None:
    """Child processes (e.g. ``accelerate launch``) reach the hub through the environment alone."""
    api = HfApi()
    api.create_repo(REPO, private=True)
    api.upload_file(path_or_fileobj=b"from parent", path_in_repo="f.txt", repo_id=REPO)
    code = (
        "import sys, huggingface_hub as h\n"
        "h.upload_file(path_or_fileobj=b'from child', path_in_repo='g.txt', repo_id=sys.argv[1])\n"
        "print(open(h.hf_hub_download(sys.argv[1], 'f.txt')).read())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, REPO], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "from parent"
    assert local_hub.read_file(REPO, "g.txt") == b"from child"
    assert any((tmp_path / "hf_home" / "hub").glob("models--ltzoo--tiny"))  # child used the test's HF_HOME


def test_restart_on_same_root_keeps_repos(tmp_path: Path) -> None:
    with LocalHub(tmp_path / "store") as hub:
        hub.store.create_repo("model", REPO, private=False)
        head = hub.head(REPO)
    with LocalHub(tmp_path / "store") as hub:
        assert hub.head(REPO) == head and hub.read_file(REPO, ".gitattributes") == GITATTRIBUTES.encode()


# ----------------------------------------------------------------------------------------------- timm round trip


@pytest.mark.parametrize("safe_serialization", [False, True], ids=["pytorch_bin", "safetensors"])
def test_timm_hf_hub_roundtrip_and_offline_cache(
    local_hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, safe_serialization: bool
) -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3).eval()
    save_for_hf(model, str(tmp_path / "export"), safe_serialization=safe_serialization)
    HfApi().create_repo(REPO, exist_ok=True)
    HfApi().upload_folder(repo_id=REPO, folder_path=tmp_path / "export", commit_message="timm export")
    assert local_hub.request_count("/commit/", "POST") == 1

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert not any((tmp_path / "hf_home" / "hub").glob("models--*"))  # cache starts empty
        loaded = timm.create_model(f"hf-hub:{REPO}", pretrained=True).eval()
        assert torch.equal(loaded(x), expected)

        set_hf_offline(monkeypatch)
        local_hub.requests.clear()
        offline = timm.create_model(f"hf-hub:{REPO}", pretrained=True).eval()
        assert torch.equal(offline(x), expected)
    assert local_hub.requests == []  # served from the cache only
    assert local_hub.server_errors == []
