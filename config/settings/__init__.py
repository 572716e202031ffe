"""Settings per environment: base (shared), dev (`manage.py`, `make run` and its workers), production
(config/wsgi.py, the Docker image) and test (pytest). DJANGO_SETTINGS_MODULE names one of them."""
