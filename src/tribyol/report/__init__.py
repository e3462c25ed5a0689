"""Results store (JSON lines) and the tables and plots made from it."""

from tribyol.store import DEFAULT_STORE, append_result, git_commit, read_results

__all__ = ["DEFAULT_STORE", "append_result", "git_commit", "read_results"]
