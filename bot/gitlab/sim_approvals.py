"""Approval rules of the simulated GitLab (Premium) and `GET .../merge_requests/:iid/approval_state`.

GitLab's rules, as its API shows them (`ApprovalState`, `ApprovalWrappedRule`, `ApprovalRuleLike`): a project's
rules are copied onto each merge request, which may change its copies (`own_approval_rules`); a rule's
eligible approvers are its users and the direct members of its groups who are active, less the author unless
the project lets authors approve, and less the merge request's committers where the project prevents their
approval (`committers`); `approved_by` are those of them who approved (for `any_approver`, anyone
but the author who approved); a rule is `approved` when no approvals are left or, other than `any_approver`,
when it asks more approvals than it has eligible approvers (GitLab does not let an invalid rule block the
merge request; before about 16.0 only once each of them had approved: `state.version`). Without Premium
(`free_tier`) GitLab's Enterprise Edition answers no rules; its Community Edition (`community_edition`) has no
such endpoint. The simulator makes no `code_owner` rules from CODEOWNERS: add them by hand. Mixed into
`SimState` like `MRActions`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlsplit

from bot.gitlab import sim_render as render
from bot.gitlab.sim_model import SimApprovalRule, SimMR, SimProject, SimUser

if TYPE_CHECKING:
    from bot.gitlab.sim_groups import GroupRef
    from bot.gitlab.sim_state import SimState, UserRef

__all__ = ["ApprovalActions", "approval_state_json", "approval_settings_json"]


class ApprovalActions:
    """Approval rule helpers mixed into `SimState`."""

    def add_approval_rule(self: SimState, where: SimProject | SimMR, name: str, approvals_required: int = 1, *,
                          users: Iterable[UserRef] = (), groups: Iterable[GroupRef] = (),
                          rule_type: str = "regular", section: str | None = None) -> SimApprovalRule:
        """A rule of a project (copied onto its merge requests) or of one merge request (its own rules)."""
        rule = SimApprovalRule(next(self._ids["approval_rule"]), name, approvals_required, rule_type,
                               [self.user(u).id for u in users], [self.group(g).id for g in groups], section)
        rules = where.approval_rules if isinstance(where, SimProject) else self.own_approval_rules(where)
        rules.append(rule)
        return rule

    def own_approval_rules(self: SimState, mr: SimMR) -> list[SimApprovalRule]:
        """The merge request's own rules, copied from its project's the first time (edit them to override)."""
        if mr.approval_rules is None:
            project = self.projects[mr.project_id]
            mr.approval_rules = [SimApprovalRule(next(self._ids["approval_rule"]), r.name, r.approvals_required,
                                                 r.rule_type, list(r.user_ids), list(r.group_ids), r.section, r)
                                 for r in project.approval_rules]
        return mr.approval_rules

    def rule_approvers(self: SimState, mr: SimMR, rule: SimApprovalRule) -> list[SimUser]:
        """GitLab's eligible approvers of `rule` on `mr`: users and direct group members, active, not the author
        unless the project allows it; in id order."""
        ids = set(rule.user_ids).union(*(self.groups[g].members for g in rule.group_ids))
        author_ok = self.projects[mr.project_id].merge_requests_author_approval
        barred = self.committers(mr) if self.committers_barred(self.projects[mr.project_id]) else set()
        return [self.users[uid] for uid in sorted(ids)
                if self.users[uid].state == "active" and (author_ok or uid != mr.author_id) and uid not in barred]

    def committers_barred(self: SimState, project: SimProject) -> bool:
        """"Prevent approvals by users who add commits" (a Premium setting: off without Premium)."""
        return project.merge_requests_disable_committers_approval and not self.free_tier

    def committers(self: SimState, mr: SimMR) -> set[int]:
        """GitLab's `MergeRequest#committers`: the users owning the `committer_email` of one of the merge
        request's commits (merge commits too), matched by any of their confirmed addresses (here the primary
        and public ones) or their private commit address (`commit_email`). The author of a commit is not one
        of them unless they also made it (`CommitCollection#committers`)."""
        made = {commit.committer_email.casefold() for commit in mr.commits}
        return {user.id for user in self.users.values()
                if made & {e.casefold() for e in (user.email, user.public_email, self.commit_email(user)) if e}}

    def commit_email(self: SimState, user: SimUser) -> str:
        """The private commit address GitLab gives every user: `<id>-<username>@users.noreply.<host>`."""
        return f"{user.id}-{user.username}@users.noreply.{urlsplit(self.web).hostname}"


def approval_state_json(state: SimState, mr: SimMR) -> dict[str, Any]:
    """GET .../approval_state: the merge request's rules (its own, else its project's) with who approved."""
    if state.free_tier:
        return {"approval_rules_overwritten": False, "rules": []}
    project = state.projects[mr.project_id]
    rules = mr.approval_rules if mr.approval_rules is not None else project.approval_rules
    return {"approval_rules_overwritten": mr.approval_rules is not None,
            "rules": [_rule_json(state, mr, rule) for rule in rules]}


def approval_settings_json(state: SimState, project: SimProject) -> dict[str, Any]:
    """GET /projects/:id/approvals (`API::Entities::ApprovalSettings`): the project's approval settings; the
    approver lists are deprecated and always empty. GitLab before about 12.1 had no
    `merge_requests_disable_committers_approval` in it."""
    body = {
        "approvers": [], "approver_groups": [], "approvals_before_merge": project.approvals_required,
        "reset_approvals_on_push": True, "selective_code_owner_removals": False,
        "disable_overriding_approvers_per_merge_request": False,
        "merge_requests_author_approval": project.merge_requests_author_approval,
        "merge_requests_disable_committers_approval": state.committers_barred(project),
        "require_password_to_approve": False, "require_reauthentication_to_approve": False,
    }
    if state.version < (12, 1):
        del body["merge_requests_disable_committers_approval"]
    return body


def _gives_up(state: SimState, rule: SimApprovalRule, eligible: list[SimUser], approved: list[SimUser]) -> bool:
    """Whether GitLab approves `rule` by itself (`ApprovalWrappedRule#invalid_rule?`): since gitlab-org/gitlab
    !117557 (spring 2023, played from 16.0) when it asks more approvals than it has eligible approvers; before,
    only once none of them is left to approve (each approved, or there are none): such a rule waited for all."""
    if state.version >= (16, 0):
        return rule.approvals_required > len(eligible)
    return rule.approvals_required > 0 and len(approved) == len(eligible)


def _rule_json(state: SimState, mr: SimMR, rule: SimApprovalRule) -> dict[str, Any]:
    eligible = state.rule_approvers(mr, rule)
    anyone = rule.rule_type == "any_approver"
    author_ok = state.projects[mr.project_id].merge_requests_author_approval
    approved = [state.users[uid] for uid in mr.approvals if author_ok or uid != mr.author_id] if anyone else \
        [user for user in eligible if user.id in mr.approvals]
    invalid = not anyone and _gives_up(state, rule, eligible, approved)
    basic = lambda users: [render.user_basic(state.web, u) for u in users]  # noqa: E731
    return {
        "id": rule.id, "name": rule.name, "rule_type": rule.rule_type, "eligible_approvers": basic(eligible),
        "approvals_required": rule.approvals_required, "users": basic(state.users[u] for u in rule.user_ids),
        "groups": [render.group_json(state.web, state.groups[g]) for g in rule.group_ids],
        "contains_hidden_groups": False, "report_type": None, "section": rule.section,
        "source_rule": {"approvals_required": rule.source.approvals_required} if rule.source else None,
        "overridden": rule.overridden, "code_owner": rule.rule_type == "code_owner",
        "approved_by": basic(approved), "approved": len(approved) >= rule.approvals_required or invalid,
    }
