"""Who is acting, and what their role lets them do. Checked in core on every mutation."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from core.errors import Forbidden
from storage.models import Role

RANK = {Role.viewer: 0, Role.operator: 1, Role.owner: 2}


@dataclass(frozen=True, slots=True)
class Actor:
    operator_id: int
    user_id: int  # Telegram user id
    tenant_id: int
    role: Role
    timezone: str = "UTC"
    display_name: str | None = None
    notify: bool = True
    token_id: int | None = None  # acting through an API token made by `user_id`

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]

    def require(self, role: Role, what: str = "do that") -> None:
        if not self.at_least(role):
            raise Forbidden(f"Your role ({self.role}) cannot {what}; ask an owner.")

    @property
    def label(self) -> str:
        return self.display_name or f"user {self.user_id}"


def is_deployment_owner(actor: Actor, owner_ids: Collection[int]) -> bool:
    """An owner named in OPSDECK_OWNER_IDS: sees and runs what spans every workspace."""
    return actor.role == Role.owner and actor.user_id in owner_ids


def require_deployment_owner(actor: Actor, owner_ids: Collection[int], what: str) -> None:
    """Deployment-wide things (settings, backups, webhook health) are not a workspace's."""
    actor.require(Role.owner, what)
    if actor.user_id not in owner_ids:
        raise Forbidden(
            f"Only the deployment's owners (OPSDECK_OWNER_IDS) can {what}: it spans every "
            "workspace, and you own one workspace."
        )
