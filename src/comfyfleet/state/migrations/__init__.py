"""Alembic environment and revisions of the state database, shipped inside the package.

`migrate.py` applies them on every open; nothing else imports these modules. To change the
schema: edit `schema.py`, add `versions/vNNNN_<what>.py` with `revision = "NNNN"` and
`down_revision` set to the previous one (hand-written `op.*` calls; SQLite needs
`op.batch_alter_table` for column changes), and the schema test proves the two agree.
"""
