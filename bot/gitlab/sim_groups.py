"""Groups of the simulated GitLab: subgroups, group members, projects shared with groups, and who that makes a
member of a project.

GitLab's rules, as the REST API shows them: a group's `members/all` lists its direct members and those of
every ancestor group, each once at their highest level; a project's `members/all` adds to its direct members
the members of its namespace group (and that group's ancestors) and of the groups it is shared with, the
latter capped at the access the share grants. Groups are found by id or by full path, case-insensitively.
Mixed into `SimState` like `MRActions`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from bot.gitlab.sim_model import SimGroup, SimProject, SimUser

if TYPE_CHECKING:
    from bot.gitlab.sim_state import ProjectRef, SimState, UserRef

__all__ = ["GroupActions", "GroupRef"]

GroupRef = SimGroup | str | int


def _highest(into: dict[int, int], members: Iterable[tuple[int, int]], cap: int | None = None) -> None:
    for uid, level in members:
        level = level if cap is None else min(level, cap)
        if level > into.get(uid, 0):
            into[uid] = level


class GroupActions:
    """Group helpers mixed into `SimState` (which holds `groups`)."""

    def add_group(self: SimState, full_path: str, name: str | None = None, *,
                  visibility: str = "private") -> SimGroup:
        """Create a group; missing parent groups of `a/b/c` are created too (private, no members)."""
        found = self.find_group(full_path)
        if found is not None:
            return found
        parent = self.add_group(full_path.rsplit("/", 1)[0]) if "/" in full_path else None
        label = name or full_path.rsplit("/", 1)[-1].replace("-", " ").title()
        group = SimGroup(next(self._ids["group"]), full_path, label, self.now(),
                         parent_id=parent.id if parent else None, visibility=visibility)
        self.groups[group.id] = group
        return group

    def group(self: SimState, ref: GroupRef) -> SimGroup:
        """A group by object, id or full path; KeyError names what is missing."""
        found = ref if isinstance(ref, SimGroup) else self.find_group(str(ref))
        if found is None:
            raise KeyError(f"no simulated group {ref!r}; add it with state.add_group({ref!r})")
        return found

    def find_group(self: SimState, ref: str) -> SimGroup | None:
        """A group by the API's `:id` (numeric id or full path, any case), or None."""
        if ref.isdigit():
            return self.groups.get(int(ref))
        folded = ref.casefold()
        return next((g for g in self.groups.values() if g.full_path.casefold() == folded), None)

    def add_group_member(self: SimState, group: GroupRef, user: UserRef, access_level: int = 30) -> None:
        self.group(group).members[self.user(user).id] = access_level

    def share_project(self: SimState, project: ProjectRef, group: GroupRef, group_access: int = 30) -> None:
        """Invite `group` to `project` (what POST /projects/:id/share does): its members get at most
        `group_access` there."""
        self.project(project).shared_groups[self.group(group).id] = group_access

    def group_ancestors(self: SimState, group: SimGroup) -> list[SimGroup]:
        """The group itself, then its parent, up to the top-level group."""
        chain = [group]
        while chain[-1].parent_id is not None:
            chain.append(self.groups[chain[-1].parent_id])
        return chain

    def group_members_all(self: SimState, group: SimGroup) -> dict[int, int]:
        """Direct and inherited members (from ancestor groups) at their highest level."""
        levels: dict[int, int] = {}
        for ancestor in self.group_ancestors(group):
            _highest(levels, ancestor.members.items())
        return levels

    def project_group(self: SimState, project: SimProject) -> SimGroup | None:
        """The group the project lives in, when the simulator has one at its namespace path."""
        return self.find_group(project.namespace) if self.groups else None

    def effective_members(self: SimState, project: SimProject) -> dict[int, int]:
        """Everyone with access to `project`, at their highest level (what `members/all` lists)."""
        if not self.groups:
            return project.members
        levels = dict(project.members)
        home = self.project_group(project)
        if home is not None:
            _highest(levels, self.group_members_all(home).items())
        for gid, cap in project.shared_groups.items():
            _highest(levels, self.group_members_all(self.groups[gid]).items(), cap)
        return levels

    def await_seat(self: SimState, where: SimProject | SimGroup, user: UserRef, awaiting: bool = True) -> None:
        """Hold (or let in) a member of `where` as GitLab does past a namespace's seat limit or user cap: listed
        with `membership_state` "awaiting", without access until an Owner approves them."""
        uid = self.user(user).id
        (where.awaiting.add if awaiting else where.awaiting.discard)(uid)

    def awaiting_members(self: SimState, project: SimProject) -> set[int]:
        """Who `members/all` lists as awaiting: held in the project or in a group it takes members from."""
        ids = set(project.awaiting)
        home = self.project_group(project)
        linked = [self.groups[gid] for gid in project.shared_groups] + ([home] if home else [])
        for group in linked:
            for ancestor in self.group_ancestors(group):
                ids |= ancestor.awaiting
        return ids

    def can_see_group(self: SimState, group: SimGroup, caller: SimUser | None) -> bool:
        """Private groups are visible to the admin, to their (inherited) members, and to members of projects
        the group or a descendant of it belongs to or is shared with."""
        if group.visibility == "public" or caller is not None and caller.id == self.root.id:
            return True
        if caller is None:
            return False
        if group.visibility == "internal" or caller.id in self.group_members_all(group):
            return True
        return any(self._project_links(project, group) and self.access_level(project, caller.id) > 0
                   for project in self.projects.values())

    def _project_links(self: SimState, project: SimProject, group: SimGroup) -> bool:
        home = self.project_group(project)
        linked = [self.groups[gid] for gid in project.shared_groups] + ([home] if home else [])
        return any(group.id in {a.id for a in self.group_ancestors(g)} for g in linked)
