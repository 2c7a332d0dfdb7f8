"""Secrets (the operator's and issuers' private keys, the readers' sync secrets) must never be
committed: `warn_if_committable(path, what)` warns on standard error when a command writes one
into a git working tree where `git add -A` would pick it up (not covered by .gitignore)."""
import subprocess
import sys
from pathlib import Path


def git_worktree(path):
    """The root of the git working tree that holds `path`, or None."""
    p = Path(path).resolve()
    for d in (p, *p.parents):
        if (d / ".git").exists():
            return d
    return None


def committable(path):
    """True if `path` is inside a git working tree and not ignored by it."""
    root = git_worktree(path)
    if root is None:
        return False
    try:
        proc = subprocess.run(["git", "-C", str(root), "check-ignore", "-q",
                               str(Path(path).resolve())], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return True  # no git to ask: assume the worst
    return proc.returncode != 0  # 0: ignored, 1: not ignored


def warn_if_committable(path, what):
    if committable(path):
        print("warning: %s %s is inside the git working tree %s and not in its .gitignore: one "
              "`git add -A` would commit it; keep it outside the repository (or ignore it)"
              % (what, path, git_worktree(path)), file=sys.stderr)
