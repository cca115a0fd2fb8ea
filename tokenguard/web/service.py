"""The auth endpoint, independent of the serving engine: incoming sub-request -> adapter -> core -> answer.

Every serving front (the WSGI dispatch in :mod:`tokenguard.web.app`, other engines' interfaces) hands
an :class:`~tokenguard.web.adapters.Incoming` to :meth:`AuthService.handle` and sends the
:class:`~tokenguard.web.responses.Answer` it gets back. Metrics and the decision log are kept here.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from tokenguard.core.decision import Decision, Outcome, refused, unavailable
from tokenguard.core.errors import OAuthError
from tokenguard.core.trace import Trace
from tokenguard.core.verifier import Verifier
from tokenguard.web import metrics
from tokenguard.web.adapters import Adapters, Incoming
from tokenguard.web.logs import decisions_log, event, log_decision
from tokenguard.web.responses import Answer, Responder

REQUEST_ID = "X-Request-Id"
#: nginx's $request_id (32 hex), UUIDs, Envoy's and most tracers' ids; at most 128 characters.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}")


class AuthService:
    """Answers auth sub-requests: the registered adapters, the verifier and the responder, wired once."""

    def __init__(self, verifier: Verifier, adapters: Adapters, responder: Responder, *,
                 log_decisions: bool = True, log_explain: bool = False) -> None:
        self.verifier = verifier
        self.adapters = adapters
        self.responder = responder
        self.log_decisions = log_decisions
        self.log_explain = log_explain  # every check of a denied request in its log line (costs a trace each)

    def handles(self, path: str) -> bool:
        return self.adapters.for_path(path) is not None

    def handle(self, incoming: Incoming, trace: Trace | None = None) -> Answer:
        """Answer one sub-request; ``trace`` (``explain``) collects every check, else ``log_explain`` may."""
        started = time.perf_counter()
        if trace is None and self.log_explain:
            trace = Trace()
        request_id = _request_id(incoming)
        adapter = self.adapters.for_path(incoming.path)
        decision: Decision
        if adapter is None:
            decision = unavailable("internal_error", "no adapter for this path")
        else:
            try:
                request = adapter.read(incoming)
            except OAuthError as exc:  # a framing the adapter refuses: a specific invalid_request
                if trace is not None:
                    trace.add("original request", "RFC 9110 §7.1, the proxy's forwarded headers", False,
                              "a valid method, scheme, host, port and request target", exc.description)
                decision = refused(exc)
            except Exception as exc:  # an adapter bug must not become a traceback or an allow
                event("internal_error", logging.ERROR, error=type(exc).__name__, where="adapter",
                      request_id=request_id)
                decision = unavailable("internal_error", f"{type(exc).__name__} in the adapter")
            else:
                decision = self.verifier.decide(request, trace)
        answer = self.responder.render(decision)
        answer.headers.append((REQUEST_ID, request_id))  # the proxy can log it beside its own line
        self._record(answer, time.perf_counter() - started, request_id, trace if self.log_explain else None)
        return answer

    def _record(self, answer: Answer, elapsed: float, request_id: str, trace: Trace | None = None) -> None:
        decision = answer.decision
        result = decision.outcome.value
        metrics.record_decision(result, decision.reason, elapsed)
        failed = decision.outcome is Outcome.UNAVAILABLE
        explain = trace is not None and not decision.allow
        if (self.log_decisions or explain or failed) and decisions_log.isEnabledFor(logging.INFO):
            # Never the token, the proof, the certificate or the query string: only the decision (and with
            # log_explain the checks: compared values sanitised and truncated, never key material).
            access, route, target = decision.access, decision.route, decision.target
            line: dict[str, Any] = {
                "event": "decision", "request_id": request_id, "result": result, "status": answer.status,
                "reason": decision.reason, "route": route.name if route is not None else None,
                "issuer": access.issuer if access is not None else None,
                "subject": access.subject if access is not None else None,
                "client_id": access.client_id if access is not None else None,
                "binding": decision.binding.value if decision.binding is not None else None,
                "method": decision.method, "host": target.host if target is not None else None,
                "path": target.path[:200] if target is not None else None,
                "detail": decision.detail if not decision.allow else None,
                "latency_ms": round(elapsed * 1000, 3)}
            if explain and trace is not None:
                line["explain"] = trace.for_log()
            log_decision(line, urgent=failed)


class _RequestIds:
    """New request ids: a random prefix per process and a counter (unique without a system call each;
    an id names a log line, it is not a secret). A forked worker draws its own prefix."""

    prefix = os.urandom(8).hex()
    count = itertools.count()

    @classmethod
    def new(cls) -> str:
        return f"{cls.prefix}{next(cls.count):016x}"

    @classmethod
    def reseed(cls) -> None:
        cls.prefix, cls.count = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_RequestIds.reseed)


def _request_id(incoming: Incoming) -> str:
    """The proxy's ``X-Request-Id`` if it is one plausible id (never arbitrary bytes into a log), else a new one."""
    values = incoming.headers.values(REQUEST_ID)
    if len(values) == 1 and _REQUEST_ID.fullmatch(values[0]):
        return values[0]
    return _RequestIds.new()
