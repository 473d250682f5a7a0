"""Queenbee settings, read from the environment (and an optional `.env` file).

With nothing set, Queenbee runs on the embedded default: SQLite, the in-memory
channel layer and local files. `DATABASE_URL` switches to PostgreSQL, `REDIS_URL`
to channels-redis (and a Redis cache), so that many processes act as one.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from queenbee_site import secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

# --- Core ---------------------------------------------------------------------

# Development is asked for (DEBUG=1): a process that says nothing is served as
# in production (no tracebacks, no settings in error pages), whatever it runs on.
DEBUG = env.bool("DEBUG", default=False)
# SECRET_KEY wins when set. Processes sharing a database (DATABASE_URL) must sign
# with one key (admin sessions, signed download URLs, file folders), so there it
# is required. The embedded default generates a key on first run and keeps it in
# its data folder beside db.sqlite3 and media/ (queenbee_site/secret_key.py), so
# it runs with nothing set; `manage.py check --deploy` names it (queenbee.W002).
SECRET_KEY_FILE = env.path("SECRET_KEY_FILE", default=BASE_DIR / "secret_key")
SECRET_KEY = env.str("SECRET_KEY", default="")
SECRET_KEY_GENERATED = not SECRET_KEY
if SECRET_KEY_GENERATED and env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured(
        "Set SECRET_KEY: DATABASE_URL is set, and every Queenbee process sharing that database must sign with the same key."
    )
if SECRET_KEY_GENERATED:
    SECRET_KEY = secret_key.read_or_create(Path(SECRET_KEY_FILE))
# The embedded default answers on this machine only (as daphne -b 127.0.0.1 listens);
# a served name is set here. `*` is flagged by `check --deploy` (queenbee.W003).
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[".localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",  # its system checks
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
    "workers",
    "routing",
    "stats",
    "finetune",
    "billing",
    "pages",
    "trust",
]

MIDDLEWARE = [
    "queenbee_site.middleware.RequestLogMiddleware",
    "routing.middleware.DrainingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Paths served by the API's own stack (queenbee_site/api_handler.py): only the
# middleware an API call needs, each run without a thread hop. The hot endpoints
# only; files, fine-tuning and the admin keep the full stack.
API_PATH_PREFIXES = ("/v1/chat/", "/v1/completions", "/v1/embeddings", "/v1/images/", "/v1/models", "/worker/")
API_MIDDLEWARE = [
    "queenbee_site.middleware.RequestLogMiddleware",
    "routing.middleware.DrainingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "queenbee_site.urls"
ASGI_APPLICATION = "queenbee_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Static files (the admin's and the API docs page's) are served by the process
# itself in every mode, DEBUG or not: ServeStatic (whitenoise's fork for
# ASGI; whitenoise's middleware is sync-only) straight from the apps' folders, so
# the embedded default needs no `collectstatic`. A proxy may still serve
# STATIC_ROOT after `collectstatic`.
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
SERVESTATIC_USE_FINDERS = True

# --- Database -----------------------------------------------------------------

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so two writers wait on
    # `timeout` instead of failing with "database is locked". WAL (lets readers
    # read while another process writes) belongs to the file and is switched on
    # once per process (runtime/db.py), not by every new connection.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA synchronous=NORMAL;",
    }
    # Worker consumers share one long-lived database thread: keep its connection.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}
else:
    # A pool per process: requests run their queries on short-lived threads, and
    # opening a PostgreSQL connection for each (a new backend process) cost more
    # than the rest of the request. Size it for the threads that query at once.
    # While PostgreSQL is down a request waits `timeout` for a connection, then
    # gets a 503. psycopg_pool retries a lost connection with a backoff that
    # doubles up to `reconnect_timeout`; kept short so that, once PostgreSQL is
    # back, the next request opens a fresh connection instead of waiting out a
    # long backoff.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": env.int("DB_POOL_MIN", default=2),
            "max_size": env.int("DB_POOL_MAX", default=16),
            "timeout": 5,
            "reconnect_timeout": 5,
        }
    }
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# --- Channel layer and cache --------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "queenbee_site.layers.RedisChannelLayer",  # channels-redis, one round trip per send
            "CONFIG": {
                # redis-py 5+ defaults socket_timeout to 5 s, the same as the
                # layer's 5 s blocking pop, so an idle receive would time out and
                # kill its consumer; reads must outlast the pop.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}],
                # A stream may queue many chunks for a slow reader; the default 100
                # would drop frames of one busy reply channel.
                "capacity": env.int("CHANNEL_CAPACITY", default=1000),
                # Undelivered messages expire: a reply channel whose reader died
                # must not grow forever.
                "expiry": 60,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Lets two Queenbee clusters (or test servers) share one Redis.
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default=""),
        },
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "queenbee_site.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env.int("CHANNEL_CAPACITY", default=1000), "expiry": 60},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The answers' fingerprints (trust/replays.py): shared by every process, like the
# default cache; in one process's memory, with room for a day of busy traffic.
CACHES["replays"] = {
    **CACHES["default"],
    "TIMEOUT": None,
    **({"LOCATION": "replays", "OPTIONS": {"MAX_ENTRIES": 200_000}} if "locmem" in CACHES["default"]["BACKEND"] else {}),
}

# --- Files --------------------------------------------------------------------

MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
MEDIA_URL = "media/"
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default=None)
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default=None)
    AWS_DEFAULT_ACL = None
    AWS_QUERYSTRING_AUTH = True

# --- Fine-tuning and files ------------------------------------------------------

# Largest file POST /v1/files accepts (OpenAI's own limit is 512 MB); larger is a 413.
FILES_MAX_BYTES = env.int("FILES_MAX_BYTES", default=512 * 1024 * 1024)
# Lifetime of the signed URLs workers fetch training files and fine-tuned models
# from. A worker starts the download as soon as it gets the job, but a slow link
# may need hours for a large GGUF, and the URL must outlive the download.
SIGNED_URL_SECONDS = env.int("SIGNED_URL_SECONDS", default=6 * 3600)
if AWS_STORAGE_BUCKET_NAME:
    # Presigned S3 URLs expire with the signed Queenbee ones, and use SigV4: the
    # only scheme newer AWS regions accept (botocore may pick SigV2 otherwise).
    AWS_QUERYSTRING_EXPIRE = SIGNED_URL_SECONDS
    AWS_S3_SIGNATURE_VERSION = env.str("AWS_S3_SIGNATURE_VERSION", default="s3v4")
    # Reading a file from S3 (GET /v1/files/{id}/content) spools past this size to
    # disk instead of memory (django-storages keeps it all in memory by default).
    AWS_S3_MAX_MEMORY_SIZE = 8 * 1024 * 1024
# How workers reach this Queenbee for signed downloads from local storage, e.g.
# https://queenbee.example.com. Empty: the URL the job or request came in on. The
# original worker only downloads https URLs, so set it behind TLS.
PUBLIC_URL = env.str("PUBLIC_URL", default="")
# GPU memory a fine-tune needs, as a multiple of inference of the base model
# (size x 1000 MiB): 4-bit QLoRA holds the weights, LoRA optimizer state and
# activations at pad_length 512, about twice what llama.cpp needs to serve it.
FINETUNE_GPU_FACTOR = env.float("FINETUNE_GPU_FACTOR", default=2.0)
# Each process looks for queued jobs and free capable workers this often (and at
# once when a job is created on it). A fine-tune runs for hours; seconds of
# delay do not matter, and the query is one indexed scan.
FINETUNE_POLL_INTERVAL = env.float("FINETUNE_POLL_INTERVAL", default=5.0)
# A running job's process writes its heartbeat this often; the same beat notices
# a cancel, so it is also how long a cancelled job may still take frames.
FINETUNE_HEARTBEAT_INTERVAL = env.float("FINETUNE_HEARTBEAT_INTERVAL", default=5.0)
# A job whose heartbeat is older than this lost its process (crash, restart):
# another process queues it again. Six missed beats, so a slow one is no death.
FINETUNE_RUNNER_GRACE = env.float("FINETUNE_RUNNER_GRACE", default=30.0)
# A job is queued again at most this many times after its process died; a job
# that keeps killing its coordinator must not loop forever.
FINETUNE_MAX_ATTEMPTS = env.int("FINETUNE_MAX_ATTEMPTS", default=2)
# Until the worker's first frame. The original worker answers `download_data`
# at once (the original coordinator waited 60 s); a slow event loop gets slack.
FINETUNE_FIRST_FRAME_TIMEOUT = env.float("FINETUNE_FIRST_FRAME_TIMEOUT", default=120.0)
# Between two frames. The worker reports every 25 training steps, and 25 steps
# of a large model on a small GPU, or merging and quantizing it, take many
# minutes (the original waited forever).
FINETUNE_GAP_TIMEOUT = env.float("FINETUNE_GAP_TIMEOUT", default=3 * 3600.0)
# A whole job, after which the worker's socket is dropped as stuck.
FINETUNE_TOTAL_TIMEOUT = env.float("FINETUNE_TOTAL_TIMEOUT", default=72 * 3600.0)
# Artifacts are written to storage in parts of this size, the only part held in
# memory. S3 allows 10,000 parts of at least 5 MiB: 16 MiB parts cover 156 GiB.
FINETUNE_UPLOAD_PART_BYTES = env.int("FINETUNE_UPLOAD_PART_BYTES", default=16 * 1024 * 1024)
# Larger artifacts fail the job: a worker must not fill the bucket. A 70B model
# at q8_0 is about 75 GB.
FINETUNE_MAX_ARTIFACT_BYTES = env.int("FINETUNE_MAX_ARTIFACT_BYTES", default=150 * 1024**3)

# --- API ----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema at /v1/openapi.json and its docs page at /v1/docs (Swagger
# UI served from this server's static files, so it works offline).
SPECTACULAR_SETTINGS = {
    "TITLE": "Queenbee",
    "DESCRIPTION": "OpenAI-compatible inference served by a crowd of GPU workers.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for the choices chat's response_format.type and Responses' text.format.type share.
    "ENUM_NAME_OVERRIDES": {"ResponseFormatTypeEnum": ["text", "json_object", "json_schema"]},
}

# A shared token that authenticates without an API key row (as the original's
# BYPASS_TOKEN). Empty disables it.
BYPASS_TOKEN = env.str("BYPASS_TOKEN", default="")

# Request bodies larger than this are refused before parsing (OpenAI itself caps
# chat requests well below it).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=8 * 1024 * 1024)

# --- Worker protocol ----------------------------------------------------------

# Largest frame a worker may send. Image replies carry base64 PNGs (a few MB
# each) and fine-tune chunks are 64 KiB raw; anything larger is garbage.
WORKER_MAX_FRAME_BYTES = env.int("WORKER_MAX_FRAME_BYTES", default=32 * 1024 * 1024)
# Frames a worker may send per second, sustained and in a burst. A fast GPU
# streams a few hundred tokens a second, one frame each; far more is a flood,
# and the socket is closed (workers/limits.py).
WORKER_FRAME_RATE = env.float("WORKER_FRAME_RATE", default=1000.0)
WORKER_FRAME_BURST = env.float("WORKER_FRAME_BURST", default=2000.0)
# Frames received but not yet handled, per socket, before it is closed as a
# flood: about three seconds of a fast stream while the database stalls.
WORKER_MAX_BACKLOG = env.int("WORKER_MAX_BACKLOG", default=1000)
# New worker sockets per client address and minute, across the cluster. A farm
# behind one address reconnects all its GPUs at once after a restart; thousands
# a minute is an attack. 0 turns the limit off.
WORKER_CONNECTS_PER_MINUTE = env.int("WORKER_CONNECTS_PER_MINUTE", default=600)
# A worker must say who it is promptly; a socket that never sends its connect
# message only holds a file descriptor.
WORKER_CONNECT_TIMEOUT = env.float("WORKER_CONNECT_TIMEOUT", default=20.0)
# Each process writes one heartbeat row this often (not one per connection, so
# 10,000 idle workers cost one write).
PROCESS_HEARTBEAT_INTERVAL = env.float("PROCESS_HEARTBEAT_INTERVAL", default=5.0)
# A process whose heartbeat is older than this is dead: its connections are no
# longer offered and are swept. Three missed beats, so a slow beat is not a death.
PROCESS_GRACE = env.float("PROCESS_GRACE", default=20.0)
# A claim reaches its consumer within milliseconds; a connection busy this long
# is audited, and freed if its consumer never got the job (the claimer died).
STALE_CLAIM_SECONDS = env.float("STALE_CLAIM_SECONDS", default=30.0)
# On SIGTERM a process stops taking work and lets running jobs finish for at most
# this long before closing worker sockets ("going away") and exiting. Keep it
# under the orchestrator's kill timeout (Kubernetes: 30 s by default).
SHUTDOWN_GRACE = env.float("SHUTDOWN_GRACE", default=25.0)
# Name of this process in the registry. A restarted process with the same name
# cleans up after its crashed predecessor.
PROCESS_NAME = env.str("QUEENBEE_PROCESS_NAME", default="")
# Which connections are free and who waits in line live in Redis on a cluster
# (workers/redis_pool.py), in memory on the embedded default (workers/pool.py).
# Separates the pools of Queenbee installations (or test runs) sharing one Redis.
LIVE_POOL_PREFIX = "qb-pool:" + env.str("CACHE_KEY_PREFIX", default="") + ":"

# --- Routing timeouts ---------------------------------------------------------

# Threads the hot path's database calls run on (claim, release, records):
# runtime/db.py. Keep it below DB_POOL_MAX on PostgreSQL.
DB_THREADS = env.int("DB_THREADS", default=8)
# Waiting in line for a busy worker. Long enough to absorb a burst, short enough
# that a client is told "no capacity" before its own HTTP timeout.
QUEUE_TIMEOUT = env.float("QUEUE_TIMEOUT", default=30.0)
# First frame of a job. The original worker downloads and loads the model before
# its first token, which takes minutes for a new model; the original's 10 s here
# caused spurious retries. A request's `ft_timeout` overrides it.
FIRST_TOKEN_TIMEOUT = env.float("FIRST_TOKEN_TIMEOUT", default=180.0)
# Between two frames of a stream once tokens flow (the original's `ft_timeout`).
GAP_TIMEOUT = env.float("GAP_TIMEOUT", default=30.0)
# Whole job, non-stream and stream alike (the original's `timeout`, 120 s for
# chat). A request's `timeout` overrides it.
TOTAL_TIMEOUT = env.float("TOTAL_TIMEOUT", default=600.0)
EMBEDDINGS_TIMEOUT = env.float("EMBEDDINGS_TIMEOUT", default=120.0)
IMAGES_TIMEOUT = env.float("IMAGES_TIMEOUT", default=600.0)
# A job whose caller left keeps its connection busy until the worker's last
# frame. A worker that never finishes is disconnected after this long, so one
# stuck job cannot hold a connection forever.
DRAIN_TIMEOUT = env.float("DRAIN_TIMEOUT", default=600.0)
# Pause before retrying on another worker (the original's 0.25 s): lets a worker
# that just failed drop out of the registry first.
RETRY_DELAY = env.float("RETRY_DELAY", default=0.25)
# A stream whose worker fails after its first token (disconnect, stall past
# GAP_TIMEOUT, error frame, garbage) is continued on another worker this many
# times at most, from the text already delivered (routing/continuation.py); then
# it ends with an error event. Each continuation costs a new worker's prompt
# evaluation and possibly a model load, so a few are worth it and a worker
# crowd that keeps failing one request should not be walked through entirely.
STREAM_CONTINUATIONS = env.int("STREAM_CONTINUATIONS", default=2)
# Stored `/v1/responses` answers are kept this many days (OpenAI keeps them 30),
# then they are not found and get deleted (routing.models.StoredResponse); 0 keeps them forever.
RESPONSES_KEEP_DAYS = env.int("RESPONSES_KEEP_DAYS", default=30)
# While a stream waits for its first frame (a worker downloading or loading a
# model takes minutes) or for its next one, an SSE comment line `: keep-alive`
# is sent this often, so that proxies with an idle read timeout (nginx's
# proxy_read_timeout is 60 s, AWS ALB's idle timeout 60 s, Cloudflare's 100 s)
# keep the connection. 15 s stays well under all of them. 0 turns it off.
STREAM_KEEPALIVE_INTERVAL = env.float("STREAM_KEEPALIVE_INTERVAL", default=15.0)

# Models listed by /v1/models even when no connected worker advertises them.
DEFAULT_MODELS = env.list(
    "DEFAULT_MODELS",
    default=[
        "TheBloke/zephyr-7B-alpha-GGUF:Q4_K_S",
        "TheBloke/Mistral-7B-Instruct-v0.1-GGUF:Q4_K_S",
        "TheBloke/CodeLlama-13B-Instruct-GGUF:Q4_K_S",
    ],
)

# --- Stats --------------------------------------------------------------------

# Weight of the old value in every EMA update (the original's 0.8): an estimate
# follows a worker's last five or so jobs, so a slowdown shows within minutes
# while one odd job cannot swing it.
STATS_EMA_ALPHA = env.float("STATS_EMA_ALPHA", default=0.8)
# A job's seconds are divided by weighted tokens. llama.cpp evaluates a prompt in
# batches, 10-50 times faster per token than it generates, so a prompt token
# counts a tenth of a completion token (the original counted both the same, and
# long prompts made a worker look fast).
STATS_PROMPT_TOKEN_WEIGHT = env.float("STATS_PROMPT_TOKEN_WEIGHT", default=0.1)
STATS_COMPLETION_TOKEN_WEIGHT = env.float("STATS_COMPLETION_TOKEN_WEIGHT", default=1.0)
# How long a worker that errored, sent garbage, timed out, disconnected mid-job
# or was very slow is ranked last (the original's 900 s): long enough that
# callers stop meeting a broken worker, short enough that a fixed one comes back
# without anyone's help.
STATS_PUNISH_SECONDS = env.float("STATS_PUNISH_SECONDS", default=900.0)
# A worker that answered {"error": "busy"} is fine, just occupied (browser
# workers): it sits out only briefly (the original's 30 s).
STATS_PUNISH_BUSY_SECONDS = env.float("STATS_PUNISH_BUSY_SECONDS", default=30.0)
# "Very slow" (punished, though its answer is delivered): a text job on a model
# already loaded that took longer than this (the original's 120 s) ...
STATS_SLOW_JOB_SECONDS = env.float("STATS_SLOW_JOB_SECONDS", default=120.0)
# ... and ran slower than this per weighted token (under one token a second),
# so a long answer at a decent pace is never punished.
STATS_SLOW_SECONDS_PER_TOKEN = env.float("STATS_SLOW_SECONDS_PER_TOKEN", default=1.0)
# Share of requests where a worker that has not yet proven itself (no successful
# job) is tried before proven ones. Enough for a new worker to get its first job
# within a minute on a busy cluster; small enough that callers rarely meet an
# untested worker. Otherwise unproven workers are a last resort.
STATS_UNPROVEN_SHARE = env.float("STATS_UNPROVEN_SHARE", default=0.1)
# Model size at which /worker/detail reports each worker's `perf` (the
# original's 5: about a 7B model at 5 bits).
STATS_REFERENCE_SIZE = env.float("STATS_REFERENCE_SIZE", default=5.0)

# --- Trust (trust/services.py): verifying work of untrusted workers ---------------
# Share of a verified identity's text jobs re-scored by another worker. 5%: a
# worker that starts cheating on every job is checked within ~20 of them (on
# average), and the network spends ~5% of a job's time per job on checks.
TRUST_VERIFY_SHARE = env.float("TRUST_VERIFY_SHARE", default=0.05)
# Operator-trusted identities are checked too, more rarely (0: never).
TRUST_TRUSTED_VERIFY_SHARE = env.float("TRUST_TRUSTED_VERIFY_SHARE", default=0.01)
# Passed verifications in a row that make a new (or suspect) identity verified.
TRUST_PASSES_TO_VERIFY = env.int("TRUST_PASSES_TO_VERIFY", default=3)
# Whose verdicts count: "good_standing" (verified or trusted identities, trusted
# ones first) or "trusted" (only identities an operator trusted; the prompt of a
# checked job then only ever reaches those).
TRUST_VERIFIERS = env.str("TRUST_VERIFIERS", default="good_standing")
# How long a verification waits in line for a free verifier. It runs after the
# caller's answer, so waiting costs no caller anything; past it the job is
# "unavailable" (a verified worker is paid, a new one's earning stays held).
TRUST_VERIFY_QUEUE_TIMEOUT = env.float("TRUST_VERIFY_QUEUE_TIMEOUT", default=30.0)
# A verifier never shares its checked worker's address (behind a proxy, set
# TRUSTED_PROXIES so addresses are the workers' own). Off only where every
# worker shares one address on purpose (the tests, all on 127.0.0.1).
TRUST_VERIFIER_OTHER_ADDRESS = env.bool("TRUST_VERIFIER_OTHER_ADDRESS", default=True)
# What a verifier's owner earns, in credits per 1,000 tokens it scored (prompt and
# completion, teacher-forced: one prefill pass, no sampling), rounded up. Unset: what a
# worker earns for reading a prompt that long on the checked job's model (the prompt
# price of its Price row, else BILLING_PRICE_PER_1K_PROMPT_TOKENS, times
# BILLING_WORKER_SHARE; 0.75 at the defaults). 0: verifiers are not paid. Never more
# than the operator kept of what the job's caller paid (billing.services.pay_verifier).
TRUST_VERIFY_PRICE_PER_1K_TOKENS = env.float("TRUST_VERIFY_PRICE_PER_1K_TOKENS", default=None)

# Replays (trust/replays.py): an answer at least this long (characters), sampled
# at an explicit temperature of at least TRUST_REPLAY_MIN_TEMPERATURE, delivered
# again for an unrelated prompt is refuted without a verifier; 0: never.
TRUST_REPLAY_MIN_CHARS = env.int("TRUST_REPLAY_MIN_CHARS", default=200)
TRUST_REPLAY_MIN_TEMPERATURE = env.float("TRUST_REPLAY_MIN_TEMPERATURE", default=0.5)
# How long an answer's fingerprint is remembered (seconds).
TRUST_REPLAY_WINDOW = env.int("TRUST_REPLAY_WINDOW", default=86_400)

# Canaries (trust/canaries.py): prompts whose temperature-0 answer an operator-
# trusted worker gave, sent to other workers while they are free and compared.
# At most this share of a worker's time goes to canaries (0: none are sent): 2%
# is a canary of ~2 s every ~100 s of a worker's connected time at most.
TRUST_CANARY_SHARE = env.float("TRUST_CANARY_SHARE", default=0.02)
# How often each process looks for free workers due a canary (seconds; 0: never).
TRUST_CANARY_INTERVAL = env.float("TRUST_CANARY_INTERVAL", default=60.0)
# A canary's answer length: short, so a canary costs little.
TRUST_CANARY_MAX_TOKENS = env.int("TRUST_CANARY_MAX_TOKENS", default=32)
# Share of the known answer's words (in order) an answer must match to pass.
TRUST_CANARY_MIN_AGREEMENT = env.float("TRUST_CANARY_MIN_AGREEMENT", default=0.3)
# Your own canary prompts (separated by "|"), instead of the public built-in ones.
TRUST_CANARY_PROMPTS = [p.strip() for p in env.str("TRUST_CANARY_PROMPTS", default="").split("|") if p.strip()]

# --- Billing (README "Billing") ----------------------------------------------------

# A remote billing backend speaking the original's `check`/`complete` commands.
# Empty: local accounts and their ledger in this database.
BILLING_URL = env.str("BILLING_URL", default="")
# Sent as `Authorization: Bearer …` with every command (the original sent none).
BILLING_SECRET = env.str("BILLING_SECRET", default="")
# A `check` call waits this long: it sits in front of every request, so a slow
# backend must not hold callers long; it is answered 503 instead.
BILLING_CHECK_TIMEOUT = env.float("BILLING_CHECK_TIMEOUT", default=5.0)
# A `check` answer is reused for this long per token: one round trip per caller
# per few seconds instead of per request. A balance that just ran out is still
# caught by the backend at `complete`.
BILLING_CHECK_CACHE_SECONDS = env.float("BILLING_CHECK_CACHE_SECONDS", default=5.0)
# A `complete` call waits this long before it counts as failed and is retried.
BILLING_COMPLETE_TIMEOUT = env.float("BILLING_COMPLETE_TIMEOUT", default=10.0)
# Outbox retries back off from the first delay, doubling, up to the last, and
# never give up on an outage: a charge is only dropped when the backend refuses
# it (4xx). Ten minutes between tries costs nothing during a long outage.
BILLING_RETRY_FIRST_DELAY = env.float("BILLING_RETRY_FIRST_DELAY", default=1.0)
BILLING_RETRY_MAX_DELAY = env.float("BILLING_RETRY_MAX_DELAY", default=600.0)
# A `complete` the backend keeps failing (5xx, unreachable) is given up this many
# seconds after it was written (0: never); the admin's "Send again now" retries it.
BILLING_RETRY_GIVE_UP_AFTER = env.float("BILLING_RETRY_GIVE_UP_AFTER", default=7 * 86_400.0)
# Each process looks for due outbox rows this often (also those a dead process
# left), and at once when it writes one.
BILLING_OUTBOX_POLL = env.float("BILLING_OUTBOX_POLL", default=5.0)
# A process that claimed a row has this long to send it before another may; longer
# than BILLING_COMPLETE_TIMEOUT so two never send the same row at once.
BILLING_OUTBOX_LEASE = env.float("BILLING_OUTBOX_LEASE", default=60.0)
# Local accounts: a request is refused (429 insufficient_quota) below this balance.
BILLING_MIN_BALANCE = env.int("BILLING_MIN_BALANCE", default=1)
# Default prices in credits, used for a kind with no Price row in the admin.
BILLING_PRICE_PER_REQUEST = env.int("BILLING_PRICE_PER_REQUEST", default=1)
BILLING_PRICE_PER_1K_PROMPT_TOKENS = env.int("BILLING_PRICE_PER_1K_PROMPT_TOKENS", default=1)
BILLING_PRICE_PER_1K_COMPLETION_TOKENS = env.int("BILLING_PRICE_PER_1K_COMPLETION_TOKENS", default=4)
BILLING_PRICE_PER_IMAGE = env.int("BILLING_PRICE_PER_IMAGE", default=20)
# A succeeded fine-tune, whatever its length (the worker reports no token counts);
# hours of a GPU, against a few credits for a chat request.
BILLING_PRICE_PER_FINE_TUNE = env.int("BILLING_PRICE_PER_FINE_TUNE", default=500)
# Share of what a caller paid that goes to the worker's owner (the original's
# companion backend paid 6 of 8 sats).
BILLING_WORKER_SHARE = env.float("BILLING_WORKER_SHARE", default=0.75)
# With BILLING_URL: tell the backend of each paid verification, as a `complete` that
# bills nobody (`"kind": "verify"`, an empty `bill_to_token`, the verifier's
# `pay_to_lnurl`). Off by default: the original's companion backend knows no such
# `complete`, and one that pays the worker before it fails on the empty token would
# pay again on every retry. Turn it on once your backend pays `kind: "verify"`.
BILLING_REMOTE_VERIFY_PAYOUTS = env.bool("BILLING_REMOTE_VERIFY_PAYOUTS", default=False)
# Per API key, across all processes (through the cache: Redis when REDIS_URL is
# set). 0 turns a limit off; an account may set its own.
RATE_LIMIT_REQUESTS_PER_MINUTE = env.int("RATE_LIMIT_REQUESTS_PER_MINUTE", default=0)
RATE_LIMIT_CONCURRENT_STREAMS = env.int("RATE_LIMIT_CONCURRENT_STREAMS", default=0)

# --- Production: HTTPS, cookies, proxies (README "Production") -----------------

# Addresses (or networks, `10.0.0.0/8`) of the proxies in front of Queenbee.
# X-Forwarded-For is believed only from them, for the worker limits per
# address and for logs; with none set the header is ignored.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# Behind a proxy that terminates TLS, the header it sets to say so
# (e.g. X-Forwarded-Proto); without it Django cannot tell HTTPS requests apart.
_proxy_ssl_header = env.str("PROXY_SSL_HEADER", default="")
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and scrapers talk to the process directly, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The admin's session and CSRF cookies travel over HTTPS only once the settings
# say the site is served over HTTPS. The embedded default is plain http on
# 127.0.0.1, where a client that keeps Secure cookies for https would never send
# them back and could not log in; `check --deploy` names both settings until then.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_SSL_REDIRECT or bool(_proxy_ssl_header))
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_SSL_REDIRECT or bool(_proxy_ssl_header))
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# CSRF guards the admin only (API calls carry a bearer key); a failure on an API path
# still answers in OpenAI's envelope, never an HTML page.
CSRF_FAILURE_VIEW = "api.errors.csrf_failure"
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])

# --- Operations: metrics and logs (README "Operations") -----------------------

# Bearer token Prometheus must send to /metrics. Empty turns /metrics off.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # One event per line with its fields: `text` (key=value) or `json`.
        "structured": {"()": "runtime.logs.StructuredFormatter", "json_lines": env.str("LOG_FORMAT", default="text") == "json"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # Django's own console handler (DEBUG only) would print its lines twice.
        "django": {"handlers": [], "level": "INFO"},
        # At DEBUG these would print SQL parameters and raw frames, which hold
        # payout addresses and prompts; they stay at INFO whatever LOG_LEVEL says.
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "INFO"},
        # httpx logs every request's URL at INFO; BILLING_URL may hold credentials.
        "httpx": {"level": "WARNING"},
        "autobahn": {"level": "INFO"},
        # Under uvicorn: its own handlers (plain text, set up before Django's)
        # replaced by ours, so its lines and tracebacks follow LOG_FORMAT too.
        "uvicorn": {"handlers": [], "propagate": True, "level": "INFO"},
        "uvicorn.error": {"handlers": [], "propagate": True, "level": "INFO"},
        # uvicorn logs a request whenever this logger has a handler to reach;
        # Queenbee logs each request itself (queenbee.requests).
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}
