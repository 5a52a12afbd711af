"""The scheduler's state in Redis belongs to the database it schedules for: a fresh database
behind a Redis an earlier one used pulls at once (it does not wait out the old schedule), the
same database keeps its schedule across restarts, and seeding the demo starts the first pull."""

from __future__ import annotations

import redis
from sqlalchemy import select

from kmeweb.extensions import db
from kmeweb.integration.activation import activate_integration
from kmeweb.integration.settings import save_settings
from kmeweb.operations.models import Operation
from kmeweb.sync.schedule import PERIODIC, Scheduler
from tests.conftest import _empty_tables
from tests.sync_fixtures import simulator_settings

ONLY_PULL = tuple(p for p in PERIODIC if p.name == "pull")


def _activate(session, sim) -> None:
    save_settings(session, simulator_settings(sim, "Demo KME"), "test")
    activate_integration(session, "test")
    session.commit()


def test_a_fresh_database_behind_a_used_redis_pulls_at_once(app, session, redis_url, sim):
    conn = redis.Redis.from_url(redis_url)
    _activate(session, sim)
    earlier = Scheduler(app, conn, periodic=ONLY_PULL)
    assert earlier.tick(now=1000.0) == ["pull"]
    # The earlier run stops (its lock would still be held for a while) ...
    earlier.stop()

    # ... and `make run` starts again on a new database, behind the same Redis.
    session.remove()
    _empty_tables()
    _activate(db.session, sim)
    fresh = Scheduler(app, conn, periodic=ONLY_PULL)
    assert fresh.tick(now=1066.0) == ["pull"]


def test_the_same_database_keeps_its_schedule_across_restarts(app, session, redis_url, sim):
    conn = redis.Redis.from_url(redis_url)
    _activate(session, sim)
    first = Scheduler(app, conn, periodic=ONLY_PULL)
    assert first.tick(now=1000.0) == ["pull"]
    first.stop()
    for key in conn.keys("kmeweb:*scheduler:lock"):
        conn.delete(key)  # the first process is gone
    again = Scheduler(app, conn, periodic=ONLY_PULL)
    assert again.tick(now=1066.0) == []


def test_the_integration_status_reads_this_databases_schedule(app, session, redis_url, sim):
    from kmeweb.sync.status import integration_status

    conn = redis.Redis.from_url(redis_url)
    _activate(session, sim)
    scheduler = Scheduler(app, conn, periodic=ONLY_PULL)
    assert scheduler.tick(now=1000.0) == ["pull"]
    status = integration_status(session, conn)
    assert status["next_pull_at"].timestamp() == 1000.0 + 900


def test_seed_demo_starts_the_first_pull(app, session, runner, sim):
    result = runner.invoke(args=["seed-demo", "--sim-url", sim.url])
    assert result.exit_code == 0, result.output
    assert "demo integration active" in result.output
    operation = session.scalar(select(Operation).where(Operation.dedup_key == "pull"))
    assert operation is not None and operation.status in ("queued", "running", "done")
