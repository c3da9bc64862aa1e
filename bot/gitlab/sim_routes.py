"""REST v4 endpoints of the GitLab simulator: one small handler per route, GitLab's status codes and bodies.

Handlers read `request.app[STATE]`, the authenticated `request[CALLER]` and the merged `request[PARAMS]`
(both set by the middleware in simulator.py) and raise `ApiError` for GitLab's error bodies.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from aiohttp import web

from bot.gitlab import sim_render as render
from bot.gitlab.sim_approvals import approval_settings_json, approval_state_json
from bot.gitlab.sim_http import (
    ANY_SCOPE, PUBLIC, ApiError, bool_param, id_list, int_param, json_response, paginate, request_token, time_param,
)
from bot.gitlab.sim_model import SimGroup, SimMR, SimNote, SimProject, SimUser
from bot.gitlab.sim_state import SimState

__all__ = ["STATE", "CALLER", "PARAMS", "add_routes", "Handler", "since", "added_in", "ee_only", "enterprise"]

STATE = web.AppKey("gitlab_sim_state", SimState)


def _request_key(name: str, kind: type) -> Any:
    """A typed request-storage key (aiohttp >= 3.12 warns on plain strings); a string on older aiohttp."""
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory is not None else name


CALLER = _request_key("gitlab_sim_caller", SimUser)
PARAMS = _request_key("gitlab_sim_params", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ORDERS = ("created_at", "updated_at", "merged_at", "title")


def public(handler: Handler) -> Handler:
    """Mark an endpoint that answers without a token (like GitLab's user status)."""
    setattr(handler, PUBLIC, True)
    return handler


def any_scope(handler: Handler) -> Handler:
    """Mark an endpoint every token may call whatever its scopes (one that describes the token itself)."""
    setattr(handler, ANY_SCOPE, True)
    return handler


_SINCE = "gitlab_sim_since"


def since(major: int, minor: int) -> Callable[[Handler], Handler]:
    """Mark an endpoint GitLab added in version `major.minor`: an older `state.version` answers it with the
    catch-all route's 404 `{"error":"404 Not Found"}`, as that GitLab would."""
    def mark(handler: Handler) -> Handler:
        setattr(handler, _SINCE, (major, minor))
        return handler
    return mark


def added_in(handler: Handler) -> tuple[int, int]:
    """The GitLab version that added the endpoint (`since`); (0, 0) for those every supported version has."""
    return getattr(handler, _SINCE, (0, 0))


_EE = "gitlab_sim_ee_only"


def ee_only(handler: Handler) -> Handler:
    """Mark an endpoint of GitLab's Enterprise Edition (any tier): the Community Edition
    (`state.community_edition`) answers it with the catch-all route's 404 `{"error":"404 Not Found"}`."""
    setattr(handler, _EE, True)
    return handler


def enterprise(handler: Handler) -> bool:
    """Whether only the Enterprise Edition has the endpoint (`ee_only`)."""
    return getattr(handler, _EE, False)


def _state(request: web.Request) -> SimState:
    return request.app[STATE]


def _caller(request: web.Request) -> SimUser:
    return request[CALLER]


def _project(request: web.Request) -> SimProject:
    """The `:id` project; private projects the caller is not a member of look absent, as in GitLab."""
    state, caller = _state(request), request.get(CALLER)
    project = state.find_project(request.match_info["pid"])
    visible = project is not None and (project.visibility != "private" or caller is not None and (
        caller.id == state.root.id or state.access_level(project, caller.id) > 0))
    if project is None or not visible:
        raise ApiError(404, message="404 Project Not Found")
    return project


def _mr(request: web.Request, project: SimProject) -> SimMR:
    iid = int_param(dict(request.match_info), "iid")
    if iid not in project.mrs:
        raise ApiError(404, message="404 Merge Request Not Found")
    return project.mrs[iid]


def _note(request: web.Request, mr: SimMR) -> SimNote:
    nid = int_param(dict(request.match_info), "nid")
    note = next((n for n in mr.notes if n.id == nid), None)
    if note is None:
        raise ApiError(404, message="404 Note Not Found")
    return note


def _require(state: SimState, project: SimProject, caller: SimUser, level: int) -> None:
    if caller.id != state.root.id and state.access_level(project, caller.id) < level:
        raise ApiError(403, message="403 Forbidden")


def _writable(project: SimProject) -> None:
    """An archived project is read-only: GitLab's ProjectPolicy prevents creating and updating notes, merge
    requests and award emoji there, for every role (`ArchivedAbilities`), and the API answers 403."""
    if project.archived:
        raise ApiError(403, message="403 Forbidden")


def _may_comment(state: SimState, project: SimProject, caller: SimUser) -> None:
    """GitLab's `create_note` on a merge request: whoever may read it (anyone signed in on a public or internal
    project, a Guest's `guest_access`; Reporter and above on a private one, else 404 as for an MR not seen),
    on a project that is not archived (403)."""
    if caller.id != state.root.id and not state.can_read(project, caller.id):
        raise ApiError(404, message="404 Merge Request Not Found")
    _writable(project)


# --- users ----------------------------------------------------------------------------------------------------
async def get_current_user(request: web.Request) -> web.Response:
    return json_response(render.user_full(_state(request).web, _caller(request)))


async def get_user(request: web.Request) -> web.Response:
    state = _state(request)
    user = state.find_user(request.match_info["uid"])
    if user is None:
        raise ApiError(404, message="404 User Not Found")
    return json_response(render.user_full(state.web, user))


@public
async def get_user_status(request: web.Request) -> web.Response:
    user = _state(request).find_user(request.match_info["uid"])
    if user is None:
        raise ApiError(404, message="404 User Not Found")
    return json_response(render.status_json(user))


def _search_hit(user: SimUser, query: str, admin: bool) -> bool:
    """GitLab's user search: an address matches the public email exactly (any email for an admin), other
    text part of the name or username."""
    folded = query.casefold()
    if "@" in folded:
        emails = {user.public_email or ""} | ({user.email} if admin else set())
        return folded in {e.casefold() for e in emails if e}
    return folded in user.username.casefold() or folded in user.name.casefold()


async def list_users(request: web.Request) -> web.Response:
    """GET /users with `search` or `username` (regular callers see only public emails, and no email field)."""
    state, caller, params = _state(request), _caller(request), request[PARAMS]
    admin = caller.id == state.root.id
    users = sorted(state.users.values(), key=lambda u: u.id)
    if params.get("username"):
        users = [u for u in users if u.username.casefold() == str(params["username"]).casefold()]
    if params.get("search"):
        users = [u for u in users if _search_hit(u, str(params["search"]), admin)]
    return paginate(request, [render.user_listed(state.web, u, admin=admin) for u in users])


@since(15, 1)
@any_scope
async def get_token_self(request: web.Request) -> web.Response:
    """GET /personal_access_tokens/self (15.5+), for any token whatever its scopes; 15.1 to 15.4 only have
    /personal_access_tokens/:id, which looks for a token whose id is "self" and answers 401."""
    state = _state(request)
    if state.version < (15, 5):
        raise ApiError(401, message="401 Unauthorized")
    return json_response(render.token_json(state.tokens[request_token(request) or ""]))


# --- groups ---------------------------------------------------------------------------------------------------
def _group(request: web.Request) -> SimGroup:
    """The `:id` group (numeric id or URL-encoded full path); private groups the caller cannot see look absent."""
    state = _state(request)
    group = state.find_group(request.match_info["gid"])
    if group is None or not state.can_see_group(group, request.get(CALLER)):
        raise ApiError(404, message="404 Group Not Found")
    return group


async def get_group(request: web.Request) -> web.Response:
    return json_response(render.group_json(_state(request).web, _group(request)))


def _member_rows(state: SimState, levels: dict[int, int], since: datetime,
                 awaiting: set[int]) -> list[dict[str, Any]]:
    return [render.member(state.web, state.users[uid], level, state.root, since, uid in awaiting)
            for uid, level in sorted(levels.items())]


async def list_group_members(request: web.Request) -> web.Response:
    """GET /groups/:id/members: the direct members."""
    state, group = _state(request), _group(request)
    rows = _member_rows(state, group.members, group.created_at, group.awaiting)
    return paginate(request, _filter_members(rows, request[PARAMS]))


async def list_group_members_all(request: web.Request) -> web.Response:
    """GET /groups/:id/members/all: direct members and those inherited from ancestor groups, highest level."""
    state, group = _state(request), _group(request)
    awaiting = set().union(*(g.awaiting for g in state.group_ancestors(group)))
    rows = _member_rows(state, state.group_members_all(group), group.created_at, awaiting)
    return paginate(request, _filter_members(rows, request[PARAMS]))


# --- projects and members -------------------------------------------------------------------------------------
async def get_project(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    shared = [(state.groups[gid], level) for gid, level in project.shared_groups.items()]
    return json_response(render.project_json(state.web, project, state.project_group(project), shared))


def _members(state: SimState, project: SimProject, inherited: bool = True) -> list[dict[str, Any]]:
    levels = state.effective_members(project) if inherited else project.members
    awaiting = state.awaiting_members(project) if inherited else project.awaiting
    return _member_rows(state, levels, project.created_at, awaiting)


def _filter_members(rows: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    query = str(params.get("query") or "").lower()
    if query:
        rows = [m for m in rows if query in m["username"].lower() or query in m["name"].lower()]
    if "user_ids" in params:
        wanted = set(id_list(params["user_ids"]))
        rows = [m for m in rows if m["id"] in wanted]
    return rows


async def list_members(request: web.Request) -> web.Response:
    """GET /projects/:id/members: the direct members."""
    state, project = _state(request), _project(request)
    return paginate(request, _filter_members(_members(state, project, inherited=False), request[PARAMS]))


async def list_members_all(request: web.Request) -> web.Response:
    """GET /projects/:id/members/all: also members inherited from its groups and the groups it is shared with."""
    state, project = _state(request), _project(request)
    return paginate(request, _filter_members(_members(state, project), request[PARAMS]))


async def get_member(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    uid = int_param(dict(request.match_info), "uid")
    row = next((m for m in _members(state, project) if m["id"] == uid), None)
    if row is None:
        raise ApiError(404, message="404 Member Not Found")
    return json_response(row)


# --- merge requests -------------------------------------------------------------------------------------------
def _matches(state: SimState, mr: SimMR, params: dict[str, Any]) -> bool:
    """GitLab's MR list filters: state, reviewer, author, labels and time windows."""
    wanted_state = params.get("state", "all")
    if wanted_state != "all" and mr.state != wanted_state:
        return False
    reviewer = params.get("reviewer_id")
    if reviewer in ("None", "none") and mr.reviewer_ids or reviewer in ("Any", "any") and not mr.reviewer_ids:
        return False
    if reviewer not in (None, "None", "none", "Any", "any") and int_param(params, "reviewer_id") not in mr.reviewer_ids:
        return False
    named = params.get("reviewer_username")
    if named and all(state.users[u].username != named for u in mr.reviewer_ids):
        return False
    if params.get("author_id") and int_param(params, "author_id") != mr.author_id:
        return False
    if params.get("author_username") and state.users[mr.author_id].username != params["author_username"]:
        return False
    labels = [x for x in str(params.get("labels") or "").split(",") if x]
    return all(x in mr.labels for x in labels) and _in_windows(mr, params)


def _in_windows(mr: SimMR, params: dict[str, Any]) -> bool:
    checks = (("updated_after", mr.updated_at, 1), ("updated_before", mr.updated_at, -1),
              ("created_after", mr.created_at, 1), ("created_before", mr.created_at, -1))
    for name, value, sign in checks:
        bound = time_param(params, name)
        if bound is not None and (value < bound if sign > 0 else value > bound):
            return False
    return True


def _sort_key(order_by: str) -> Callable[[SimMR], Any]:
    floor = datetime.min.replace(tzinfo=timezone.utc)
    if order_by == "title":
        return lambda mr: (mr.title, mr.id)
    return lambda mr: (getattr(mr, order_by) or floor, mr.id)


async def list_mrs(request: web.Request) -> web.Response:
    """A project's merge requests; 403 for a caller who sees the project but not its merge requests (a Guest of
    a private project), as GitLab's `authorize_read_merge_requests!` answers."""
    state, project, params = _state(request), _project(request), request[PARAMS]
    caller = request[CALLER]
    if caller.id != state.root.id and not state.can_read(project, caller.id):
        raise ApiError(403, message="403 Forbidden")
    order_by, sort = params.get("order_by", "created_at"), params.get("sort", "desc")
    if order_by not in _ORDERS or sort not in ("asc", "desc"):
        raise ApiError(400, error="order_by, sort does not have a valid value")
    mrs = sorted((mr for mr in project.mrs.values() if _matches(state, mr, params)),
                 key=_sort_key(order_by), reverse=sort == "desc")
    return paginate(request, [_mr_json(state, project, mr, full=False) for mr in mrs])


def _mr_json(state: SimState, project: SimProject, mr: SimMR, *, full: bool = True) -> dict[str, Any]:
    """An MR as this GitLab version shows it: before 14.7 its merger is `merged_by` alone (no `merge_user`)."""
    data = render.mr_json(state.web, project, mr, state.users, full=full, diff_cap=state.diff_max_files)
    if state.version < (14, 7):
        del data["merge_user"]
    return data


async def get_mr(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    return json_response(_mr_json(state, project, _mr(request, project)))


def _labels(mr: SimMR, params: dict[str, Any]) -> list[str] | None:
    split = lambda v: [x.strip() for x in (v if isinstance(v, list) else str(v).split(",")) if x.strip()]  # noqa
    if "labels" not in params and "add_labels" not in params and "remove_labels" not in params:
        return None
    labels = split(params["labels"]) if "labels" in params else list(mr.labels)
    labels += [x for x in split(params.get("add_labels", "")) if x not in labels]
    return [x for x in labels if x not in split(params.get("remove_labels", ""))]


async def put_mr(request: web.Request) -> web.Response:
    """PUT .../merge_requests/:iid: reviewer_ids replaces the set, filtered like GitLab (Free tier keeps one)."""
    state, project, caller, params = _state(request), _project(request), _caller(request), request[PARAMS]
    mr = _mr(request, project)
    if caller.id != mr.author_id:
        _require(state, project, caller, 30)
    _writable(project)
    event = params.get("state_event")
    if event == "close" and mr.state == "opened":
        state.close_mr(mr, by=caller)
    elif event == "reopen" and mr.state == "closed":
        state.reopen_mr(mr, by=caller)
    reviewers = None
    if "reviewer_ids" in params:
        reviewers = state.filter_reviewer_ids(project, id_list(params["reviewer_ids"]), caller)
    assignees = id_list(params["assignee_ids"]) if "assignee_ids" in params else None
    state.update_mr(mr, by=caller, title=params.get("title"), description=params.get("description"),
                    labels=_labels(mr, params), reviewer_ids=reviewers,
                    assignee_ids=[a for a in assignees if a in state.users] if assignees is not None else None)
    return json_response(_mr_json(state, project, mr))


@since(15, 7)
async def list_diffs(request: web.Request) -> web.Response:
    """GET .../diffs: the files of the MR's diff, which GitLab stores only up to its limit (`diff_max_files`)."""
    state, mr = _state(request), _mr(request, _project(request))
    return paginate(request, [render.diff_json(d) for d in mr.diffs[:state.diff_max_files]])


async def get_changes(request: web.Request) -> web.Response:
    """The deprecated GET .../changes: the MR with its diffs up to the limit, `overflow` true past it."""
    state, project = _state(request), _project(request)
    mr = _mr(request, project)
    data = _mr_json(state, project, mr)
    data.update({"changes": [render.diff_json(d) for d in mr.diffs[:state.diff_max_files]],
                 "overflow": len(mr.diffs) > state.diff_max_files})
    return json_response(data)


async def get_approvals(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    mr = _mr(request, project)
    return json_response(render.approvals_json(state.web, project, mr, state.users, _caller(request).id))


@ee_only
async def get_approval_state(request: web.Request) -> web.Response:
    """GET .../approval_state: the rules that apply to the merge request and who approved each (Premium)."""
    state, project = _state(request), _project(request)
    return json_response(approval_state_json(state, _mr(request, project)))


async def list_mr_commits(request: web.Request) -> web.Response:
    """GET .../merge_requests/:iid/commits: the commits of its branch, newest first, paginated."""
    state, project = _state(request), _project(request)
    mr = _mr(request, project)
    return paginate(request, [render.commit_json(state.web, project, c) for c in reversed(mr.commits)])


@ee_only
async def get_project_approvals(request: web.Request) -> web.Response:
    """GET /projects/:id/approvals: the project's approval settings (Enterprise Edition)."""
    state, project = _state(request), _project(request)
    return json_response(approval_settings_json(state, project))


async def get_reviewers(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    return json_response(render.reviewer_detail_json(state.web, _mr(request, project), state.users))


# --- notes and award emoji ------------------------------------------------------------------------------------
async def list_notes(request: web.Request) -> web.Response:
    state, project, params = _state(request), _project(request), request[PARAMS]
    mr = _mr(request, project)
    order_by = params.get("order_by", "created_at")
    notes = sorted(mr.notes, key=lambda n: (getattr(n, order_by, n.created_at), n.id),
                   reverse=params.get("sort", "desc") == "desc")
    return paginate(request, [render.note_json(state.web, n, state.users) for n in notes])


NOTE_LIMIT = 1_000_000  # characters: GitLab refuses a longer note (Note validates `note` this long at most)


def _body(params: dict[str, Any]) -> str:
    body = params.get("body")
    if not isinstance(body, str) or not body:
        raise ApiError(400, error="body is missing")
    if len(body) > NOTE_LIMIT:
        raise ApiError(400, message={"note": [f"is too long (maximum is {NOTE_LIMIT} characters)"]})
    return body


async def create_note(request: web.Request) -> web.Response:
    """POST .../notes: 201 with the note, or 202 when the note held only quick actions."""
    state, project, caller, params = _state(request), _project(request), _caller(request), request[PARAMS]
    mr = _mr(request, project)
    _may_comment(state, project, caller)
    result = state.api_create_note(mr, caller, _body(params), bool_param(params, "internal", False))
    if isinstance(result, dict):
        return json_response(result, status=202)
    return json_response(render.note_json(state.web, result, state.users), status=201)


async def get_note(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    note = _note(request, _mr(request, project))
    return json_response(render.note_json(state.web, note, state.users))


async def put_note(request: web.Request) -> web.Response:
    """PUT .../notes/:note_id: only the note's author may edit it."""
    state, project, caller = _state(request), _project(request), _caller(request)
    note = _note(request, _mr(request, project))
    if note.author_id != caller.id:
        raise ApiError(403, message="403 Forbidden")
    _writable(project)
    state.edit_note(note, _body(request[PARAMS]))
    return json_response(render.note_json(state.web, note, state.users))


def _discussion(request: web.Request, mr: SimMR) -> list[SimNote]:
    notes = _state(request).discussion(mr, request.match_info["did"])
    if not notes:
        raise ApiError(404, message="404 Discussion Not Found")
    return notes


async def get_discussion(request: web.Request) -> web.Response:
    """GET .../discussions/:discussion_id: the discussion's id and its notes."""
    state, project = _state(request), _project(request)
    notes = _discussion(request, _mr(request, project))
    return json_response(render.discussion_json(state.web, notes[0].discussion_id, notes, state.users))


async def reply_in_discussion(request: web.Request) -> web.Response:
    """POST .../discussions/:discussion_id/notes: a reply in the discussion (`body`)."""
    state, project, caller = _state(request), _project(request), _caller(request)
    mr = _mr(request, project)
    _may_comment(state, project, caller)
    first = _discussion(request, mr)[0]
    note = state.add_note(mr, caller, _body(request[PARAMS]), reply_to=first, internal=first.internal)
    return json_response(render.note_json(state.web, note, state.users), status=201)


def _awardable(request: web.Request) -> SimMR | SimNote:
    mr = _mr(request, _project(request))
    return _note(request, mr) if "nid" in request.match_info else mr


async def list_awards(request: web.Request) -> web.Response:
    state = _state(request)
    return paginate(request, [render.award_json(state.web, a, state.users) for a in _awardable(request).awards])


async def create_award(request: web.Request) -> web.Response:
    state, caller, params = _state(request), _caller(request), request[PARAMS]
    target, name = _awardable(request), params.get("name")
    _writable(_project(request))
    if not name:
        raise ApiError(400, error="name is missing")
    if any(a.name == name and a.user_id == caller.id for a in target.awards):
        raise ApiError(404, message="404 Award Emoji Name has already been taken")
    award = state.award(target, caller, str(name))
    return json_response(render.award_json(state.web, award, state.users), status=201)


# --- repository files -----------------------------------------------------------------------------------------
def _file(request: web.Request) -> tuple[str, bytes]:
    project = _project(request)
    ref = _resolved(project, request.query.get("ref") or project.default_branch)
    path = request.match_info["path"]
    if (ref, path) not in project.files:
        raise ApiError(404, message="404 File Not Found")
    content = project.files[(ref, path)]
    return path, content.encode() if isinstance(content, str) else content


def _resolved(project: SimProject, ref: str) -> str:
    """The key files are stored under for `ref`, resolved as git resolves a name: `refs/heads/x` is branch `x`;
    a bare name is the tag of that name if there is one (files stored on `refs/tags/x`), else the branch."""
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    tag = f"refs/tags/{ref}"
    return tag if any(stored == tag for stored, _ in project.files) else ref


# Go's `http.DetectContentType` (which Workhorse asks for a raw file's type) takes a file for binary when one of
# its first 512 bytes is one of these, unless a byte order mark starts it
_BINARY_BYTES = frozenset(range(0x09)) | {0x0B} | frozenset(range(0x0E, 0x1B)) | frozenset(range(0x1C, 0x20))
_BOMS = (b"\xfe\xff", b"\xff\xfe", b"\xef\xbb\xbf")


async def get_file_raw(request: web.Request) -> web.Response:
    """The file's bytes as Workhorse serves them: `text/plain; charset=utf-8` for whatever Go takes for text
    (Latin-1 and UTF-16 files too), `application/octet-stream` for the rest."""
    _, content = _file(request)
    binary = not content.startswith(_BOMS) and not _BINARY_BYTES.isdisjoint(content[:512])
    if binary:
        return web.Response(body=content, content_type="application/octet-stream")
    return web.Response(body=content, content_type="text/plain", charset="utf-8")


async def get_file(request: web.Request) -> web.Response:
    path, raw = _file(request)
    return json_response({
        "file_name": path.rsplit("/", 1)[-1], "file_path": path, "size": len(raw), "encoding": "base64",
        "content": base64.b64encode(raw).decode(), "ref": request.query.get("ref", ""),
    })


# --- protected branches ---------------------------------------------------------------------------------------
async def list_protected_branches(request: web.Request) -> web.Response:
    """GET /projects/:id/protected_branches: as defined (a wildcard as written), `search` a part of the name.
    Reading them needs access to the code (Reporter; older GitLab versions asked Maintainer)."""
    state, project, params = _state(request), _project(request), request[PARAMS]
    _require(state, project, _caller(request), 20)
    search = str(params.get("search") or "")
    rows = [render.protected_branch_json(b, free_tier=state.free_tier) for b in project.protected_branches
            if search in b.name]
    return paginate(request, rows)


async def get_protected_branch(request: web.Request) -> web.Response:
    """GET /projects/:id/protected_branches/:name: one protection by its exact name (or wildcard)."""
    state, project = _state(request), _project(request)
    _require(state, project, _caller(request), 20)
    name = request.match_info["name"]
    found = next((b for b in project.protected_branches if b.name == name), None)
    if found is None:
        raise ApiError(404, message="404 Not found")
    return json_response(render.protected_branch_json(found, free_tier=state.free_tier))


# --- hooks ----------------------------------------------------------------------------------------------------
async def list_hooks(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    _require(state, project, _caller(request), 40)
    return paginate(request, [render.hook_json(h) for h in project.hooks])


async def create_hook(request: web.Request) -> web.Response:
    """POST /projects/:id/hooks (Maintainer+); `push_events` defaults to true as in GitLab."""
    state, project, params = _state(request), _project(request), request[PARAMS]
    _require(state, project, _caller(request), 40)
    if not params.get("url"):
        raise ApiError(400, error="url is missing")
    flags = {name: bool_param(params, name, default) for name, default in (
        ("push_events", True), ("merge_requests_events", False), ("note_events", False),
        ("emoji_events", False), ("confidential_note_events", False))}
    hook = state.add_hook(project, str(params["url"]), token=params.get("token") or None,
                          name=str(params.get("name") or ""), **flags)
    hook.enable_ssl_verification = bool_param(params, "enable_ssl_verification", True)
    return json_response(render.hook_json(hook), status=201)


def _hook(request: web.Request, project: SimProject) -> Any:
    hid = int_param(dict(request.match_info), "hid")
    hook = next((h for h in project.hooks if h.id == hid), None)
    if hook is None:
        raise ApiError(404, message="404 Not found")
    return hook


async def get_hook(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    _require(state, project, _caller(request), 40)
    return json_response(render.hook_json(_hook(request, project)))


_HOOK_FLAGS = ("push_events", "merge_requests_events", "note_events", "emoji_events", "confidential_note_events",
               "enable_ssl_verification")


async def put_hook(request: web.Request) -> web.Response:
    """PUT /projects/:id/hooks/:hook_id (Maintainer+): change only the attributes given, as GitLab does.

    Like GitLab, a new URL without a new `token` clears the old secret (it must not follow the hook elsewhere).
    """
    state, project, params = _state(request), _project(request), request[PARAMS]
    _require(state, project, _caller(request), 40)
    hook = _hook(request, project)
    if "url" in params and not params["url"]:
        raise ApiError(400, error="url is empty")
    if params.get("url") and str(params["url"]) != hook.url and not params.get("token"):
        hook.token = None
    for name in ("url", "name", "description"):
        if name in params:
            setattr(hook, name, str(params[name] or ""))
    for name in _HOOK_FLAGS:
        if name in params:
            setattr(hook, name, bool_param(params, name, False))
    if params.get("token"):
        hook.token = str(params["token"])
    return json_response(render.hook_json(hook))


async def delete_hook(request: web.Request) -> web.Response:
    state, project = _state(request), _project(request)
    _require(state, project, _caller(request), 40)
    project.hooks.remove(_hook(request, project))
    return web.Response(status=204)


# --- OAuth 2.0 provider (sim_oauth.py) ----------------------------------------------------------------------
def _oauth_answer(answer: Any) -> web.Response:
    if answer.location is not None:
        return web.Response(status=answer.status, headers={"Location": answer.location})
    if answer.page is not None:
        return web.Response(status=answer.status, text=answer.page, content_type="text/html")
    return json_response(answer.body, status=answer.status)


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    """The client's id and secret from HTTP Basic (the other way RFC 6749 lets a client authenticate)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


@public
async def oauth_authorize(request: web.Request) -> web.Response:
    return _oauth_answer(_state(request).oauth_authorize(request[PARAMS]))


@public
async def oauth_token(request: web.Request) -> web.Response:
    return _oauth_answer(_state(request).oauth_token(request[PARAMS], _basic_auth(request)))


@public
async def oauth_revoke(request: web.Request) -> web.Response:
    return _oauth_answer(_state(request).oauth_revoke(request[PARAMS], _basic_auth(request)))


_MR = "/api/v4/projects/{pid}/merge_requests/{iid}"
ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/oauth/authorize", oauth_authorize),
    ("POST", "/oauth/token", oauth_token),
    ("POST", "/oauth/revoke", oauth_revoke),
    ("GET", "/api/v4/user", get_current_user),
    ("GET", "/api/v4/users", list_users),
    ("GET", "/api/v4/users/{uid}", get_user),
    ("GET", "/api/v4/users/{uid}/status", get_user_status),
    ("GET", "/api/v4/personal_access_tokens/self", get_token_self),
    ("GET", "/api/v4/groups/{gid}", get_group),
    ("GET", "/api/v4/groups/{gid}/members", list_group_members),
    ("GET", "/api/v4/groups/{gid}/members/all", list_group_members_all),
    ("GET", "/api/v4/projects/{pid}", get_project),
    ("GET", "/api/v4/projects/{pid}/members", list_members),
    ("GET", "/api/v4/projects/{pid}/members/all", list_members_all),
    ("GET", "/api/v4/projects/{pid}/members/all/{uid}", get_member),
    ("GET", "/api/v4/projects/{pid}/merge_requests", list_mrs),
    ("GET", _MR, get_mr),
    ("PUT", _MR, put_mr),
    ("GET", _MR + "/diffs", list_diffs),
    ("GET", _MR + "/changes", get_changes),
    ("GET", _MR + "/approvals", get_approvals),
    ("GET", _MR + "/approval_state", get_approval_state),
    ("GET", _MR + "/commits", list_mr_commits),
    ("GET", "/api/v4/projects/{pid}/approvals", get_project_approvals),
    ("GET", _MR + "/reviewers", get_reviewers),
    ("GET", _MR + "/notes", list_notes),
    ("POST", _MR + "/notes", create_note),
    ("GET", _MR + "/notes/{nid}", get_note),
    ("PUT", _MR + "/notes/{nid}", put_note),
    ("GET", _MR + "/discussions/{did}", get_discussion),
    ("POST", _MR + "/discussions/{did}/notes", reply_in_discussion),
    ("GET", _MR + "/notes/{nid}/award_emoji", list_awards),
    ("POST", _MR + "/notes/{nid}/award_emoji", create_award),
    ("GET", _MR + "/award_emoji", list_awards),
    ("POST", _MR + "/award_emoji", create_award),
    ("GET", "/api/v4/projects/{pid}/repository/files/{path}/raw", get_file_raw),
    ("GET", "/api/v4/projects/{pid}/repository/files/{path}", get_file),
    ("GET", "/api/v4/projects/{pid}/protected_branches", list_protected_branches),
    ("GET", "/api/v4/projects/{pid}/protected_branches/{name}", get_protected_branch),
    ("GET", "/api/v4/projects/{pid}/hooks", list_hooks),
    ("POST", "/api/v4/projects/{pid}/hooks", create_hook),
    ("GET", "/api/v4/projects/{pid}/hooks/{hid}", get_hook),
    ("PUT", "/api/v4/projects/{pid}/hooks/{hid}", put_hook),
    ("DELETE", "/api/v4/projects/{pid}/hooks/{hid}", delete_hook),
)


def add_routes(app: web.Application, root_path: str = "") -> None:
    """Every route, under `root_path` (GitLab's relative_url_root, e.g. "/gitlab"; "" at the host's root)."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, root_path + path, handler)
