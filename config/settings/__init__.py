"""Settings per environment: base (shared), dev (`manage.py`, Celery, `make run`), production
(config/wsgi.py, the Docker image) and test (pytest). DJANGO_SETTINGS_MODULE names one of them."""
