"""The uplink: outbox batches to the centre over verified HTTPS, and heartbeats.

One batch at a time, claimed ``ORDER BY priority, seq`` (alarms first) and never prefetched.
A row leaves the queue only on a receipt verified with the centre's key from enrolment and
naming one of the batch's events; an answer that does not verify counts as a transport
failure and is logged as a security problem, so a proxy, a stale cache or a forger can never
make the gateway drop an alarm.

Failures back off (capped exponential, full jitter, injected random source). The link waits,
not the rows: a failed batch goes back to the queue due at once, so whenever the link tries
again (after its backoff, or early because a new alarm woke it) the queue is read in priority
order and the failed batch's alarms keep their place at the head. (Stamping the delay on the
failed rows let rows never tried, such as door events, overtake those alarms for up to the
cap once the centre was back.) 401/403 (gateway unknown or revoked) back off at the cap. A 400/413
splits the batch; a single event the centre still refuses waits at the cap while the rest of
the queue moves on, and is retried, never dropped. ``notify()`` wakes the loop at once (the
pipeline calls it when an alarm is committed), so alarm latency is not a polling interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.backoff import RandomSource, backoff_delay, capped_delay
from gateway.config import UplinkConfig
from gateway.identity import Enrolment, describe_http_error, tls_context
from gateway.outbox import Outbox, OutboxError, OutboxRow, TransportFailure
from trygg.wire.canonical import CanonicalJsonError, canonical_json, parse_json_object
from trygg.wire.clock import Clock, format_ts, system_clock
from trygg.wire.jws import key_id, sign_detached
from trygg.wire.messages import (
    CommandResult,
    Heartbeat,
    HeartbeatAnswer,
    Inventory,
    TestAlarmReport,
)
from trygg.wire.receipt import Receipt, ReceiptError, verify_receipts

log = logging.getLogger("trygg.gateway.uplink")
security_log = logging.getLogger("trygg.gateway.security")

IDLE_POLL_S = 1.0
"""How often an idle uplink looks for rows nobody notified it about (measurements)."""
HEARTBEAT_TICK_S = 1.0
"""The heartbeat loop re-reads the injected clock at least this often."""
MIN_HEARTBEAT_S, MAX_HEARTBEAT_S = 1, 86_400
EARLY_HEARTBEAT_SPACING_S = 2.0
"""An early heartbeat (results of device commands, a new allow-list) waits at least this
long after the previous one."""
RECENT_RECEIPTS = 256
PLAIN_HEARTBEATS_FOR = timedelta(hours=1)
"""How long heartbeats go without the installation's parts after a centre refused them."""
"""Verified receipts remembered for a waiter that asks just after the batch settled."""

_JSON = {"content-type": "application/json"}

AttemptKind = Literal["idle", "progress", "failed", "unauthorized", "split"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt did, and how long the loop should wait before the next."""

    kind: AttemptKind
    claimed: int = 0
    delivered: int = 0
    dead: int = 0
    requeued: int = 0
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class UplinkStatus:
    consecutive_failures: int
    last_error: str | None
    recent_delays_s: tuple[float, ...]
    last_success_at: str | None
    last_heartbeat_at: str | None
    heartbeat_interval_s: int
    batch_size: int


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """A receipt the uplink verified, and when (the event loop's clock, for round trips)."""

    receipt: Receipt
    verified_at: float


@dataclass(frozen=True, slots=True)
class HeartbeatExtras:
    """What the installation adds to a heartbeat (see ``gateway/installer_control.py``)."""

    inventory: Inventory | None = None
    command_results: tuple[CommandResult, ...] = ()
    test_alarm: TestAlarmReport | None = None


class Installation(Protocol):
    """The daemon's installer side, asked for each heartbeat's extras and told the answer."""

    async def heartbeat_extras(self) -> HeartbeatExtras: ...

    async def heartbeat_answered(self, sent: HeartbeatExtras, answer: HeartbeatAnswer) -> None: ...


def batch_body(rows: list[OutboxRow]) -> bytes:
    """``{"events":[{"event":<stored bytes>,"sig":"..."}]}``: the signed bytes, untouched."""
    parts = [
        b'{"event":' + row.body + b',"sig":"' + row.sig.encode("ascii") + b'"}' for row in rows
    ]
    return b'{"events":[' + b",".join(parts) + b"]}"


class Uplink:
    """Delivers the outbox to the centre; see the module docstring."""

    def __init__(
        self,
        outbox: Outbox,
        enrolment: Enrolment,
        key: Ed25519PrivateKey,
        config: UplinkConfig,
        *,
        clock: Clock = system_clock,
        rng: RandomSource = random.random,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self._outbox = outbox
        self._enrolment = enrolment
        self._key = key
        self._kid = key_id(key.public_key())
        self._center_key = enrolment.center_key()
        self._config = config
        self._clock = clock
        self._rng = rng
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            base_url=enrolment.center_url,
            verify=tls_context(enrolment.ca_file),
            timeout=config.request_timeout_s,
        )
        self._batch_size = config.batch_size
        self._failures = 0
        self._last_attempt_at: float | None = None
        self._last_error: str | None = None
        self._delays: deque[float] = deque(maxlen=32)
        self._last_success_at: str | None = None
        self._last_heartbeat_at: str | None = None
        self._last_heartbeat_sent: datetime | None = None
        self.heartbeat_interval_s = enrolment.heartbeat_interval_s
        self._beat_now = asyncio.Event()
        self._installation: Installation | None = None
        self._plain_until: datetime | None = None
        self._receipt_waiters: dict[str, list[asyncio.Future[VerifiedReceipt]]] = {}
        self._recent_receipts: OrderedDict[str, VerifiedReceipt] = OrderedDict()

    def attach_installation(self, installation: Installation) -> None:
        """Let the installer side add to heartbeats and read their answers."""
        self._installation = installation

    def request_heartbeat(self) -> None:
        """Send a heartbeat soon (spaced by EARLY_HEARTBEAT_SPACING_S), not at the next due time."""
        self._beat_now.set()

    def receipt_for(self, event_id: str) -> asyncio.Future[VerifiedReceipt]:
        """A future for the verified receipt of ``event_id`` (done already if it came)."""
        future: asyncio.Future[VerifiedReceipt] = asyncio.get_running_loop().create_future()
        known = self._recent_receipts.get(event_id)
        if known is not None:
            future.set_result(known)
        else:
            self._receipt_waiters.setdefault(event_id, []).append(future)
        return future

    def _receipts_verified(self, receipts: list[Receipt]) -> None:
        now = asyncio.get_running_loop().time()
        for receipt in receipts:
            verified = VerifiedReceipt(receipt, now)
            self._recent_receipts[receipt.event_id] = verified
            for waiter in self._receipt_waiters.pop(receipt.event_id, []):
                if not waiter.done():
                    waiter.set_result(verified)
        while len(self._recent_receipts) > RECENT_RECEIPTS:
            self._recent_receipts.popitem(last=False)

    async def __aenter__(self) -> Uplink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def notify(self, _event: object = None) -> None:
        """Something urgent was committed: try to deliver now, not at the next poll.

        Takes (and ignores) an argument so it can be the pipeline's ``on_alarm_committed``.
        """
        self._wake.set()

    def status(self) -> UplinkStatus:
        return UplinkStatus(
            consecutive_failures=self._failures,
            last_error=self._last_error,
            recent_delays_s=tuple(self._delays),
            last_success_at=self._last_success_at,
            last_heartbeat_at=self._last_heartbeat_at,
            heartbeat_interval_s=self.heartbeat_interval_s,
            batch_size=self._batch_size,
        )

    # -- the loops --------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver and heartbeat until cancelled."""
        heartbeats = asyncio.create_task(self._heartbeat_loop(), name="uplink-heartbeat")
        try:
            await self._delivery_loop()
        finally:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats

    async def _delivery_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                attempt = await self.deliver_once()
            except Exception:
                # Never let a bug stop delivery for good: log it and try again later.
                log.exception("delivery attempt failed unexpectedly; retrying")
                attempt = Attempt("failed", retry_in_s=self._config.backoff_max_s)
            self._last_attempt_at = loop.time()
            if attempt.kind in ("progress", "split"):
                continue
            if attempt.kind == "idle":
                await self._pause(await self._idle_wait(), wakeable=True)
            elif attempt.kind == "failed":
                # A new alarm may try again early, but not sooner than the initial backoff.
                await self._pause(
                    min(self._config.backoff_initial_s, attempt.retry_in_s), wakeable=False
                )
                await self._pause(
                    attempt.retry_in_s - self._config.backoff_initial_s, wakeable=True
                )
            else:
                await self._pause(attempt.retry_in_s, wakeable=False)

    async def _idle_wait(self) -> float:
        due_in = await self._outbox.next_due_in()
        return self._idle_poll_s if due_in is None else min(due_in, self._idle_poll_s)

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        if seconds <= 0:
            return
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = self._clock()
        last_sent = -EARLY_HEARTBEAT_SPACING_S
        while True:
            due_at = self._clock()
            early = self._beat_now.is_set() and (
                loop.time() - last_sent >= EARLY_HEARTBEAT_SPACING_S
            )
            if due_at >= next_at or early:
                self._beat_now.clear()
                last_sent = loop.time()
                try:
                    await self.send_heartbeat()
                    await self._outbox.maintain()
                except Exception:
                    log.exception("heartbeat or outbox maintenance failed; next one as planned")
                # Counted from when this one was due, not from when sending finished, so a
                # slow centre does not stretch the interval the centre supervises us by.
                next_at = due_at + timedelta(seconds=self.heartbeat_interval_s)
            remaining = (next_at - self._clock()).total_seconds()
            pause = min(max(remaining, 0.01), HEARTBEAT_TICK_S)
            if self._beat_now.is_set():
                pause = min(pause, max(0.01, last_sent + EARLY_HEARTBEAT_SPACING_S - loop.time()))
            if self._beat_now.is_set():
                await asyncio.sleep(pause)  # asked already: only the spacing holds it back
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._beat_now.wait()

    # -- one batch --------------------------------------------------------------------------

    async def deliver_once(self) -> Attempt:
        """Claim one batch, send it, settle it by verified receipts."""
        rows = await self._outbox.claim_batch(self._batch_size)
        if not rows:
            return Attempt("idle")
        try:
            return await self._send(rows)
        except BaseException:
            # Cancelled or broken mid-request: the rows must not stay in flight. If the batch
            # was already settled, the outbox says so and there is nothing to do.
            with contextlib.suppress(OutboxError):
                await asyncio.shield(
                    self._outbox.settle([], failure=TransportFailure("uplink stopped"))
                )
            raise

    async def _send(self, rows: list[OutboxRow]) -> Attempt:
        try:
            response = await self._client.post(
                "/v1/events", content=batch_body(rows), headers=_JSON
            )
        except httpx.HTTPError as exc:
            return await self._failed(rows, describe_http_error(self._enrolment.center_url, exc))
        status = response.status_code
        if status == 200:
            return await self._settle_answer(rows, response)
        reason = _detail_reason(response)
        if status in (401, 403):
            log.error(
                "the centre refuses this gateway (HTTP %d, %s): enrol it again or ask the "
                "centre; retrying every %g s",
                status,
                reason,
                self._config.backoff_max_s,
            )
            delay = capped_delay(cap_s=self._config.backoff_max_s, rng=self._rng)
            return await self._failed(rows, f"HTTP {status} {reason}", delay, "unauthorized")
        if status in (400, 413):
            return await self._split(rows, f"HTTP {status} {reason}")
        return await self._failed(rows, f"HTTP {status} {reason}")

    async def _failed(
        self,
        rows: list[OutboxRow],
        reason: str,
        delay: float | None = None,
        kind: AttemptKind = "failed",
    ) -> Attempt:
        self._failures += 1
        if delay is None:
            delay = backoff_delay(
                self._failures,
                initial_s=self._config.backoff_initial_s,
                cap_s=self._config.backoff_max_s,
                rng=self._rng,
            )
        self._delays.append(delay)
        self._last_error = reason
        log.warning(
            "delivery of %d events failed (%s); retry %d in %.2f s",
            len(rows),
            reason,
            self._failures,
            delay,
        )
        # The link backs off (the delivery loop waits ``delay``); the rows stay due at once.
        summary = await self._outbox.settle([], failure=TransportFailure(reason, 0.0))
        return Attempt(kind, claimed=len(rows), requeued=summary.requeued, retry_in_s=delay)

    async def _split(self, rows: list[OutboxRow], reason: str) -> Attempt:
        """The centre refused the batch as a whole: isolate the event it refuses."""
        if len(rows) > 1:
            self._batch_size = max(1, len(rows) // 2)
            log.warning(
                "centre refused a batch of %d (%s); trying %d", len(rows), reason, self._batch_size
            )
            summary = await self._outbox.settle([], failure=TransportFailure(reason, 0.0))
            return Attempt("split", claimed=len(rows), requeued=summary.requeued)
        [row] = rows
        log.error(
            "centre refuses %s event %s (%s); kept and retried every %g s",
            row.event_class,
            row.event_id,
            reason,
            self._config.backoff_max_s,
        )
        summary = await self._outbox.settle(
            [], failure=TransportFailure(reason, self._config.backoff_max_s)
        )
        return Attempt("split", claimed=1, requeued=summary.requeued)

    async def _settle_answer(self, rows: list[OutboxRow], response: httpx.Response) -> Attempt:
        receipts, problems = self._verified_receipts(rows, response.content)
        if problems:
            security_log.error(
                "centre answer for %d events had %d unverifiable receipts (%s); rows kept",
                len(rows),
                problems[0],
                problems[1],
            )
        if not receipts:
            return await self._failed(rows, "no verifiable receipt in the answer")
        settled_all = len(receipts) == len(rows)
        failure = None
        delay = 0.0
        if not settled_all:
            self._failures += 1
            delay = backoff_delay(
                self._failures,
                initial_s=self._config.backoff_initial_s,
                cap_s=self._config.backoff_max_s,
                rng=self._rng,
            )
            self._delays.append(delay)
            failure = TransportFailure("no verifiable receipt", delay)
        summary = await self._outbox.settle(receipts, failure=failure)
        self._receipts_verified(receipts)
        if settled_all:
            self._failures = 0
            self._last_error = None
            self._batch_size = min(self._config.batch_size, self._batch_size * 2)
        self._last_success_at = format_ts(self._clock())
        return Attempt(
            "progress",
            claimed=len(rows),
            delivered=summary.delivered,
            dead=summary.dead,
            requeued=summary.requeued,
            retry_in_s=delay,
        )

    def _verified_receipts(
        self, rows: list[OutboxRow], content: bytes
    ) -> tuple[list[Receipt], tuple[int, str] | None]:
        """Receipts that verify with the centre key and name this batch's events, once each."""
        try:
            answer = parse_json_object(content)
        except CanonicalJsonError as exc:
            return [], (len(rows), f"answer is not JSON: {exc}")
        listed = answer.get("receipts")
        if isinstance(listed, list) and len(listed) > 2 * len(rows):
            return [], (len(rows), "answer holds more receipts than the batch had events")
        try:
            receipts = verify_receipts(answer, self._center_key)
        except ReceiptError as exc:
            return [], (len(rows), str(exc)[:160])
        wanted = {row.event_id for row in rows}
        verified: dict[str, Receipt] = {}
        bad = 0
        why = ""
        for receipt in receipts:
            if receipt.event_id not in wanted or receipt.gateway_id != self._enrolment.gateway_id:
                bad += 1
                why = why or "receipt names another event or gateway"
                continue
            verified.setdefault(receipt.event_id, receipt)
        return list(verified.values()), ((bad, why) if bad else None)

    # -- heartbeat --------------------------------------------------------------------------

    async def send_heartbeat(self) -> HeartbeatAnswer | None:
        """POST one signed heartbeat; adopt the interval the centre answers. None on failure.

        A centre that refuses the installation's parts (an older one: 400, or 413) gets the
        plain heartbeat at once, and no parts for an hour: supervision must not suffer.
        """
        extras = await self._extras()
        outcome = await self._post_heartbeat(extras)
        if isinstance(outcome, int) and outcome in (400, 413) and extras != HeartbeatExtras():
            log.warning(
                "the centre refused the heartbeat's installation report (HTTP %d); "
                "sending heartbeats without it for an hour",
                outcome,
            )
            self._plain_until = self._clock() + PLAIN_HEARTBEATS_FOR
            extras = HeartbeatExtras()
            outcome = await self._post_heartbeat(extras)
        if not isinstance(outcome, HeartbeatAnswer):
            return None
        if self._installation is not None:
            try:
                await self._installation.heartbeat_answered(extras, outcome)
            except Exception:
                log.exception("the installation could not take the heartbeat answer")
        return outcome

    async def _post_heartbeat(self, extras: HeartbeatExtras) -> HeartbeatAnswer | int | None:
        """One signed heartbeat: the answer, the HTTP status of a refusal, or None."""
        stats = await self._outbox.stats()
        now = self._clock()
        if self._last_heartbeat_sent is not None and now <= self._last_heartbeat_sent:
            # The centre refuses a heartbeat not newer than the last (replay protection).
            now = self._last_heartbeat_sent + timedelta(milliseconds=1)
        heartbeat = Heartbeat(
            gateway_id=self._enrolment.gateway_id,
            boot_id=self._outbox.boot_id,
            sent_at=format_ts(now),
            outbox_depth=stats.depth,
            alarms_queued=stats.alarms_queued,
            oldest_queued_age_s=stats.oldest_queued_age_s or 0,
            inventory=extras.inventory,
            command_results=list(extras.command_results),
            test_alarm=extras.test_alarm,
        )
        self._last_heartbeat_sent = now
        wire = heartbeat.to_wire()
        sig = sign_detached(canonical_json(wire), self._key, self._kid)
        body = json.dumps({"heartbeat": wire, "sig": sig}, separators=(",", ":"))
        try:
            response = await self._client.post("/v1/heartbeat", content=body, headers=_JSON)
        except httpx.HTTPError as exc:
            log.warning(
                "heartbeat failed: %s", describe_http_error(self._enrolment.center_url, exc)
            )
            return None
        if response.status_code != 200:
            log.warning(
                "heartbeat answered HTTP %d %s", response.status_code, _detail_reason(response)
            )
            return response.status_code
        try:
            answer = HeartbeatAnswer.model_validate(parse_json_object(response.content))
        except (CanonicalJsonError, ValidationError):
            log.warning("heartbeat answer is malformed")
            return None
        interval = min(max(answer.heartbeat_interval_s, MIN_HEARTBEAT_S), MAX_HEARTBEAT_S)
        if interval != self.heartbeat_interval_s:
            log.info("heartbeat interval now %d s (set by the centre)", interval)
            self.heartbeat_interval_s = interval
        self._last_heartbeat_at = heartbeat.sent_at
        return answer

    async def _extras(self) -> HeartbeatExtras:
        """The installation's part of a heartbeat; a failure there costs it, not the beat."""
        if self._installation is None:
            return HeartbeatExtras()
        if self._plain_until is not None and self._clock() < self._plain_until:
            return HeartbeatExtras()
        try:
            return await self._installation.heartbeat_extras()
        except Exception:
            log.exception("heartbeat sent without the installation's report")
            return HeartbeatExtras()


def _detail_reason(response: httpx.Response) -> str:
    """The centre's ``detail.reason``, if the body carries one (never the whole body)."""
    try:
        detail: Any = parse_json_object(response.content).get("detail")
    except CanonicalJsonError:
        return ""
    if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
        return str(detail["reason"])[:64]
    return ""
