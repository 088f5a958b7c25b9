"""Integration tests: real PostgreSQL, real Redis, real ``celery worker`` process (see conftest.py)."""
