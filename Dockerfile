# The production image: one image for web, worker and beat.
FROM python:3.11-slim-bookworm
# The production settings for every process in the image (gunicorn, manage.py, celery).
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=config.settings.production
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
# Now the project itself (editable, pointing at /app): it puts the `studio` command on the PATH.
RUN uv sync --frozen --no-dev
# Throwaway values: the production settings refuse to load without them, and collectstatic uses none.
RUN SECRET_KEY=collectstatic KEY_ENCRYPTION_KEYS=build:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --noinput
RUN useradd --create-home studio && mkdir -p /app/var && chown studio /app/var
USER studio
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "8", "--timeout", "120", "--access-logfile", "-"]
