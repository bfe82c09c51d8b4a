# One image for the four services (and the CLI). Multi-stage: build wheels, then a slim non-root runtime.
# Run a service with: docker run IMAGE services.marketing_view
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY ops ./ops
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 app && useradd --system --uid 10001 --gid app --no-create-home app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
# Secrets (API keys, the card HMAC key) come from the environment or mounted files at run time, never the image.
ENV PYTHONUNBUFFERED=1 \
    HTTP_HOST=0.0.0.0
EXPOSE 8081 8082 8083 8084
ENTRYPOINT ["python", "-m"]
CMD ["services.marketing_view"]
