"""Emoji Hook: thumbs on the bot's suggestion comment become feedback on the suggestion."""
from __future__ import annotations

from bot.gitlab.payloads import emoji_hook
from bot.gitlab.sim_model import HookEvent
from bot.learning import new_labels, replay
from graph.recommend import make_recommender
from tests.bot_harness import handler_env, marker_notes  # noqa: F401 - fixture


async def setup(env):
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m1.py"])
    await env.run()
    [comment] = marker_notes(env.state, mr)
    return mr, comment


async def thumbs(env, mr):
    """The award labels on the MR (a suggested person's comment adds a `reviewed` label beside them)."""
    return [(f.person, f.label, f.value["action"], f.suggestion_id)
            for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid) if f.label.startswith("thumbs_")]


async def test_thumbs_on_the_comment_are_feedback_on_the_suggestion(handler_env):
    env = await handler_env()
    mr, comment = await setup(env)
    env.state.award(comment, env.tiny.ann, "thumbsup")
    env.state.award(comment, env.tiny.bob, "thumbsdown")
    await env.run()
    latest = await env.storage.suggestions.latest(env.pid, mr.iid)
    assert await thumbs(env, mr) == [("ann", "thumbs_up", "award", latest.id),
                                     ("bob", "thumbs_down", "award", latest.id)]


async def awarded(env, person, emoji):
    """The MR, the bot's comment, `person`'s award of `emoji` on it (handled) and the feedback mark before it."""
    mr, comment = await setup(env)
    mark = (await env.storage.feedback.since(env.pid))[-1].id
    award = env.state.award(comment, person, emoji)
    await env.run()
    return mr, comment, award, mark


async def send_action(env, mr, comment, award, action, key, *, gitlab_shape=False):
    """Deliver an Emoji Hook for `award` with `action`; `gitlab_shape`: as GitLab's builder sends it, the
    action in `event_type` only (its docs' sample also has `object_attributes.action`)."""
    body = emoji_hook(env.state, env.tiny.project, mr, award, action=action, note=comment)
    if gitlab_shape:
        del body["object_attributes"]["action"]
    await env.send(HookEvent(env.pid, "Emoji Hook", body, key))


async def test_revoking_is_recorded_too(handler_env):
    env = await handler_env()
    mr, comment, award, _ = await awarded(env, env.tiny.ann, "thumbsup")
    await send_action(env, mr, comment, award, "revoke", "revoke-1")
    assert [t[:3] for t in await thumbs(env, mr)] == [("ann", "thumbs_up", "award"), ("ann", "thumbs_up", "revoke")]


async def test_the_action_is_read_from_event_type_as_gitlab_sends_it(handler_env):
    env = await handler_env()
    mr, comment, award, _ = await awarded(env, env.tiny.bob, "thumbsdown")
    await send_action(env, mr, comment, award, "revoke", "revoke-2", gitlab_shape=True)
    assert [t[:3] for t in await thumbs(env, mr)] == [("bob", "thumbs_down", "award"),
                                                      ("bob", "thumbs_down", "revoke")]


async def learned_thumbs(env, rec, after: int) -> int:
    """Learn the labels stored above `after` into `rec` (one batch, as the engine does); the new mark."""
    labels, mark = await new_labels(env.storage, env.pid, after)
    replay(rec, labels, {})
    return mark


async def test_a_thumb_taken_back_and_given_again_is_learned_once(handler_env):
    env = await handler_env()
    mr, comment, award, mark = await awarded(env, env.tiny.bob, "thumbsdown")
    rec = make_recommender("default")
    mark = await learned_thumbs(env, rec, mark)
    for n, action in enumerate(("revoke", "award")):
        await send_action(env, mr, comment, award, action, f"toggle-{n}", gitlab_shape=True)
    rows = [f.value["action"] for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
            if f.label == "thumbs_down"]
    assert rows == ["award", "revoke", "award"]
    await learned_thumbs(env, rec, mark)
    assert rec.feedback.labels == 1 and set(rec.feedback.neg) == {"bob"}


async def test_a_thumb_netted_out_then_given_again_is_learned(handler_env):
    """Given and taken back between two reads (never learned), then given again: the standing thumb counts."""
    env = await handler_env()
    mr, comment, award, mark = await awarded(env, env.tiny.bob, "thumbsdown")
    await send_action(env, mr, comment, award, "revoke", "undo-1", gitlab_shape=True)
    rec = make_recommender("default")
    mark = await learned_thumbs(env, rec, mark)
    assert rec.feedback.labels == 0
    await send_action(env, mr, comment, award, "award", "redo-1", gitlab_shape=True)
    await learned_thumbs(env, rec, mark)
    assert rec.feedback.labels == 1 and set(rec.feedback.neg) == {"bob"}


async def test_skin_tone_thumbs_are_thumbs(handler_env):
    env = await handler_env()
    mr, comment = await setup(env)
    env.state.award(comment, env.tiny.bob, "thumbsdown_tone2")
    env.state.award(comment, env.tiny.cy, "thumbsup_tone5")
    await env.run()
    assert [t[:3] for t in await thumbs(env, mr)] == [("bob", "thumbs_down", "award"), ("cy", "thumbs_up", "award")]


async def test_a_thumb_taken_back_before_it_was_learned_is_not_learned(handler_env):
    env = await handler_env()
    mr, comment, award, mark = await awarded(env, env.tiny.bob, "thumbsdown")
    await send_action(env, mr, comment, award, "revoke", "revoke-3")
    labels, _ = await new_labels(env.storage, env.pid, mark)
    assert [x for x in labels if x.label.startswith("thumbs_")] == []


async def test_other_awards_are_ignored(handler_env):
    env = await handler_env()
    mr, comment = await setup(env)
    other = env.state.add_note(mr, env.tiny.cy, "nice")
    env.state.award(other, env.tiny.ann, "thumbsup")       # not the bot's comment
    env.state.award(mr, env.tiny.ann, "thumbsup")          # the MR itself
    env.state.award(comment, env.tiny.ann, "tada")         # not a thumb
    env.state.award(comment, env.state.bot, "thumbsup")    # the bot itself
    await env.run()
    assert await thumbs(env, mr) == []


async def test_a_repeated_delivery_counts_once(handler_env):
    env = await handler_env()
    mr, comment = await setup(env)
    env.state.award(comment, env.tiny.cy, "thumbsup")
    [event] = env.state.outbox[:]
    from tests.bot_harness import event_row

    row = event_row(event.event_name, event.body)
    await env.dispatch(row)
    await env.dispatch(row)
    env.state.outbox.clear()
    assert len(await thumbs(env, mr)) == 1
