"""One SQLite file shared by the web process and a worker (`make run`) stays intact.

SQLite keeps a shared lock on the database file while any of its connections is open; another
process closing its last connection checkpoints the write-ahead log and deletes it only when it
can take that lock. Closing any descriptor of the file drops every lock the process holds on it,
so an app built beside a live connection must not open and close the database file.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from kmeweb import create_app

OTHER_PROCESS = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA journal_mode=WAL")
db.execute("INSERT INTO t VALUES ('from the worker')")
db.commit()
db.close()  # its last connection: it deletes the WAL only if nobody else holds the file
"""


def test_building_an_app_beside_a_live_connection_keeps_the_database_intact(tmp_path, app_config):
    path = tmp_path / "shared.sqlite"
    web = sqlite3.connect(path)
    web.execute("PRAGMA journal_mode=WAL")
    web.execute("CREATE TABLE t (v TEXT)")
    web.execute("INSERT INTO t VALUES ('from the web')")
    web.commit()
    assert web.execute("SELECT v FROM t").fetchall() == [("from the web",)]

    create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path)], check=True)

    web.execute("INSERT INTO t VALUES ('again from the web')")
    web.commit()
    # a third process (the next request's connection, another worker) reads it all, intact
    fresh = sqlite3.connect(path)
    assert fresh.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert sorted(v for (v,) in fresh.execute("SELECT v FROM t")) == [
        "again from the web",
        "from the web",
        "from the worker",
    ]
    fresh.close()
    web.close()
