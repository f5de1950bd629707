"""Web apps run by ``test_prefork`` under a real gunicorn (subprocesses, never imported by it)."""
