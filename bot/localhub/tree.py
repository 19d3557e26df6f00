"""Repo trees and refs: ``/tree/{rev}[/{path}]``, ``/paths-info/{rev}`` and ``/refs``.

These back ``HfApi.list_repo_files``, ``list_repo_tree``, ``get_paths_info`` and
``list_repo_refs`` (and so ``HfFileSystem``). A tree answers in one page (no cursor).

>>> directory_oid("a" * 40, "sub")[:8]
'efdd456a'
"""

from __future__ import annotations

import hashlib
from typing import Any

from provbot.bot.localhub.store import DEFAULT_REVISION, FileEntry, HubError, RepoStore, Revision, lfs_pointer


def directory_oid(commit: str, path: str) -> str:
    """A stable id for a folder at a commit (git's tree id is not needed by any client)."""
    return hashlib.sha1(f"{commit}\0{path}".encode()).hexdigest()


def file_item(store: RepoStore, entry: FileEntry) -> dict[str, Any]:
    sibling = store.sibling(entry, blobs=True)
    item: dict[str, Any] = {"type": "file", "oid": sibling["blobId"], "size": entry.size, "path": entry.rfilename}
    if entry.is_lfs:
        sha256 = sibling["lfs"]["sha256"]
        item["lfs"] = {"oid": sha256, "size": entry.size, "pointerSize": len(lfs_pointer(sha256, entry.size))}
    return item


def tree(store: RepoStore, rev: Revision, path: str, recursive: bool) -> list[dict[str, Any]]:
    """Entries under ``path`` ("" for the root): folders first, then files, each sorted by path."""
    prefix = path.strip("/")
    if prefix and prefix not in _folders(rev) and prefix not in rev.files:
        raise HubError(404, "EntryNotFound", f'{prefix} does not exist on "{rev.name}"', {"X-Repo-Commit": rev.sha})
    if prefix in rev.files:
        return [file_item(store, rev.files[prefix])]
    base = f"{prefix}/" if prefix else ""
    folders: set[str] = set()
    files: list[FileEntry] = []
    for name, entry in rev.files.items():
        if not name.startswith(base):
            continue
        parts = name[len(base) :].split("/")
        if len(parts) == 1:
            files.append(entry)
            continue
        for depth in range(1, len(parts) if recursive else 2):
            folders.add(base + "/".join(parts[:depth]))
        if recursive:
            files.append(entry)
    out = [{"type": "directory", "oid": directory_oid(rev.sha, f), "path": f} for f in sorted(folders)]
    return out + [file_item(store, e) for e in files]


def paths_info(store: RepoStore, rev: Revision, paths: list[str]) -> list[dict[str, Any]]:
    """Info for the given paths that exist (files or folders); unknown paths are left out."""
    folders = _folders(rev)
    out: list[dict[str, Any]] = []
    for p in paths:
        p = p.strip("/")
        if p in rev.files:
            out.append(file_item(store, rev.files[p]))
        elif p in folders:
            out.append({"type": "directory", "oid": directory_oid(rev.sha, p), "path": p})
    return out


def refs(store: RepoStore, repo_id: str) -> dict[str, Any]:
    """Branches: ``main`` and every ``<name>@<rev>`` folder (no tags, converts or PR refs)."""
    branches = []
    for name in store.revision_names(repo_id):
        sha = store.resolve(repo_id, name).sha
        branches.append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha})
    branches.sort(key=lambda b: b["name"] != DEFAULT_REVISION)
    return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}


def _folders(rev: Revision) -> set[str]:
    out: set[str] = set()
    for name in rev.files:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            out.add("/".join(parts[:depth]))
    return out
