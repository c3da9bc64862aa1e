"""Webhook delivery of the simulated GitLab: POST queued events to hook URLs with GitLab's delivery headers.

Like GitLab: one POST per hook, a 10 s timeout, no automatic retry, `Idempotency-Key` kept on a resend, and
auto-disabling after 4 consecutive failures (1 minute, doubling up to 24 h; permanently after 40).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import aiohttp

from bot.gitlab.sim_model import Delivery, HookEvent, SimHook

if TYPE_CHECKING:
    from bot.gitlab.sim_state import SimState

__all__ = ["WebhookSender", "USER_AGENT"]

USER_AGENT = "GitLab/18.6.0"


class WebhookSender:
    """Delivers `state.outbox`; `start()` runs a background pump that delivers as soon as events are queued."""

    def __init__(self, state: SimState, session: aiohttp.ClientSession, *, timeout: float = 10.0,
                 auto_disable: bool = True) -> None:
        self.state = state
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.auto_disable = auto_disable
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="gitlab-sim-webhooks")
        if self.state.outbox and self.state.auto_hooks:
            self.wake()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _pump(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.state.auto_hooks:
                await self.flush()

    async def flush(self) -> list[Delivery]:
        """Deliver every queued event in order; returns the deliveries made."""
        done: list[Delivery] = []
        async with self._lock:
            while self.state.outbox:
                done += await self.send_event(self.state.outbox.pop(0))
        return done

    async def send_event(self, event: HookEvent) -> list[Delivery]:
        """POST one event to each hook of its project that wants it and is not disabled."""
        done = []
        for hook in self.state.iter_hooks(event.project_id, event.event_name):
            if self._disabled(hook):
                continue
            # GitLab draws the event UUID per hook (unless the event was caused by a webhook request)
            own = replace(event, event_uuid=str(uuid.uuid5(uuid.UUID(event.event_uuid), hook.uuid)))
            done.append(await self._post(hook, own, self.state.new_uuid()))
        return done

    async def resend(self, delivery: Delivery) -> Delivery:
        """Send a delivery again with the same body and Idempotency-Key (GitLab's "Resend Request")."""
        hook = next(h for p in self.state.projects.values() for h in p.hooks if h.id == delivery.hook_id)
        event = HookEvent(hook.project_id, delivery.event_name, delivery.body,
                          delivery.headers["X-Gitlab-Event-UUID"])
        return await self._post(hook, event, delivery.headers["Idempotency-Key"])

    def _headers(self, hook: SimHook, event: HookEvent, idempotency_key: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT, "Idempotency-Key": idempotency_key,
            # drawn anew for every delivery, resends too (`WebHookService#build_headers`): it names no hook
            "X-Gitlab-Event": event.event_name, "X-Gitlab-Webhook-UUID": self.state.new_uuid(),
            "X-Gitlab-Instance": self.state.web, "X-Gitlab-Event-UUID": event.event_uuid,
        }
        if hook.token:
            headers["X-Gitlab-Token"] = hook.token
        return headers

    async def _post(self, hook: SimHook, event: HookEvent, idempotency_key: str) -> Delivery:
        headers = self._headers(hook, event, idempotency_key)
        status, error = 0, ""
        try:
            async with self.session.post(hook.url, data=json.dumps(event.body), headers=headers,
                                         timeout=self.timeout) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._account(hook, status)
        delivery = Delivery(hook.id, hook.url, event.event_name, headers, event.body, status, error)
        self.state.deliveries.append(delivery)
        return delivery

    def _disabled(self, hook: SimHook) -> bool:
        if hook.alert_status == "disabled":
            return True
        return hook.disabled_until is not None and hook.disabled_until > self.state.now()

    def _account(self, hook: SimHook, status: int) -> None:
        """GitLab's auto-disabling: 4 failures in a row disable for a while, 40 for good."""
        if 200 <= status < 300:
            hook.consecutive_failures, hook.alert_status, hook.disabled_until = 0, "executable", None
            return
        hook.consecutive_failures += 1
        if not self.auto_disable or hook.consecutive_failures < 4:
            return
        if hook.consecutive_failures >= 40:
            hook.alert_status, hook.disabled_until = "disabled", None
            return
        backoff = min(timedelta(minutes=2 ** (hook.consecutive_failures - 4)), timedelta(hours=24))
        hook.alert_status, hook.disabled_until = "temporarily_disabled", self.state.now() + backoff
