"""The image policy over realistic `docker image inspect` and history dicts."""

from __future__ import annotations

import copy
from typing import Any

from services.release.image_policy import PolicyResult, check_image, failures, mask_text

# `docker image inspect` of a Next.js standalone image built by a good multi-stage Dockerfile.
GOOD: dict[str, Any] = {
    "Id": "sha256:3f1c0a7d9b2e",
    "RepoTags": ["ghcr.io/example/food-management:1.5.0"],
    "Config": {
        "User": "nextjs",
        "ExposedPorts": {"3000/tcp": {}},
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NODE_VERSION=20.17.0",
                "YARN_VERSION=1.22.22", "NODE_ENV=production", "PORT=3000", "HOSTNAME=0.0.0.0"],
        "Cmd": ["node", "server.js"],
        "Healthcheck": {"Test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/api/health"],
                        "Interval": 10_000_000_000},
        "WorkingDir": "/app",
        "Entrypoint": ["/sbin/tini", "--"],
    },
    "Architecture": "amd64",
    "Os": "linux",
    "Size": 151_234_567,
}
# `docker image history --no-trunc` (newest first), BuildKit's and the base image's entries.
GOOD_HISTORY: list[dict[str, Any]] = [
    {"Id": "<missing>", "CreatedBy": 'CMD ["node" "server.js"]', "Size": 0},
    {"Id": "<missing>", "CreatedBy": 'ENTRYPOINT ["/sbin/tini" "--"]', "Size": 0},
    {"Id": "<missing>", "CreatedBy": 'HEALTHCHECK &{["CMD" "wget" "-q" "-O" "/dev/null" "http://127.0.0.1:3000/api/health"]'
                                     ' "10s" "3s" "0s" "0s" \'\\x03\'}', "Size": 0},
    {"Id": "<missing>", "CreatedBy": "USER nextjs", "Size": 0},
    {"Id": "<missing>", "CreatedBy": "COPY /app/.next/standalone ./ # buildkit", "Size": 48_000_000},
    {"Id": "<missing>", "CreatedBy": "RUN /bin/sh -c apk add --no-cache tini # buildkit", "Size": 90_000},
    {"Id": "<missing>", "CreatedBy": "RUN /bin/sh -c addgroup --system --gid 1001 nodejs"
                                     " && adduser --system --uid 1001 nextjs # buildkit", "Size": 4_000},
    {"Id": "<missing>", "CreatedBy": "ENV NODE_ENV=production", "Size": 0},
    {"Id": "<missing>", "CreatedBy": "WORKDIR /app", "Size": 0},
    # node:20-alpine's own layers: a toolchain installed and removed in the same layer.
    {"Id": "<missing>", "CreatedBy": "/bin/sh -c apk add --no-cache --virtual .build-deps-yarn curl gnupg tar"
                                     " && apk del .build-deps-yarn", "Size": 5_000_000},
    {"Id": "<missing>", "CreatedBy": "/bin/sh -c addgroup -g 1000 node && apk add --no-cache libstdc++"
                                     " && apk add --no-cache --virtual .build-deps curl make gcc g++ python3"
                                     " && ./configure && make -j4 && apk del .build-deps", "Size": 120_000_000},
    {"Id": "<missing>", "CreatedBy": "/bin/sh -c #(nop) ADD file:37a76ec18f9887751cd8473744917d08b7431fc4085097bb"
                                     " in / ", "Size": 7_800_000},
]
MULTI_STAGE = """\
# syntax=docker/dockerfile:1
FROM node:20-alpine AS deps
RUN apk add --no-cache libc6-compat
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci

FROM node:20-alpine AS builder
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
ARG NEXT_PUBLIC_API_URL
RUN npm run build

FROM node:20-alpine AS runner
WORKDIR /app
ENV NODE_ENV=production
RUN apk add --no-cache tini \\
 && addgroup --system --gid 1001 nodejs \\
 && adduser --system --uid 1001 nextjs
COPY --from=builder /app/.next/standalone ./
USER nextjs
HEALTHCHECK CMD wget -q -O /dev/null http://127.0.0.1:3000/api/health
ENTRYPOINT ["/sbin/tini", "--"]
CMD ["node", "server.js"]
"""
SINGLE_STAGE = """\
FROM node:20
WORKDIR /app
COPY . .
RUN apt-get update && apt-get install -y build-essential python3
RUN npm install
RUN npm run build
CMD ["npm", "start"]
"""
ARGS = {"NEXT_PUBLIC_API_URL": "https://api.food-management.example.com"}


def by_name(results: list[PolicyResult]) -> dict[str, PolicyResult]:
    return {r.name: r for r in results}


def with_config(**changes: Any) -> dict[str, Any]:
    attrs = copy.deepcopy(GOOD)
    attrs["Config"].update(changes)
    return attrs


def test_a_good_image_passes_everything() -> None:
    results = check_image(GOOD, GOOD_HISTORY, True, ARGS, MULTI_STAGE)
    assert [r.name for r in results] == [
        "non-root user", "healthcheck", "multi-stage build", "no build toolchain", "no secrets", "init process"]
    assert failures(results) == [], [r.line for r in results]
    checked = by_name(results)
    assert checked["non-root user"].detail == "runs as nextjs"
    assert checked["multi-stage build"].detail.startswith("3 stages; the final one: FROM node:20-alpine AS runner")
    assert checked["init process"].line == 'PASS init process: ENTRYPOINT /sbin/tini --'
    assert all(r.line.startswith("PASS ") for r in results)


def test_root_user() -> None:
    for user in ("", "root", "0", "0:0", "root:root"):
        result = by_name(check_image(with_config(User=user), GOOD_HISTORY, False, ARGS, MULTI_STAGE))["non-root user"]
        assert not result.passed, user
        assert "USER app" in result.fix
        assert result.line.startswith("FAIL non-root user: ") and " -- fix: " in result.line
    assert by_name(check_image(with_config(User="1001:1001"), None, False, {}, None))["non-root user"].passed


def test_healthcheck_missing_or_disabled() -> None:
    missing = by_name(check_image(with_config(Healthcheck=None), GOOD_HISTORY, False, ARGS, MULTI_STAGE))
    assert not missing["healthcheck"].passed and missing["healthcheck"].detail == "no HEALTHCHECK"
    assert "HEALTHCHECK" in missing["healthcheck"].fix
    disabled = by_name(check_image(with_config(Healthcheck={"Test": ["NONE"]}), None, False, {}, None))
    assert not disabled["healthcheck"].passed


def test_single_stage_with_a_toolchain() -> None:
    history = [
        {"CreatedBy": '/bin/sh -c #(nop)  CMD ["npm" "start"]'},
        {"CreatedBy": "/bin/sh -c npm run build"},
        {"CreatedBy": "/bin/sh -c npm install"},
        {"CreatedBy": "/bin/sh -c apt-get update && apt-get install -y build-essential python3"},
        {"CreatedBy": "/bin/sh -c #(nop) COPY dir:5f0d0a1b2c in /app "},
    ]
    checked = by_name(check_image(GOOD, history, False, ARGS, SINGLE_STAGE))
    assert not checked["multi-stage build"].passed
    assert checked["multi-stage build"].detail == "1 FROM: build and runtime share one stage"
    assert "COPY --from=builder" in checked["multi-stage build"].fix
    toolchain = checked["no build toolchain"]
    assert not toolchain.passed
    assert "installs build-essential" in toolchain.detail
    assert "`npm install` without --omit=dev" in toolchain.detail
    assert "builder stage" in toolchain.fix


def test_toolchain_from_paths_and_the_dockerfile_alone() -> None:
    copied = [{"CreatedBy": "COPY /app/node_modules/.bin ./node_modules/.bin # buildkit"},
              {"CreatedBy": "RUN /bin/sh -c npm ci --omit=dev # buildkit"},
              {"CreatedBy": "RUN /bin/sh -c npm install -g pm2 # buildkit"}]
    result = by_name(check_image(GOOD, copied, False, {}, MULTI_STAGE))["no build toolchain"]
    assert not result.passed
    assert result.detail == "layer `COPY /app/node_modules/.bin ./node_modules/.bin # buildkit` adds node_modules/.bin"
    # Without a history, the Dockerfile's final stage (and only it) is read.
    dockerfile = MULTI_STAGE.replace("RUN apk add --no-cache tini", "RUN apk add --no-cache tini make gcc")
    result = by_name(check_image(GOOD, None, False, {}, dockerfile))["no build toolchain"]
    assert not result.passed and "installs make" in result.detail
    assert by_name(check_image(GOOD, None, False, {}, MULTI_STAGE))["no build toolchain"].passed  # deps: npm ci


def test_unchecked_without_the_dockerfile_is_a_skip() -> None:
    results = by_name(check_image(GOOD, None, False, {}, None))
    assert results["multi-stage build"].passed and results["multi-stage build"].skipped
    assert results["multi-stage build"].line.startswith("SKIP multi-stage build: not checked")
    assert results["no build toolchain"].skipped


def test_secret_looking_build_args_and_env_are_flagged_and_masked() -> None:
    attrs = with_config(Env=[*GOOD["Config"]["Env"], "STRIPE_SECRET_KEY=sk_live_abc123", "NEXTAUTH_SECRET=",
                             "API_TOKEN=tok-987"])
    history = [*GOOD_HISTORY[:4],
               {"CreatedBy": "|2 NEXT_PUBLIC_API_URL=https://x NPM_TOKEN=npm_s3cr3t /bin/sh -c npm ci"}]
    args = {**ARGS, "NPM_TOKEN": "npm_s3cr3t", "DB_PASSWORD": "hunter2", "SENTRY_AUTH_KEY": ""}
    results = check_image(attrs, history, False, args, MULTI_STAGE)
    secrets = by_name(results)["no secrets"]
    assert not secrets.passed
    assert secrets.detail == (
        "build arg NPM_TOKEN=****, build arg DB_PASSWORD=****, ENV STRIPE_SECRET_KEY=****, ENV API_TOKEN=****,"
        " build arg NPM_TOKEN=**** recorded in the history")
    assert "--mount=type=secret" in secrets.fix
    text = " ".join(r.line for r in results)
    for value in ("sk_live_abc123", "tok-987", "npm_s3cr3t", "hunter2"):
        assert value not in text
    # The toolchain finding quotes the layer, without the recorded build args.
    assert "npm ci" in by_name(results)["no build toolchain"].detail


def test_secrets_only_the_history_keeps_are_flagged_in_both_builders_words() -> None:
    """An ARG default and an ENV cleared later are gone from the image's config, not from its history.
    The entries are as dockerd 28's classic builder and BuildKit (Docker 20.10) wrote them."""
    attrs = with_config(Env=[*GOOD["Config"]["Env"], "API_SECRET="])
    classic = [{"CreatedBy": "/bin/sh -c #(nop)  ENV API_SECRET="},
               {"CreatedBy": "|2 NPM_TOKEN=npm_live_42 OTHER=x /bin/sh -c echo used > /t"},
               {"CreatedBy": "/bin/sh -c #(nop)  ENV API_SECRET=s3cr3t_env DB_PASSWORD=two words"},
               {"CreatedBy": "/bin/sh -c #(nop)  ARG SENTRY_AUTH_TOKEN=sntrys_default"},
               {"CreatedBy": "/bin/sh -c #(nop)  ARG NPM_TOKEN"}]  # no default: the RUN above recorded it
    buildkit = [{"CreatedBy": "ENV API_SECRET="},
                {"CreatedBy": "RUN |2 NPM_TOKEN=npm_live_42 OTHER=x /bin/sh -c echo used > /t # buildkit"},
                {"CreatedBy": "ENV API_SECRET=s3cr3t_env DB_PASSWORD=two words"},
                {"CreatedBy": "ARG SENTRY_AUTH_TOKEN=sntrys_default"},
                {"CreatedBy": "ARG NPM_TOKEN"}]
    for history in (classic, buildkit):
        results = check_image(attrs, history, False, ARGS, MULTI_STAGE)
        assert by_name(results)["no secrets"].detail == (
            "build arg NPM_TOKEN=**** recorded in the history, ENV API_SECRET=**** recorded in the history,"
            " ENV DB_PASSWORD=**** recorded in the history, build arg SENTRY_AUTH_TOKEN=**** recorded in the history"
        ), history
        text = " ".join(r.line for r in results)
        assert not any(value in text for value in ("npm_live_42", "s3cr3t_env", "sntrys_default"))


def test_mask_text() -> None:
    assert mask_text("ENV API_KEY=abc PORT=3000 password='x y'") == "ENV API_KEY=**** PORT=3000 password=****"


def test_init_process_only_when_required() -> None:
    plain = with_config(Entrypoint=None)
    assert by_name(check_image(plain, None, False, {}, None))["init process"].passed
    required = by_name(check_image(plain, None, True, {}, None))["init process"]
    assert not required.passed and "tini" in required.fix
    for entrypoint in (["/usr/bin/docker-init", "--"], ["dumb-init", "node"], "/sbin/tini -- node"):
        assert by_name(check_image(with_config(Entrypoint=entrypoint), None, True, {}, None))["init process"].passed


def test_results_are_json() -> None:
    result = check_image(with_config(User="root"), None, False, {}, None)[0]
    assert result.to_json() == {"name": "non-root user", "passed": False, "detail": "USER root is root",
                                "fix": result.fix, "skipped": False}
    assert PolicyResult(**result.to_json()) == result
