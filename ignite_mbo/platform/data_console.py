"""`ignite-mbo data path|verify|download`: the data checks and downloads, printed for a person."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ignite_mbo.errors import UserError, printable, shown
from ignite_mbo.tasks.data import (
    FOLDERS,
    REPO_ID,
    REVISION,
    TASK_FOLDERS,
    _download_hint,
    manifest,
    resolve_data_dir,
    unexpected_files,
    verify,
)
from ignite_mbo.tasks.download import download

# --- CLI ------------------------------------------------------------------------------------


def _expand(names: Sequence[str]) -> list[str]:
    """Folder names from a mix of folder names, task keys (tf_bind_8) and 'all'."""
    folders: list[str] = []
    for name in names or ["all"]:
        if name == "all":
            folders.extend(FOLDERS)
        elif name in TASK_FOLDERS:
            folders.append(TASK_FOLDERS[name])
        elif name in FOLDERS:
            folders.append(name)
        else:
            choices = ", ".join([*TASK_FOLDERS, "all"])
            raise UserError(f"unknown Design-Bench task {name!r}; use --task with one of {choices}")
    return list(dict.fromkeys(folders))


def _count(problems: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem] = counts.get(problem, 0) + 1
    return ", ".join(f"{n} {problem}" for problem, n in counts.items())


def check_data_dir(root: Path, folders: Sequence[str]) -> int:
    """Print one line per problem of the folders (missing, wrong size, corrupt, unreadable,
    unexpected file); raise a one-line UserError summing them up, or print one ok line per folder."""
    bad = [s for s in verify(root, folders) if not s.ok]
    strays = unexpected_files(root, folders)
    if not bad and not strays:
        for folder in folders:
            print(f"{folder}: ok ({len(manifest(folder))} files)")
        return 0
    for status in bad:
        print(f"{printable(str(status.path))}: {printable(status.problem)}")
    for path in strays:  # a path is written as it is only if a terminal would not act on it (pass 18: \x1b[2J)
        print(f"{printable(str(path))}: unexpected (not in the manifest; loaders ignore it)")
    fixes = []
    if any(s.state == "missing" and s.detail for s in bad):
        fixes.append("remove the files that stand where a folder should be")
    if any(s.state != "unreadable" for s in bad):
        fixes.append(f"run '{_download_hint(s.entry.folder for s in bad)}' to replace missing and damaged files")
    unreadable = [s for s in bad if s.state == "unreadable"]
    looping = [s for s in unreadable if "symbolic links" in s.detail]  # ELOOP: a link that points at itself
    if looping:
        fixes.append("replace the symbolic links that loop with the files or folders they should name")
    if len(looping) < len(unreadable):
        fixes.append("make the unreadable files readable by this user")
    if strays:
        fixes.append("delete the unexpected files")
    total = len(bad) + len(strays)
    counts = _count([s.state for s in bad] + ["unexpected"] * len(strays))
    noun = "problem" if total == 1 else "problems"
    raise UserError(f"{total} {noun} under {root} ({counts}); {', '.join(fixes)}")


def data_command(
    action: str,
    folders: Sequence[str],
    data_dir: str | os.PathLike[str] | None,
    revision: str = REVISION,
) -> int:
    """`ignite-mbo data path|verify|download`: returns 0, or raises UserError naming the fix."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}", revision) or ".." in revision:  # a cache path too
        raise UserError(f"--revision {shown(revision)} is not a branch, tag or commit of {REPO_ID}; pass one "
                        f"(letters, digits, '.', '_', '-', '/', no '..'), or leave it out for {REVISION!r}")
    root = resolve_data_dir(data_dir)
    if action == "path":
        print(printable(str(root)))  # pass 19: a --data-dir holding ESC ]0; set the terminal's title
        return 0
    if action not in ("verify", "download"):
        raise UserError(f"unknown data action {action!r}; use one of path, verify, download")
    chosen = _expand(folders)
    if action == "download":
        download(chosen, root, revision=revision)
    return check_data_dir(root, chosen)
