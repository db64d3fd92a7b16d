"""benchmarks/report.py: a summary over runs is as current as its oldest run."""

import subprocess

from benchmarks import report


def _git(root, *args):
  out = subprocess.run(("git", *args), cwd=root, check=True, capture_output=True, text=True)
  return out.stdout.strip()


def _commit(root, text):
  (root / "code.py").write_text(text)
  _git(root, "add", "code.py")
  _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", text)
  return _git(root, "rev-parse", "HEAD")


def test_run_commits_are_every_leaf_under_a_commits_key():
  rec = dict(
    commit="top",
    result=dict(
      commits={"static": {"0": "a", "1": "b"}, "loss": {"0": "a"}},
      accuracy=dict(arms={"jarl": dict(commits=["c", "b"])}, commit_note="not a run"),
    ),
  )
  assert report.run_commits(rec) == ["a", "b", "c"]
  assert report.run_commits(dict(commit="top", result=dict(x=1))) == []


def test_a_summary_over_an_older_run_is_stale(tmp_path):
  _git(tmp_path, "init", "-q")
  old = _commit(tmp_path, "v1")
  new = _commit(tmp_path, "v2")  # the code changed after `old`'s run
  (tmp_path / "notes.md").write_text("not code")
  _git(tmp_path, "add", "notes.md")
  _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "notes")
  summary = dict(commit=new, depends=["code.py"], result=dict(commits={"run": {"0": new}}))
  assert report.staleness(summary, tmp_path) == "current"  # only notes.md changed since
  summary["result"]["commits"]["run"]["1"] = old
  assert report.staleness(summary, tmp_path) == "stale"
  summary["result"]["commits"]["run"]["1"] = "0" * 40
  assert report.staleness(summary, tmp_path) == "unknown commit"
