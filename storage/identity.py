"""Who sent an update, and which guided-flow state they are in: one lock-free read.

Every update needs both before anything else happens: the operator row (deny by default) and
the aiogram FSM state for the update's storage key. Both come from one statement through
`UnitOfWork.read_row` (storage/uow.py), outside any transaction and at the cost of a few
microseconds on SQLite. Nothing is cached: a removed operator is refused on their next
update, in every process.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import FsmRecord, Operator
from storage.uow import UnitOfWork

_SQL = (
    "SELECT o.id, o.tenant_id, o.role, o.timezone, o.display_name, o.notify,"
    f" (SELECT f.state FROM {FsmRecord.__tablename__} f WHERE f.storage_key = :key)"
    f" FROM (SELECT 1 AS one) AS one LEFT JOIN {Operator.__tablename__} o"
    " ON o.telegram_user_id = :user_id"
)


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    id: int
    tenant_id: int
    telegram_user_id: int
    role: str
    timezone: str
    display_name: str | None
    notify: bool


@dataclass(frozen=True, slots=True)
class Identity:
    operator: OperatorRecord | None  # None: a stranger
    state: str | None  # the FSM state stored under the key asked for (None without a key)


class IdentityReader:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def read(self, user_id: int, fsm_key: str | None) -> Identity:
        row = await self.uow.read_row(_SQL, {"user_id": user_id, "key": fsm_key})
        if row is None:
            return Identity(None, None)
        state = row[6] if fsm_key is not None else None
        if row[0] is None:
            return Identity(None, state)
        operator = OperatorRecord(
            id=row[0],
            tenant_id=row[1],
            telegram_user_id=user_id,
            role=row[2],
            timezone=row[3],
            display_name=row[4],
            notify=bool(row[5]),
        )
        return Identity(operator, state)
