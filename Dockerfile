# The ledger's image: the package and its `credits` command, run as an unprivileged user.
# compose.yaml starts each process (API, worker, scheduler, projector) from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ./ledger
COPY workers ./workers
COPY projections ./projections
RUN pip install . && rm -rf /app/build

RUN useradd --create-home --uid 10001 --user-group credits
USER credits
# The embedded default (no DATABASE_URL) would keep its servers here.
ENV CREDITS_DATA_DIR=/home/credits/.credits

EXPOSE 8000
CMD ["credits", "serve", "--api-only", "--host", "0.0.0.0", "--port", "8000"]
