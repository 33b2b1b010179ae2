"""The review worklist: findings in a database, a ranked queue, Safer Dx reviews, PPV per rule.

``store.Store`` owns the database (SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL by
URL); ``web.mount`` adds the browser UI under ``/worklist`` to a FastAPI app.
"""
