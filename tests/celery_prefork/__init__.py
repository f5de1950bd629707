"""A Celery app for ``test_celery``: a prefork worker whose exporter was made before the fork."""
