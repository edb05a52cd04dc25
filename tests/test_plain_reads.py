"""The plain reads of resources (GET /resources and /resources/{id}, the web pages: psycopg,
no session, no ORM) answer what the SQLAlchemy reads answered: the same rows for each kind of
caller (``Caller.visible_sql`` against ``Caller.visible`` in PostgreSQL), and the same bytes as
``ResourceOut``'s serialization, over real HTTP; a row's remembered JSON follows its changes."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import orjson
import psycopg
import psycopg.errors
import pytest
from psycopg.types.json import Jsonb
from pydantic import TypeAdapter
from pydantic_core import to_json
from sqlalchemy import select

from slices_blueprint.catalog.models import DiskImage, Flavor
from slices_blueprint.core.database import Database
from slices_blueprint.core.dev_issuer import dev_ids
from slices_blueprint.core.errors import NotFound
from slices_blueprint.core.ids import format_id
from slices_blueprint.core.models import utcnow
from slices_blueprint.core.responses import (
    json_answer,
    json_items_answer,
    plain_json,
)
from slices_blueprint.core.security import VerifiedToken
from slices_blueprint.identity.caller import Caller
from slices_blueprint.identity.models import Experiment, Project, User
from slices_blueprint.reservations.models import Reservation
from slices_blueprint.resources import plain_reads, service
from slices_blueprint.resources.models import ComputeResource
from slices_blueprint.resources.schemas import ResourceOut
from tests.helpers import Api

SITE = "test-site1"
ACCESS = {"ssh_user": "debian", "ipv4": "10.0.0.7", "public_ipv4": "198.51.100.9", "ssh_port": 2222,
          "console_url": "https://console.example/x", "nested": {"list": [1, 2.5, None, True], "ü": "ß"}}


@dataclass
class World:
    """Rows of three projects, each with an experiment, made by two users (or by none)."""

    projects: list[str]
    experiments: list[Experiment]
    users: list[User]
    resources: list[ComputeResource]


def _token(kind: str, subject: str) -> VerifiedToken:
    return VerifiedToken(kind=kind, issuer="https://issuer.test", subject=subject, claims={})  # type: ignore[arg-type]


def _resource(experiment: Experiment, flavor: Flavor, image: DiskImage, name: str, *, created_by: str | None,
              status: str = "running", access: dict | None = None, reservation: Reservation | None = None,
              now: dt.datetime) -> ComputeResource:
    return ComputeResource(
        id=uuid.UUID(int=random.getrandbits(120)), experiment_id=experiment.id, project_id=experiment.project_id, created_by=created_by,
        friendly_name=name, flavor_id=flavor.id, disk_image_id=image.id, provider="test-double", status=status,
        status_reason=None if status == "running" else f"it is {status}",
        provider_resource_id=f"node-{name}" if status == "running" else None, request_config={},
        access=access or {}, provider_data={}, expires_at=now + dt.timedelta(days=1),
        reservation_id=reservation.id if reservation else None, created_at=now, updated_at=now)


async def _world(db: Database) -> World:
    tag = uuid.uuid4().hex[:8]
    now = utcnow().replace(microsecond=123456)
    async with db.session() as session:
        projects = [Project(id=f"proj_{tag}_{i}") for i in range(3)]
        experiments = [Experiment(id=f"exp_{tag}_{i}", project_id=p.id) for i, p in enumerate(projects)]
        users = [User(id=f"user_{tag}_{i}") for i in range(2)]
        flavor = Flavor(friendly_name=f"f-{tag}", flavor_type="test-double", vcpus=1, ram_mib=512)
        image = DiskImage(friendly_name=f"i-{tag}", flavor_type="test-double", location=f"x-{tag}")
        session.add_all([*projects, *users, flavor, image])
        await session.flush()
        session.add_all(experiments)
        await session.flush()
        reservation = Reservation(project_id=projects[0].id, experiment_id=experiments[0].id,
                                  starts_at=now, ends_at=now + dt.timedelta(days=2))
        session.add(reservation)
        await session.flush()
        u, v = (user.id for user in users)
        e1, e2, e3 = experiments
        resources = [
            _resource(e1, flavor, image, "a", created_by=u, access=ACCESS, reservation=reservation, now=now),
            _resource(e1, flavor, image, "b", created_by=None, status="pending", now=now),
            _resource(e2, flavor, image, "c", created_by=u, access={"ipv4": "10.1.0.2"}, now=now),
            _resource(e2, flavor, image, "d", created_by=v, now=now.replace(microsecond=0)),
            _resource(e3, flavor, image, "e", created_by=None, status="error", now=now),
            _resource(e3, flavor, image, "f", created_by=v, access={"floating_ip": "x", "ipv4": "x"}, now=now),
            _resource(e3, flavor, image, "g", created_by=u, status="deleted", now=now),
        ]
        session.add_all(resources)
    return World([p.id for p in projects], experiments, users, resources)


def _callers(world: World) -> dict[str, Caller]:
    u, v = world.users
    return {
        "experiment": Caller(kind="experiment", token=_token("experiment", world.experiments[0].id),
                             experiment=world.experiments[0], project_ids={world.projects[0]}),
        "user with a project": Caller(kind="user", token=_token("user", u.id), user=u,
                                      project_ids={world.projects[1], "proj_nowhere"}),
        "user with none": Caller(kind="user", token=_token("user", v.id), user=v, project_ids=set()),
        "admin": Caller(kind="user", token=_token("user", u.id), user=u, is_admin=True),
    }


EXPECTED = {  # the names each caller sees: the rule, written out
    "experiment": {"a", "b"},
    "user with a project": {"c", "d", "a", "g"},  # its project's, and its own anywhere
    "user with none": {"d", "f"},  # its own
    "admin": {"a", "b", "c", "d", "e", "f", "g"},
}


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
async def world(db: Database) -> World:
    return await _world(db)


async def _ids(conn: psycopg.AsyncConnection, *, sql: str, params: dict) -> set[uuid.UUID]:
    return {row[0] for row in await (await conn.execute(sql, params)).fetchall()}


async def test_the_sql_scope_selects_the_rows_of_the_orm_scope(db: Database, world: World) -> None:
    ids = [r.id for r in world.resources]
    name = {r.id: r.friendly_name for r in world.resources}
    for kind, caller in _callers(world).items():
        query = caller.visible(select(ComputeResource.id), experiment_id=ComputeResource.experiment_id,
                               project_id=ComputeResource.project_id, created_by=ComputeResource.created_by)
        async with db.read_session() as session:
            by_orm = set((await session.scalars(query.where(ComputeResource.id.in_(ids)))).all())
        scope, params = caller.visible_sql()
        by_sql = await db.plain_read(partial(_ids, sql=f"SELECT id FROM compute_resources WHERE {scope} "
                                                       "AND id = ANY(%(ids)s)", params={**params, "ids": ids}))
        assert by_sql == by_orm, kind
        assert {name[i] for i in by_sql} == EXPECTED[kind], kind
        by_rule = {r.id for r in world.resources
                   if caller.sees(experiment_id=r.experiment_id, project_id=r.project_id, created_by=r.created_by)}
        assert by_sql == by_rule, kind


async def _orm_page(session, caller: Caller, *, include_deleted: bool, status: str | None, limit: int,
                   after: uuid.UUID | None) -> list[ComputeResource]:
    """The page the plain listing must answer, read through the ORM's scoping
    (``service.scoped_query``, i.e. ``Caller.visible``) and the filters the API documents."""
    query = service.scoped_query(caller).order_by(ComputeResource.id).limit(limit)
    if not include_deleted:
        query = query.where(ComputeResource.status != "deleted")
    if status:
        query = query.where(ComputeResource.status == status)
    if after:
        query = query.where(ComputeResource.id > after)
    return list(await session.scalars(query))


def _listed(resource: ComputeResource) -> tuple:
    """An ORM row's values in :class:`plain_reads.ResourceRow`'s order."""
    return tuple(getattr(resource, name) for name in plain_reads.ResourceRow._fields)


async def test_plain_reads_find_and_answer_what_the_session_reads_do(db: Database, world: World) -> None:
    """Row for row, and byte for byte: each resource read by id (or 404 alike), and pages with
    every filter (the world's rows sort first: the admin sees every test's too)."""
    world_ids = {r.id for r in world.resources}
    for kind, caller in _callers(world).items():
        for resource in world.resources:
            async with db.read_session() as session:
                try:
                    old = json_answer(service.resource_out(  # the ORM read the actions use
                        await service.get_resource(session, caller, resource.id), SITE)).body
                except NotFound as exc:
                    old = exc
            for read in (_read_as_row, _read_as_shown):
                try:
                    new = await read(db, caller, resource.id)
                except NotFound as exc:
                    new = exc
                if isinstance(old, NotFound):
                    assert isinstance(new, NotFound) and str(new) == str(old), (kind, resource.friendly_name)
                    assert resource.friendly_name not in EXPECTED[kind]
                else:
                    assert new == old, (kind, resource.friendly_name, read.__name__)
        for filters in ({"include_deleted": False, "status": None, "limit": 100, "after": None},
                        {"include_deleted": True, "status": None, "limit": 3, "after": None},
                        {"include_deleted": True, "status": None, "limit": 100, "after": min(world.resources,
                                                                                          key=lambda r: r.id).id},
                        {"include_deleted": False, "status": "running", "limit": 100, "after": None}):
            async with db.read_session() as session:
                old_rows = await _orm_page(session, caller, **filters)
            new_rows = await db.plain_read(partial(plain_reads.list_plain, caller=caller, **filters))
            shown = await db.plain_read(partial(plain_reads.list_shown, caller=caller, site=SITE, **filters))
            assert len(shown.items) == len(new_rows) and shown.last_id == (new_rows[-1].id if new_rows else None)
            world_names = {format_id("resource", SITE, i) for i in world_ids}
            old_rows = [r for r in old_rows if r.id in world_ids]
            new_rows = [r for r in new_rows if r.id in world_ids]
            assert {r.friendly_name for r in new_rows} <= EXPECTED[kind]
            assert [tuple(r) for r in new_rows] == [_listed(r) for r in old_rows], (kind, filters)
            old_page = json_answer([service.resource_out(r, SITE) for r in old_rows], ResourceOut).body
            new_page = plain_json([service.resource_view(r, SITE) for r in new_rows])
            shown_page = json_items_answer([item for item in shown.items if orjson.loads(item)["id"] in world_names]).body
            assert new_page == shown_page == old_page, (kind, filters)


async def _read_as_row(db: Database, caller: Caller, resource_id: uuid.UUID) -> bytes:
    """One resource's API answer from its :class:`plain_reads.ResourceRow`."""
    row = await db.plain_read(partial(plain_reads.read_plain, caller=caller, resource_id=resource_id))
    return plain_json(service.resource_view(row, SITE))


async def _read_as_shown(db: Database, caller: Caller, resource_id: uuid.UUID) -> bytes:
    """One resource's API answer as :func:`plain_reads.read_shown` gives it."""
    return await db.plain_read(partial(plain_reads.read_shown, caller=caller, site=SITE, resource_id=resource_id))


async def test_the_plain_answer_is_resource_outs_serialization(db: Database, world: World) -> None:
    """With and without access, ssh, a reservation; microseconds or none; nulls."""
    async with db.read_session() as session:
        orm = {r.id: r for r in (await session.scalars(
            select(ComputeResource).where(ComputeResource.id.in_([r.id for r in world.resources])))).all()}
    rows = await db.plain_read(lambda conn: plain_reads.list_plain(conn, _callers(world)["admin"], include_deleted=True,
                                                                   status=None, limit=1000, after=None))
    rows = [r for r in rows if r.id in orm]
    assert len(rows) == len(world.resources)
    models = [ResourceOut.model_validate(service.resource_view(orm[r.id], SITE)) for r in rows]
    assert plain_json([service.resource_view(r, SITE) for r in rows]) == \
        TypeAdapter(list[ResourceOut]).dump_json(models)
    for row, model in zip(rows, models, strict=True):
        assert plain_json(service.resource_view(row, SITE)) == model.model_dump_json().encode()
    shown = {m.friendly_name: m for m in models}
    assert shown["a"].ssh_command == "ssh -p 2222 debian@198.51.100.9" and shown["a"].reservation_id
    assert shown["b"].ssh_command is None and shown["b"].reservation_id is None and shown["b"].access == {}


async def _execute(conn: psycopg.AsyncConnection, *, sql: str, params: dict) -> None:
    await conn.execute(sql, params)


async def test_a_rows_remembered_json_follows_every_change_of_the_row(db: Database, world: World) -> None:
    """The JSON is remembered by the row's bytes, not by its id or ``updated_at``: a change
    written with plain SQL that leaves ``updated_at`` as it was is shown at once, and the
    row as it was is shown as it was once its values are back; each site shows its ids."""
    caller = _callers(world)["admin"]
    resource = next(r for r in world.resources if r.friendly_name == "c")
    before = await _read_as_shown(db, caller, resource.id)
    change = ("UPDATE compute_resources SET status = %(status)s, access = %(access)s WHERE id = %(id)s")
    try:
        await db.plain_read(partial(_execute, sql=change, params={
            "status": "error", "access": Jsonb({"ipv4": "10.1.0.2", "ssh_user": "u2"}),
            "id": resource.id}))
        changed = await _read_as_shown(db, caller, resource.id)
        assert orjson.loads(changed)["status"] == "error" and orjson.loads(changed)["ssh_command"] == "ssh u2@10.1.0.2"
        assert orjson.loads(changed)["updated_at"] == orjson.loads(before)["updated_at"]
        assert changed == await _read_as_row(db, caller, resource.id)
    finally:
        await db.plain_read(partial(_execute, sql=change, params={
            "status": resource.status, "access": Jsonb(resource.access), "id": resource.id}))
    assert await _read_as_shown(db, caller, resource.id) == before
    elsewhere = await db.plain_read(partial(plain_reads.read_shown, caller=caller, site="other-site",
                                            resource_id=resource.id))
    assert orjson.loads(elsewhere)["id"] == format_id("resource", "other-site", resource.id)
    assert orjson.loads(before)["id"] == format_id("resource", SITE, resource.id)


def test_the_routes_answer_resource_outs_bytes_and_hide_other_experiments(live, http, database_url: str) -> None:
    """Over HTTP: an experiment token, a user token (its project's and its own) and the
    admin; another experiment's resource is a 404 like a missing one; pages and X-Next-After."""
    api = Api(live, http)
    tag = uuid.uuid4().hex[:6]
    mine = api.token("plainer", f"pp-{tag}", "plain")
    user = api.token("plainer", f"pp-{tag}")
    stranger = api.token("eve", f"other-{tag}", "plain")
    admin = api.token("admin", "-")
    for token in (mine, user, stranger, admin):
        api.ok("GET", "/resources", token, params={"limit": 1})  # its experiment, project and user recorded
    ids = dev_ids("plainer", f"pp-{tag}", "plain")

    async def add_and_read() -> list[ComputeResource]:
        db = Database(database_url, pool_size=1)
        try:
            now = utcnow()
            async with db.session() as session:
                experiment = await session.get(Experiment, ids["experiment"])
                assert experiment is not None
                flavor = Flavor(friendly_name=f"pf-{tag}", flavor_type="test-double", vcpus=1, ram_mib=512)
                image = DiskImage(friendly_name=f"pi-{tag}", flavor_type="test-double", location=f"x-{tag}")
                session.add_all([flavor, image])
                await session.flush()
                reservation = Reservation(project_id=experiment.project_id, experiment_id=experiment.id,
                                          starts_at=now, ends_at=now + dt.timedelta(days=2))
                session.add(reservation)
                await session.flush()
                rows = [_resource(experiment, flavor, image, f"r{i}", created_by=ids["user"] if i % 2 else None,
                                  access=ACCESS if i == 0 else ({"ipv4": "10.0.0.1"} if i == 1 else None),
                                  reservation=reservation if i < 2 else None, now=now) for i in range(5)]
                rows.append(_resource(experiment, flavor, image, "gone", created_by=None, status="deleted", now=now))
                session.add_all(rows)
            async with db.read_session() as session:
                found = (await session.scalars(select(ComputeResource).where(
                    ComputeResource.id.in_([r.id for r in rows])))).all()
                return sorted(found, key=lambda r: r.id)
        finally:
            await db.dispose()

    rows = asyncio.run(add_and_read())
    models = [ResourceOut.model_validate(service.resource_view(r, live.settings.site_id)) for r in rows]
    live_models = [m for m, r in zip(models, rows, strict=True) if r.status != "deleted"]
    one = TypeAdapter(ResourceOut)
    for token in (mine, user):
        for row, model in zip(rows, models, strict=True):
            answer = api.call("GET", f"/resources/{model.id}", token)
            assert answer.status_code == 200 and answer.content == one.dump_json(model)
            assert answer.headers["content-type"] == "application/json"
        page = api.call("GET", "/resources", token)
        assert page.content == TypeAdapter(list[ResourceOut]).dump_json(live_models)
        assert "X-Next-After" not in page.headers
        first = api.call("GET", "/resources", token, params={"limit": 2})
        assert first.content == TypeAdapter(list[ResourceOut]).dump_json(live_models[:2])
        assert first.headers["X-Next-After"] == live_models[1].id
        rest = api.call("GET", "/resources", token, params={"limit": 2, "after": live_models[1].id,
                                                             "include_deleted": True, "status": "running"})
        assert [r["friendly_name"] for r in rest.json()] == [m.friendly_name for m in live_models[2:4]]
    admin_answer = api.call("GET", f"/resources/{models[0].id}", admin)
    assert admin_answer.status_code == 200 and admin_answer.content == one.dump_json(models[0])
    missing = format_id("resource", live.settings.site_id, uuid.uuid4())
    for rid in (models[0].id, models[-1].id):
        hidden = api.call("GET", f"/resources/{rid}", stranger)
        absent = api.call("GET", f"/resources/{missing}", stranger)
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["detail"] == absent.json()["detail"]
    assert api.ok("GET", "/resources", stranger) == []
    assert api.call("GET", "/resources", None).status_code == 401
    assert api.call("GET", f"/resources/{models[0].id}", None).status_code == 401
    assert api.call("GET", f"/resources/{models[0].id}", mine[:-4] + "AAAA").status_code == 401


async def test_a_plain_read_gives_its_connection_back_as_it_came(database_url: str) -> None:
    """Out of autocommit for the sessions after it; one that failed a statement is kept, one
    killed under it is replaced, one cancelled mid-statement comes back with the statement
    cancelled (psycopg cancels it) or is replaced; the pool is the sessions' pool."""
    db = Database(database_url, pool_size=1)
    pool = db.engine.sync_engine.pool

    async def pid_of(conn: psycopg.AsyncConnection) -> int:
        return conn.info.backend_pid

    async def select_1(conn: psycopg.AsyncConnection) -> tuple | None:
        return await (await conn.execute("SELECT 1")).fetchone()

    try:
        async def failing_then_working(conn: psycopg.AsyncConnection) -> int:
            assert conn.autocommit and pool.checkedout() == 1
            with pytest.raises(psycopg.errors.UndefinedTable):
                await conn.execute("SELECT * FROM no_such_table")
            assert await select_1(conn) == (1,)
            return conn.info.backend_pid

        pid = await db.plain_read(failing_then_working)
        assert pool.checkedout() == 0
        with pytest.raises(RuntimeError):
            async with db.session() as session:  # the same connection, in a transaction again
                connection = await session.connection()
                assert not (await connection.get_raw_connection()).driver_connection.autocommit
                await connection.exec_driver_sql("CREATE TABLE plain_probe (x int)")
                raise RuntimeError("rolled back")

        async def probe(conn: psycopg.AsyncConnection) -> tuple[int, tuple | None]:
            return conn.info.backend_pid, await (await conn.execute("SELECT to_regclass('plain_probe')")).fetchone()

        assert await db.plain_read(probe) == (pid, (None,))

        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            await db.plain_read(select_1)
        replaced = await db.plain_read(pid_of)
        assert replaced != pid

        async def sleeping(conn: psycopg.AsyncConnection) -> None:
            await conn.execute("SELECT pg_sleep(30)")

        task = asyncio.create_task(db.plain_read(sleeping))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert pool.checkedout() == 0
        assert await db.plain_read(select_1) == (1,)
        with psycopg.connect(database_url, autocommit=True) as admin:  # its statement did not run on
            assert admin.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                 "AND query LIKE '%%pg_sleep(30)%%' AND pid <> pg_backend_pid()").fetchone() == (0,)
    finally:
        await db.dispose()


@pytest.mark.parametrize("value", [
    {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "µs": dt.datetime(2026, 1, 1, 0, 0, 0, 5, tzinfo=dt.UTC),
     "paris": dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))), "id": uuid.uuid4()},
    {"text": "é\u2028\x00</script>", "float": -1e-7, "int": 2**63 - 1, "list": [None, True, 1.5]},
    {"access": {"huge": 2**70}},  # past 64 bits: orjson refuses it, pydantic writes it
])
def test_plain_json_writes_pydantics_bytes(value: dict) -> None:
    assert plain_json(value) == to_json(value)
    assert plain_json([value, value]) == to_json([value, value])
