"""Read a project's review history straight from a local git checkout into `graph.Change`s.

Two kinds of history are understood, and may be mixed:

* **Trailer-reviewed commits** (kernel, U-Boot, Gerrit mirrors): every non-merge commit is one change
  (``kind="commit"``) whose reviewers are its ``Reviewed-by:`` / ``Approved-by:`` trailers and whose ackers are
  its ``Acked-by:`` trailers. ``Tested-by:`` is not a review and is ignored. Plain merges are skipped: the
  commits they bring in are changes of their own.
* **GitLab merge requests**: a merge commit on the main line (the first-parent chain of ``HEAD``) whose message
  has GitLab's ``See merge request …`` line is one change (``kind="mr"``). Its files are the
  merge's diff against its first parent; its author is the MR's main author, the most frequent author among
  the commits it merged (ties go to the earliest); its reviewers are the merge's ``Approved-by:`` /
  ``Reviewed-by:`` trailers plus those of the merged commits; its committer is who merged (the merge commit's
  author: GitLab commits merges as itself). The merged commits are folded into the MR and are not changes of
  their own, so an MR counts once. The MR's ``group/project!123`` (or merge-request URL) is kept in ``extra``.

People are identified by their email address after ``.mailmap`` resolution, lower-cased (the name when there
is no email), so an author and the same person in a trailer get the same id. Authors are resolved by git
itself (``%aN``/``%aE``); trailer identities by one ``git check-mailmap --stdin`` process kept open for the
whole read. The author is never among a change's reviewers or ackers.

Changes come in time order, oldest first: git's ``--date-order`` reversed, i.e. by committer date with every
commit after its parents. The work is done by two cheap ``git`` walks without diffs (which merges are MRs and,
only when there are any, the commit graph) and one streaming ``git log`` with the diffs. Needs git 2.31 or newer.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping

from graph.model import Change

__all__ = ["read_git_changes", "GitHistoryError", "is_bot_identity", "is_shallow"]

REVIEW_KEYS = ("reviewed-by", "approved-by")
ACK_KEYS = ("acked-by",)
MERGER_KEYS = ("merged-by",)

_TRAILERS = "%(trailers:key=Reviewed-by,key=Approved-by,key=Acked-by,key=Merged-by,unfold)"
# A commit's fields are NUL-separated tokens, as its paths are (`-z`): NUL is the one byte a message, a name or a
# path cannot hold, where a subject or a name may hold any other control character (one holding \x1f, the
# separator once used, stopped the whole read with a ValueError)
_FIELDS = ("%H", "%P", "%aN", "%aE", "%cN", "%cE", "%ct", "%s", _TRAILERS)
_FORMAT = "%x1e" + "%x00".join(_FIELDS)
_MR_GREP = r"^See merge request ([^[:space:]]+![0-9]+|https?://[^[:space:]]+/-/merge_requests/[0-9]+)"
_MR_REF = re.compile(r"^See merge request (?:(\S+![0-9]+)|https?://[^/\s]+/(\S+)/-/merge_requests/([0-9]+))\s*$",
                     re.MULTILINE)
_CONTACT = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^<>\n]*)>\s*$")
_BOT = re.compile(r"(\[bot\]|(^|[-_.\s])bot($|[-_.\s@])|dependabot|renovate|^gitlab-bot|noreply\.github)", re.I)


class GitHistoryError(RuntimeError):
    """git is missing, the path is not a git checkout, or git refused the command."""


@dataclass(frozen=True, slots=True)
class _Commit:
    """One commit as the streaming `git log` reports it, before people are resolved."""

    sha: str
    parents: tuple[str, ...]
    author: tuple[str, str]
    committer: tuple[str, str]
    time: int
    subject: str
    trailers: tuple[tuple[str, str], ...]
    files: tuple[str, ...]
    insertions: int
    deletions: int
    renames: tuple[tuple[str, str], ...] = ()  # (old path, new path) of each file renamed


@dataclass
class _MrParts:
    """What the commits merged by one MR contribute to it, gathered as they stream past."""

    authors: Counter = field(default_factory=Counter)
    bots: set[str] = field(default_factory=set)
    reviewers: list[str] = field(default_factory=list)
    ackers: list[str] = field(default_factory=list)
    commits: int = 0


def is_bot_identity(name: str, email: str) -> bool:
    """Whether a git identity looks like an automated account (dependabot[bot], renovate-bot, …).

    >>> is_bot_identity("renovate-bot", "bot@example.com"), is_bot_identity("Abbott", "abbott@example.com")
    (True, False)
    """
    return bool(_BOT.search(name) or _BOT.search(email.split("@", 1)[0]))


def read_git_changes(
    repo_path: str | Path, *, since: datetime | int | None = None, max_files: int = 2000
) -> Iterator[Change]:
    """Yield the reviewed changes of the git checkout at `repo_path`, oldest first.

    `since` (an aware datetime or unix seconds) skips older commits; `max_files` caps each change's file
    list (``extra["n_files"]`` keeps the true count). The repository is checked before this returns, so a
    wrong path fails here rather than at the first iteration. An empty repository yields nothing.
    """
    repo = Path(repo_path)
    if not repo.is_dir():
        raise GitHistoryError(f"{repo}: no such directory; pass the path of a git checkout (git clone …)")
    _whole_checkout(repo)
    window = _since_args(since)
    mrs = _mr_merges(repo, window)
    if mrs is None:
        return iter(())
    members: dict[str, str] = {}
    if mrs:
        parents, head = _commit_graph(repo, window)
        members = _mr_members(parents, head, mrs.keys())
    return _changes(repo, window, mrs, members, max_files, _cut(repo))


def _whole_checkout(repo: Path) -> None:
    """Refuse a folder inside a checkout: git reads the history of the repository around it, so a measure of
    `src/` (or of any folder under a home directory kept in git) would be the whole repository's, under the
    folder's name. A bare repository and a `.git` folder have no work tree and pass. The folder's name is
    decoded as the file system's (a Latin-1 name is no UTF-8)."""
    try:
        done = subprocess.run(_git(repo, ["rev-parse", "--show-toplevel"]), capture_output=True)
    except FileNotFoundError as exc:
        raise GitHistoryError("git is not installed or not on PATH; install git 2.31 or newer") from exc
    top = os.fsdecode(done.stdout.rstrip(b"\n"))
    if done.returncode == 0 and top and Path(top).resolve() != repo.resolve():
        raise GitHistoryError(f"{repo} is a folder inside the checkout {top}, whose whole history git would read; "
                              f"pass {top}")


def _since_args(since: datetime | int | None) -> list[str]:
    if since is None:
        return []
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise GitHistoryError(f"since={since!r} has no time zone; pass an aware datetime (tzinfo=UTC)")
        return [f"--since={since.isoformat()}"]
    return [f"--since={datetime.fromtimestamp(int(since), tz=timezone.utc).isoformat()}"]


def _git(repo: Path, args: list[str]) -> list[str]:
    """The full command line: git on `repo`, with options that user configuration could otherwise change (names
    and messages re-encoded to a Latin-1 `i18n.logOutputEncoding` would be read as UTF-8)."""
    return ["git", "-C", str(repo), "-c", "log.showSignature=false", "-c", "color.ui=never",
            "-c", "i18n.logOutputEncoding=UTF-8", *args]


# git's words for an object it lacks: a copy without its promisor remote or a damaged one ("unable to read",
# "missing blob object", "could not get object"), a partial clone whose remote is out of reach ("from promisor remote")
_MISSING_OBJECTS = ("unable to read", "missing blob object", "could not get object", "from promisor remote")


def _failure(repo: Path, stderr: str) -> GitHistoryError:
    if "not a git repository" in stderr:
        return GitHistoryError(f"{repo} is not a git repository; pass the path of a git checkout (git clone …)")
    if "diff-merges" in stderr:
        return GitHistoryError(f"git is too old to read {repo} ({stderr.strip()}); install git 2.31 or newer")
    if any(sign in stderr for sign in _MISSING_OBJECTS):
        return GitHistoryError(f"git failed on {repo}: {stderr.strip()}: the checkout lacks objects git needs to "
                               "diff (a partial clone away from its remote, or a damaged copy); with the remote "
                               f"at hand, `git -C {repo} fetch --refetch --no-filter` fetches them all (git 2.36 "
                               "or newer; without --no-filter the clone's filter leaves them out again), or clone "
                               "the repository whole")
    return GitHistoryError(f"git failed on {repo}: {stderr.strip() or 'no message'}")


def is_shallow(repo_path: str | Path) -> bool:
    """Whether the checkout is a shallow clone (`git clone --depth N`): its history stops at N commits, so a
    replay of it measures only those."""
    return (_run(Path(repo_path), ["rev-parse", "--is-shallow-repository"]) or "").strip() == "true"


def _cut(repo: Path) -> frozenset[str]:
    """The commits at a shallow clone's cut (`git clone --depth N`): git holds them without their parents and
    diffs them against nothing, so each would read as adding every file of its tree. Empty for a whole clone."""
    where = (_run(repo, ["rev-parse", "--git-path", "shallow"]) or "").strip()
    path = Path(where) if Path(where).is_absolute() else repo / where
    return frozenset(path.read_text().split()) if where and path.is_file() else frozenset()


def _run(repo: Path, args: list[str]) -> str | None:
    """Run a short git command and return its output; None when the repository has no commits yet."""
    try:
        done = subprocess.run(_git(repo, args), capture_output=True, text=True, errors="replace")
    except FileNotFoundError as exc:
        raise GitHistoryError("git is not installed or not on PATH; install git 2.31 or newer") from exc
    if done.returncode != 0:
        if "bad revision 'HEAD'" in done.stderr or "does not have any commits yet" in done.stderr:
            return None
        raise _failure(repo, done.stderr)
    return done.stdout


@dataclass(frozen=True, slots=True)
class _MrInfo:
    ref: str
    title: str


def _mr_merges(repo: Path, window: list[str]) -> dict[str, _MrInfo] | None:
    """The GitLab merge commits on the main line, by sha (None for a repository without commits)."""
    out = _run(repo, ["log", "-z", "--first-parent", "--merges", "-E", f"--grep={_MR_GREP}",
                      "--format=%H%x00%b", *window, "HEAD", "--"])
    if out is None:
        return None
    mrs = {}
    pieces = out.split("\0")  # sha, message body, sha, ... (a body may hold any other control character)
    for sha, body in zip(pieces[0::2], pieces[1::2]):
        ref = _MR_REF.search(body)
        ref_text = (ref[1] or f"{ref[2]}!{ref[3]}") if ref else ""
        first = body.strip().split("\n\n", 1)[0].strip()
        title = "" if first.startswith("See merge request") else " ".join(first.split())
        mrs[sha.strip()] = _MrInfo(ref_text, title)
    return mrs


def _commit_graph(repo: Path, window: list[str]) -> tuple[dict[str, tuple[str, ...]], str]:
    """Every commit's parents, and the sha of HEAD (the first commit rev-list prints)."""
    out = _run(repo, ["rev-list", "--parents", *window, "HEAD", "--"]) or ""
    parents = {}
    for line in out.splitlines():
        sha, *rest = line.split()
        parents[sha] = tuple(rest)
    head = out.split(maxsplit=1)[0] if out else ""
    return parents, head


def _mr_members(
    parents: Mapping[str, tuple[str, ...]], head: str, mrs: Iterable[str]
) -> dict[str, str]:
    """Map each commit merged by a main-line MR merge to that merge.

    Walks the main line oldest first; a merge brings in the ancestors of its other parents that no earlier
    main-line commit brought in, so the whole graph is visited once.

    >>> g = {"m": ("a", "f"), "f": ("a",), "a": ()}
    >>> _mr_members(g, "m", ["m"])
    {'f': 'm'}
    """
    mainline = []
    sha = head
    while sha in parents:
        mainline.append(sha)
        sha = parents[sha][0] if parents[sha] else ""
    seen = set(mainline)
    is_mr = set(mrs)
    owner: dict[str, str] = {}
    for merge in reversed(mainline):
        todo = deque(p for p in parents[merge][1:] if p in parents and p not in seen)
        seen.update(todo)
        while todo:
            sha = todo.popleft()
            if merge in is_mr:
                owner[sha] = merge
            for parent in parents[sha]:
                if parent in parents and parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
    return owner


def _log_command(window: list[str], with_merges: bool) -> list[str]:
    merges = ["--diff-merges=first-parent"] if with_merges else ["--no-merges"]
    return ["log", "--reverse", "--date-order", "-M", "--numstat", "-z", "--no-ext-diff", "--no-textconv",
            *merges, f"--format={_FORMAT}", *window, "HEAD", "--"]


def _tokens(stream: IO[bytes]) -> Iterator[str]:
    """The NUL-separated pieces of `git log -z` output, decoded, as they arrive."""
    rest = b""
    while chunk := stream.read(1 << 16):
        pieces = (rest + chunk).split(b"\0")
        rest = pieces.pop()
        for piece in pieces:
            yield piece.decode("utf-8", errors="replace")
    if rest:
        yield rest.decode("utf-8", errors="replace")


def _git_log(repo: Path, args: list[str]) -> Iterator[_Commit]:
    """Stream the commits of one `git log -z` run; the process is ended if the reader stops early."""
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(_git(repo, args), stdout=subprocess.PIPE, stderr=errors)
        except FileNotFoundError as exc:
            raise GitHistoryError("git is not installed or not on PATH; install git 2.31 or newer") from exc
        try:
            assert proc.stdout is not None
            yield from _parse_log(_tokens(proc.stdout))
        finally:
            code = _end(proc)
        if code > 0:
            errors.seek(0)
            raise _failure(repo, errors.read().decode("utf-8", errors="replace"))


def _end(proc: subprocess.Popen[bytes]) -> int:
    """Stop git if the reader left early, and return its exit status (-9 when it was stopped)."""
    if proc.poll() is None:
        proc.kill()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.wait()


def _parse_log(tokens: Iterator[str]) -> Iterator[_Commit]:
    """Group `git log -z --numstat` tokens into commits: the header's fields (the first starts with \\x1e), then
    one entry per changed file.

    A numstat entry is ``added\\tdeleted\\tpath``, or ``added\\tdeleted\\t`` followed by the old and the new path
    of a rename (the new one is the file's path; the pair goes to the commit's renames), so the tokens are
    consumed positionally and odd paths cannot confuse it.
    """
    header: list[str] | None = None
    files: list[str] = []
    renames: list[tuple[str, str]] = []
    added = deleted = 0
    for token in tokens:
        if token.startswith("\x1e"):
            if header is not None:
                yield _commit(header, files, renames, added, deleted)
            header = [token[1:], *(next(tokens, "") for _ in _FIELDS[1:])]
            files, renames, added, deleted = [], [], 0, 0
            continue
        counts = token.lstrip("\n").split("\t", 2)
        if len(counts) != 3:
            continue
        path = counts[2]
        if not path:
            old = next(tokens, "")
            path = next(tokens, "")
            if old and path and old != path:
                renames.append((old, path))
        files.append(path)
        added += int(counts[0]) if counts[0].isdigit() else 0
        deleted += int(counts[1]) if counts[1].isdigit() else 0
    if header is not None:
        yield _commit(header, files, renames, added, deleted)


def _commit(header: list[str], files: list[str], renames: list[tuple[str, str]], added: int, deleted: int) -> _Commit:
    sha, parents, a_name, a_mail, c_name, c_mail, when, subject, trailers = header
    pairs = []
    for line in trailers.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            pairs.append((key.strip().lower(), value.strip()))
    return _Commit(sha, tuple(parents.split()), (a_name, a_mail), (c_name, c_mail), int(when), subject,
                   tuple(pairs), tuple(dict.fromkeys(files)), added, deleted, tuple(renames))


class _People:
    """Turns identities into person ids, resolving trailer contacts through one `git check-mailmap --stdin`."""

    def __init__(self, repo: Path) -> None:
        self._repo = repo
        self._proc: subprocess.Popen[str] | None = None
        self._cache: dict[str, str] = {}

    @staticmethod
    def ident(name: str, email: str) -> str:
        """The id of an already resolved identity: its email lower-cased, else its name."""
        return email.strip().lower() or name.strip()

    def contact(self, text: str) -> str:
        """The id of a trailer value such as ``Jane Doe <JD@example.com>`` (a bare name stays the name)."""
        if text not in self._cache:
            match = _CONTACT.match(text)
            if not match or not match["email"].strip():
                self._cache[text] = (match["name"] if match else text).strip()
            else:
                name, email = _CONTACT.match(self._mailmap(f"{match['name']} <{match['email'].strip()}>")).groups()
                self._cache[text] = self.ident(name, email)
        return self._cache[text]

    def _mailmap(self, contact: str) -> str:
        if self._proc is None:
            self._proc = subprocess.Popen(_git(self._repo, ["check-mailmap", "--stdin"]), stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, errors="replace")
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(contact + "\n")
        self._proc.stdin.flush()
        answer = self._proc.stdout.readline().rstrip("\n")
        if not answer:
            raise GitHistoryError(f"git check-mailmap stopped while resolving {contact!r} in {self._repo}")
        return answer if _CONTACT.match(answer) else contact

    def close(self) -> None:
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                pipe.close() if pipe else None
            self._proc.wait()
            self._proc = None


def _split(people: _People, trailers: Iterable[tuple[str, str]], keys: tuple[str, ...]) -> list[str]:
    return [people.contact(value) for key, value in trailers if key in keys]


def _clean(ids: Iterable[str], author: str) -> tuple[str, ...]:
    """Distinct ids in first-seen order, without the author and without empty names."""
    return tuple(p for p in dict.fromkeys(ids) if p and p != author)


def _changes(
    repo: Path, window: list[str], mrs: Mapping[str, _MrInfo], members: Mapping[str, str], max_files: int,
    cut: frozenset[str] = frozenset(),
) -> Iterator[Change]:
    """Turn the streamed commits into changes, folding each MR's commits into its merge; the commits at a
    shallow clone's `cut` are left out, as what they changed is not known."""
    people = _People(repo)
    pending: dict[str, _MrParts] = {}
    try:
        for commit in _git_log(repo, _log_command(window, with_merges=bool(mrs))):
            if commit.sha in cut:
                continue
            if commit.sha in members:
                _gather(pending.setdefault(members[commit.sha], _MrParts()), commit, people)
            elif commit.sha in mrs:
                yield _mr_change(commit, mrs[commit.sha], pending.pop(commit.sha, _MrParts()), people, max_files)
            elif len(commit.parents) <= 1:
                yield _commit_change(commit, people, max_files)
    finally:
        people.close()


def _gather(parts: _MrParts, commit: _Commit, people: _People) -> None:
    author = people.ident(*commit.author)
    parts.authors[author] += 1
    if is_bot_identity(*commit.author):
        parts.bots.add(author)
    parts.reviewers += _split(people, commit.trailers, REVIEW_KEYS)
    parts.ackers += _split(people, commit.trailers, ACK_KEYS)
    parts.commits += 1


def _extra(commit: _Commit, kind: str, **more: object) -> dict[str, object]:
    return {"kind": kind, "n_files": len(commit.files), "insertions": commit.insertions,
            "deletions": commit.deletions, **more}


def _kept(commit: _Commit, max_files: int) -> tuple[tuple[str, str], ...]:
    """The renames of the files kept (the first `max_files`)."""
    kept = set(commit.files[:max_files])
    return tuple(pair for pair in commit.renames if pair[1] in kept)


def _commit_change(commit: _Commit, people: _People, max_files: int) -> Change:
    author = people.ident(*commit.author)
    return Change(
        id=commit.sha, time=commit.time, author=author,
        reviewers=_clean(_split(people, commit.trailers, REVIEW_KEYS), author),
        files=commit.files[:max_files], title=commit.subject, renames=_kept(commit, max_files),
        ackers=_clean(_split(people, commit.trailers, ACK_KEYS), author),
        committer=people.ident(*commit.committer), bot_author=is_bot_identity(*commit.author),
        extra=_extra(commit, "commit"),
    )


def _mr_change(commit: _Commit, info: _MrInfo, parts: _MrParts, people: _People, max_files: int) -> Change:
    """One MR: the merge's diff and approvals, credited to the main author of the commits it merged.

    The merge commit's author is the person who pressed "Merge" (its committer is GitLab itself).
    """
    if parts.authors:
        author, bot = parts.authors.most_common(1)[0][0], None
    else:
        author, bot = people.ident(*commit.author), is_bot_identity(*commit.author)
    reviewers = _split(people, commit.trailers, REVIEW_KEYS) + parts.reviewers
    ackers = _split(people, commit.trailers, ACK_KEYS) + parts.ackers
    return Change(
        id=commit.sha, time=commit.time, author=author, reviewers=_clean(reviewers, author),
        files=commit.files[:max_files], title=info.title or commit.subject, ackers=_clean(ackers, author),
        renames=_kept(commit, max_files),
        committer=people.ident(*commit.author), bot_author=author in parts.bots if bot is None else bot,
        extra=_extra(commit, "mr", mr=info.ref, commits=parts.commits,
                     mergers=_clean(_split(people, commit.trailers, MERGER_KEYS), "")),
    )

