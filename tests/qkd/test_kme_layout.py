"""A KME reads its network's layout (nodes, SAEs, devices) once; a network deleted while it
reads is the ETSI 503 of a network that no longer exists, never a 500. The deletion is made
to land between the layout's reads (the network created through the API, deleted as
``qkd.service.delete_network`` does, in one transaction over another connection; the
machine's PostgreSQL)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import ORMExecuteState

from slices_blueprint.core.database import Database, libpq_url
from slices_blueprint.core.ids import parse_id
from slices_blueprint.qkd.kme import EtsiError, _read_layout
from slices_blueprint.qkd.models import QkdNode
from slices_blueprint.qkd.service import ID_TYPE
from tests.helpers import Api
from tests.qkd.conftest import create_network, two_nodes


async def test_a_network_deleted_while_its_kme_reads_its_layout_is_a_503(db: Database, api: Api, qkd_live: Any) -> None:
    token = api.token("alice", "layout", "exp-layout")
    network_id = parse_id(create_network(api, token, two_nodes("layout"))["id"], ID_TYPE)
    deleted: list[str] = []

    def delete_before_the_nodes_are_read(state: ORMExecuteState) -> None:
        if state.is_select and "WHERE qkd_nodes.network_id" in str(state.statement) and not deleted:
            with psycopg.connect(libpq_url(qkd_live.settings.database_url)) as other, other.transaction():
                other.execute("UPDATE qkd_networks SET status = 'deleted' WHERE id = %s", (network_id,))
                other.execute("DELETE FROM qkd_nodes WHERE network_id = %s", (network_id,))
            deleted.append("between the node's read and its network's nodes")

    async with db.session() as session:
        node_id = await session.scalar(select(QkdNode.id).where(QkdNode.network_id == network_id).limit(1))
        event.listen(session.sync_session, "do_orm_execute", delete_before_the_nodes_are_read)
        with pytest.raises(EtsiError) as refused:
            await _read_layout(session, node_id, qkd_live.settings.qkd_devices)
    assert deleted and (refused.value.status, refused.value.message) == (503, "this KME's QKD network no longer exists")
