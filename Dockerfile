# Nudge: one image for `nudge api`, `nudge worker` and the one-shot commands.
# Build: docker build -t nudge .      Run: docker run --rm nudge --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# An unprivileged user owns nothing but its home; the code is root-owned and read-only to it.
RUN useradd --create-home --uid 10001 --user-group nudge

WORKDIR /src
# Metadata first, then the packages `[tool.setuptools.packages.find]` includes, so
# editing tests, docs or bench/ does not invalidate the install layer.
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY workflows ./workflows
COPY activities ./activities
COPY triggers ./triggers
COPY schemas ./schemas
RUN pip install . && rm -rf /src/build

USER nudge
WORKDIR /home/nudge
# 8000: API (and /codec, /metrics). The worker exposes nothing unless SDK metrics are bound.
EXPOSE 8000
ENTRYPOINT ["nudge"]
CMD ["--help"]
