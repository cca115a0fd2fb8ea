"""The auth endpoint, independent of the serving engine: incoming sub-request -> adapter -> core -> answer.

Every serving front (the WSGI dispatch in :mod:`tokenguard.web.app`, other engines' interfaces) hands
an :class:`~tokenguard.web.adapters.Incoming` to :meth:`AuthService.handle` and sends the
:class:`~tokenguard.web.responses.Answer` it gets back. Metrics and the decision log are kept here.
"""

from __future__ import annotations

import json
import logging
import time

from tokenguard.core.decision import Decision, Outcome, refused, unavailable
from tokenguard.core.errors import OAuthError
from tokenguard.core.verifier import Verifier
from tokenguard.web import metrics
from tokenguard.web.adapters import Adapters, Incoming
from tokenguard.web.logs import decisions_log, event, log_decision
from tokenguard.web.responses import Answer, Responder

#: One encoder, made once: ``json.dumps`` with non-default separators builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


class AuthService:
    """Answers auth sub-requests: the registered adapters, the verifier and the responder, wired once."""

    def __init__(self, verifier: Verifier, adapters: Adapters, responder: Responder, *,
                 log_decisions: bool = True) -> None:
        self.verifier = verifier
        self.adapters = adapters
        self.responder = responder
        self.log_decisions = log_decisions

    def handles(self, path: str) -> bool:
        return self.adapters.for_path(path) is not None

    def handle(self, incoming: Incoming) -> Answer:
        started = time.perf_counter()
        adapter = self.adapters.for_path(incoming.path)
        decision: Decision
        if adapter is None:
            decision = unavailable("internal_error", "no adapter for this path")
        else:
            try:
                request = adapter.read(incoming)
            except OAuthError as exc:  # a framing the adapter refuses: a specific invalid_request
                decision = refused(exc)
            except Exception as exc:  # an adapter bug must not become a traceback or an allow
                event("internal_error", logging.ERROR, error=type(exc).__name__, where="adapter")
                decision = unavailable("internal_error", f"{type(exc).__name__} in the adapter")
            else:
                decision = self.verifier.decide(request)
        answer = self.responder.render(decision)
        self._record(answer, time.perf_counter() - started)
        return answer

    def _record(self, answer: Answer, elapsed: float) -> None:
        decision = answer.decision
        result = decision.outcome.value
        metrics.record_decision(result, decision.reason, elapsed)
        failed = decision.outcome is Outcome.UNAVAILABLE
        if (self.log_decisions or failed) and decisions_log.isEnabledFor(logging.INFO):
            # Never the token, the proof, the certificate or the query string: only the decision.
            access, route, target = decision.access, decision.route, decision.target
            log_decision(_encode({
                "event": "decision", "result": result, "status": answer.status, "reason": decision.reason,
                "route": route.name if route is not None else None,
                "subject": access.subject if access is not None else None,
                "client_id": access.client_id if access is not None else None,
                "binding": decision.binding.value if decision.binding is not None else None,
                "method": decision.method, "path": target.path[:200] if target is not None else None,
                "detail": decision.detail if not decision.allow else None,
                "latency_ms": round(elapsed * 1000, 3)}), urgent=failed)
