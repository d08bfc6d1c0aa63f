"""Writing contacts: batch upserts by email, with every row accounted for.

A 207 records each failed row and keeps every succeeded one. A whole-batch 400 is narrowed
down: the rows the error names are set aside and the rest resent; only when the error names no
row is the batch halved. Results are matched to inputs by `objectWriteTraceId` or email.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from funnelsync.connectors.crm import ContactWrite, ContactWriting, WriteResult
from funnelsync.connectors.hubspot.client import HubSpotApi
from funnelsync.connectors.hubspot.rejections import rows_named
from funnelsync.errors import BatchRejected

log = structlog.get_logger("funnelsync.hubspot")

_NOT_CONFIRMED = "HubSpot's answer did not mention this contact; it will be sent again"


def _inputs(batch: Sequence[ContactWrite]) -> dict[str, Any]:
    return {"inputs": [{"id": write.email, "idProperty": "email", "properties": write.properties,
                        "objectWriteTraceId": str(position)}
                       for position, write in enumerate(batch)]}


class ContactWriter(ContactWriting):
    def __init__(self, api: HubSpotApi) -> None:
        self.api = api

    @property
    def calls_made(self) -> int:
        return self.api.calls  # one client for every role

    def write_contacts(self, writes: Sequence[ContactWrite]) -> list[WriteResult]:
        results: list[WriteResult] = []
        pending: list[Sequence[ContactWrite]] = [writes]
        while pending:
            batch = pending.pop()
            try:
                results += self._upsert(batch)
            except BatchRejected as rejection:
                results += self._narrow(batch, rejection, pending)
        return results

    def _narrow(
        self, batch: Sequence[ContactWrite], rejection: BatchRejected, pending: list[Sequence[ContactWrite]]
    ) -> list[WriteResult]:
        named = rows_named(batch, rejection.body)
        if len(batch) == 1 and not named:
            named = {0: str(rejection)}
        if named:
            rest = [write for position, write in enumerate(batch) if position not in named]
            if rest:
                pending.append(rest)
            log.info("rows set aside", rejected=len(named), resent=len(rest), code=rejection.code)
            code = rejection.code or "VALIDATION_ERROR"
            return [WriteResult(batch[p].email, ok=False, reason=named[p] or str(rejection), code=code)
                    for p in sorted(named)]
        middle = len(batch) // 2
        log.info("batch refused without naming rows: halving", size=len(batch), code=rejection.code)
        pending += [batch[middle:], batch[:middle]]
        return []

    def _upsert(self, batch: Sequence[ContactWrite]) -> list[WriteResult]:
        data, _ = self.api.request("writing contacts", "POST", f"{self.api.paths.contacts}/batch/upsert",
                                   json=_inputs(batch))
        by_trace = {str(position): write for position, write in enumerate(batch)}
        by_email = {write.email: write for write in batch}
        answered: dict[str, WriteResult] = {}
        for result in data.get("results") or []:
            write = by_trace.get(str(result.get("objectWriteTraceId"))) or by_email.get(
                str((result.get("properties") or {}).get("email", "")).lower()
            )
            if write is not None:
                answered[write.email] = WriteResult(write.email, ok=True, record_id=str(result["id"]))
        for error in data.get("errors") or []:
            for write in self._rows_of_error(error, batch):
                answered[write.email] = WriteResult(
                    write.email, ok=False, reason=str(error.get("message")), code=str(error.get("category") or "ERROR")
                )
        return [
            answered.get(write.email) or WriteResult(write.email, ok=False, reason=_NOT_CONFIRMED, code="NOT_CONFIRMED")
            for write in batch
        ]

    @staticmethod
    def _rows_of_error(error: dict[str, Any], batch: Sequence[ContactWrite]) -> list[ContactWrite]:
        detail = {"message": error.get("message"), "context": error.get("context") or {}}
        return [batch[p] for p in rows_named(batch, {"errors": [detail]})]
