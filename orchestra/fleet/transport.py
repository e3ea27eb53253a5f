"""kombu's Redis transport, hardened: a message a worker cannot decode is dead-lettered.

Stock kombu ends a worker on the first broker message it cannot decode (``lpush
orchestra.skill.x 'not json'`` raises ``JSONDecodeError`` out of the consumer: *Unrecoverable
error*; so does a body that is not valid base64).  This transport decodes each message itself
before handing it to Celery; what does not decode is moved to the dead-letter list
(``orchestra:dead`` in the result backend) with its raw body (truncated), its queue and the
reason, plus the run, step and skill where the message carries them, and the worker carries on.

What kombu delivers but Celery cannot decode (a task body that is not JSON, an unknown or
invalid task) is dead-lettered the same way by :data:`Consumer` (the ``worker_consumer``).
The app selects both (see :mod:`orchestra.fleet.app`).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from kombu.transport import redis as kredis
from kombu.transport.virtual import Empty  # type: ignore[attr-defined]

from orchestra.logs import get_logger

__all__ = ["Channel", "Consumer", "Transport", "dead_letter_raw"]

log = get_logger("orchestra.fleet.transport")

RAW_LIMIT = 2000  # characters of an undecodable body kept in its dead letter


def bytes_to_str(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw


def _undecodable(channel: Any, raw: bytes | str) -> tuple[dict[str, Any] | None, str | None]:
    """``(payload, None)`` if kombu can deliver ``raw``, else ``(best effort, reason)``."""
    text = bytes_to_str(raw)
    try:
        payload = json.loads(text)
    except (ValueError, TypeError) as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"not a kombu message: a JSON {type(payload).__name__}"
    props = payload.get("properties")
    if not isinstance(props, dict) or "delivery_tag" not in props:
        return payload, "not a kombu message: no properties.delivery_tag"
    body = payload.get("body")
    if body:
        try:
            channel.decode_body(body, props.get("body_encoding"))
        except (binascii.Error, ValueError, TypeError) as exc:
            return payload, f"body not decodable ({props.get('body_encoding')}): {exc}"
    return payload, None


def _where(payload: dict[str, Any] | None, queue: str) -> dict[str, Any]:
    """Run, step, skill and task id, where the message says them (else the queue's skill)."""
    out: dict[str, Any] = {}
    if queue.startswith("orchestra.skill."):
        out["skill"] = queue.removeprefix("orchestra.skill.")
    if not isinstance(payload, dict):
        return out
    headers = payload.get("headers") if isinstance(payload.get("headers"), dict) else {}
    if isinstance(headers, dict) and headers.get("id"):
        out["task_id"] = headers["id"]
    body = payload.get("body")
    try:
        props = payload.get("properties") or {}
        if isinstance(body, str) and props.get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True).decode()
        args = json.loads(body)[0] if isinstance(body, str) else None
        task = args[0]["task"] if isinstance(args, list) and args else None
        if isinstance(task, dict):
            for k in ("run_id", "step_id", "skill"):
                if isinstance(task.get(k), str):
                    out[k] = task[k]
    except Exception:  # the body is what could not be decoded: keep what we have
        pass
    return out


def dead_letter_raw(queue: str, raw: bytes | str, reason: str, payload: Any = None) -> None:
    """Append a dead letter for an undecodable message (best effort: never raises)."""
    text = bytes_to_str(raw)
    letter = {
        "reason": f"undecodable message: {reason}",
        "queue": queue,
        "raw": text[:RAW_LIMIT],
        "raw_length": len(text),
        "truncated": len(text) > RAW_LIMIT,
        "at": time.time(),
        **_where(payload, queue),
    }
    log.error("undecodable broker message dead-lettered", queue=queue, reason=reason)
    try:
        from orchestra.fleet import store
        from orchestra.fleet.tasks import current_worker

        ctx = current_worker()
        letter["worker"] = ctx.name
        r, _, _ = ctx.redis()
        pipe = r.pipeline(transaction=False)
        pipe.lpush(store.DEAD_LETTERS, json.dumps(letter, default=repr))
        pipe.ltrim(store.DEAD_LETTERS, 0, store.DEAD_LETTERS_MAX - 1)
        pipe.execute()
    except Exception as exc:
        log.error("cannot write a dead letter", error=str(exc), letter=letter)


class Channel(kredis.Channel):  # type: ignore[misc]
    """A Redis channel that dead-letters what it cannot decode instead of dying, and that
    survives a broker restart mid-step.

    On a lost connection kombu closes the channel's transport (its ``connection.client``
    becomes ``None``) while a task of that channel may still be running; acknowledging or
    restoring it later rebuilds a connection pool from ``connection.client.hostname`` and
    ends the worker with ``AttributeError: 'NoneType' object has no attribute 'hostname'``.
    This channel remembers its connection parameters and reuses them then.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._orchestra_params: dict[bool, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        for asynchronous in (False, True):
            try:
                self._connparams(asynchronous=asynchronous)
            except Exception:  # not fatal: computed again when needed
                continue

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        try:
            params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        except AttributeError:
            cached = self._orchestra_params.get(asynchronous)
            if cached is None or self.connection.client is not None:
                raise
            log.warning("broker connection closed under a channel; reusing its parameters")
            return dict(cached)
        self._orchestra_params[asynchronous] = dict(params)
        return params

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                payload, why = _undecodable(self, item)
                if why is not None:
                    dead_letter_raw(dest, item, why, payload)
                    return True
                self.connection._deliver(payload, dest)
                return True
            raise Empty()
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))  # type: ignore[no-untyped-call]
                if item:
                    self._maybe_update_queues_expire(client, queue)  # type: ignore[no-untyped-call]
                    payload, why = _undecodable(self, item)
                    if why is not None:
                        dead_letter_raw(queue, item, why, payload)
                        continue
                    return payload
            self._maybe_update_queues_expire(client, queue)  # type: ignore[no-untyped-call]
            raise Empty()


class Transport(kredis.Transport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def _consumer_class() -> type:
    from celery.worker.consumer import Consumer as CeleryConsumer

    def letter(message: Any, reason: str) -> None:
        info = getattr(message, "delivery_info", None) or {}
        queue = str(info.get("routing_key") or info.get("exchange") or "?")
        raw = getattr(message, "_raw", None)
        body = getattr(message, "body", b"")
        dead_letter_raw(queue, body if isinstance(body, bytes | str) else repr(body), reason, raw)

    class Consumer(CeleryConsumer):  # type: ignore[misc,valid-type]
        """Celery's consumer; what it cannot decode or route is dead-lettered too."""

        def on_decode_error(self, message: Any, exc: BaseException) -> None:
            letter(message, f"task body not decodable: {exc}")
            super().on_decode_error(message, exc)

        def on_unknown_message(self, body: Any, message: Any) -> None:
            letter(message, "not a Celery task message")
            super().on_unknown_message(body, message)

        def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
            letter(message, f"unknown task: {exc}")
            super().on_unknown_task(body, message, exc)

        def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
            letter(message, f"invalid task: {exc}")
            super().on_invalid_task(body, message, exc)

    return Consumer


Consumer = _consumer_class()
