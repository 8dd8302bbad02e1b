"""One repository per port of ``ports.repositories``, on Core statements, one module each.

They behave exactly like ``adapters.memory.store`` (the contract suites in ``tests/contract`` run
both). Every statement names ``tenant_id`` except the system scans the ports document as such.
Conditional writes are single ``UPDATE ... WHERE <expected state>`` statements whose row count
says whether they applied; inserts that may lose a race use ``ON CONFLICT DO NOTHING`` (or a
SAVEPOINT), so the transaction stays usable for the caller to read the winner.
"""

from adapters.sqlalchemy.repositories.dead_letters import SqlDeadLetterRepository
from adapters.sqlalchemy.repositories.events import SqlEventLog
from adapters.sqlalchemy.repositories.inbound_lookup import SqlInboundLookup
from adapters.sqlalchemy.repositories.inbound_messages import SqlInboundMessageRepository
from adapters.sqlalchemy.repositories.live_sessions import SqlLiveSessionRepository
from adapters.sqlalchemy.repositories.outbox import CANDIDATES_PER_TENANT, SqlOutboxRepository
from adapters.sqlalchemy.repositories.sellers import SqlSellerDirectory
from adapters.sqlalchemy.repositories.tenants import SqlTenantRepository

__all__ = [
    "CANDIDATES_PER_TENANT",
    "SqlDeadLetterRepository",
    "SqlEventLog",
    "SqlInboundLookup",
    "SqlInboundMessageRepository",
    "SqlLiveSessionRepository",
    "SqlOutboxRepository",
    "SqlSellerDirectory",
    "SqlTenantRepository",
]
