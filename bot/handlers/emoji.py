"""Emoji Hook: 👍 / 👎 on the bot's suggestion comment become feedback on that suggestion.

Only awards on the note the bot keeps as its comment count (other notes, the MR itself and the bot's own
acknowledgements are ignored). Revoking an award is recorded too, with `value.action = "revoke"` (GitLab
names the action in the top-level `event_type`; its docs' sample also has `object_attributes.action`), for
the dashboard; a thumb counts as evidence once per person and MR, however often it is given again (see
`bot.learning`). Skin-tone variants (`thumbsup_tone3`) are the same thumbs.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Mapping

from gidgetlab.routing import Router
from gidgetlab.sansio import Event

from bot.handlers.context import EventContext
from bot.logfmt import kv

__all__ = ["router", "EMOJI_LABELS", "emoji_label"]

log = logging.getLogger("bot.handlers")
router = Router()

EMOJI_LABELS = {"thumbsup": "thumbs_up", "+1": "thumbs_up", "thumbsdown": "thumbs_down", "-1": "thumbs_down"}
_TONE = re.compile(r"_tone[1-5]$")  # GitLab's skin-tone variants: `thumbsup_tone3`, `-1_tone1`


def emoji_label(attrs: Mapping[str, Any]) -> str | None:
    """The feedback label of an award on a note, or None when it is not a thumb.

    >>> emoji_label({"awardable_type": "Note", "name": "thumbsdown"}), emoji_label({"name": "tada"})
    ('thumbs_down', None)
    >>> emoji_label({"awardable_type": "Note", "name": "thumbsup_tone4"})
    'thumbs_up'
    """
    if attrs.get("awardable_type") != "Note":
        return None
    name = str(attrs.get("name") or "")
    return EMOJI_LABELS.get(_TONE.sub("", name))


def award_action(data: Mapping[str, Any]) -> str:
    """ "award" or "revoke": GitLab sends it as the top-level `event_type` (`object_attributes.action` in its
    docs' sample only).

    >>> award_action({"event_type": "revoke", "object_attributes": {}}), award_action({"object_attributes": {}})
    ('revoke', 'award')
    """
    attrs = data.get("object_attributes") if isinstance(data.get("object_attributes"), Mapping) else {}
    action = data.get("event_type") or attrs.get("action")
    return "revoke" if action == "revoke" else "award"


@router.register("Emoji Hook")
async def on_emoji(event: Event, ctx: EventContext) -> None:
    """A thumb on the bot's comment: `thumbs_up` / `thumbs_down` feedback by the person who gave it."""
    attrs, user = event.object_attributes, event.data.get("user") or {}
    label = emoji_label(attrs)
    mr = event.data.get("merge_request") or {}
    if label is None or ctx.bot.is_me(user) or not user.get("username") or "iid" not in mr:
        return
    iid = int(mr["iid"])
    row = await ctx.storage.comments.get(ctx.project_id, iid)
    if row is None or row.note_id != attrs.get("awardable_id"):
        return
    latest = await ctx.storage.suggestions.latest(ctx.project_id, iid, with_mr=False)
    action = award_action(event.data)
    value = {"emoji": attrs.get("name"), "action": action}
    await ctx.storage.feedback.record(ctx.project_id, iid, str(user["username"]), label, value=value,
                                      suggestion_id=latest.id if latest else None, source_event_id=ctx.event_id)
    log.info(kv("emoji feedback", project_id=ctx.project_id, mr_iid=iid, label=label, action=action))
