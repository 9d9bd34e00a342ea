"""Every setting of every process, declared once: its name, type, default (with its unit), one line of help and
which processes read it. ``config.reader`` parses values by this declaration; ``--help`` of each command, the
``check`` command, ``.env.example`` and the deployment files' test all read it from here.

Processes: ``bot`` (``python -m bot``, with the web page), ``worker`` (``python -m generator.worker``, also the
embedded worker the bot supervises), ``supervisor`` (``python -m generator.supervisor``) and ``cli``
(``python -m generator IMAGE PROMPT``). Test-only fault hooks (``I2V_FAULT_*``, :mod:`generator.faults`) are not
settings and are not declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

from config.units import MIB

BOT = "bot"
WORKER = "worker"
SUPERVISOR = "supervisor"
CLI = "cli"
PROCESSES = (BOT, WORKER, SUPERVISOR, CLI)

TEXT = "text"
PATH = "path"
INT = "int"
FLOAT = "float"
BOOL = "bool"
CHOICE = "choice"
IDS = "ids"  # comma-separated Discord ids
PORT = "port"
DATABASE_URL = "database_url"
NETWORKS = "networks"  # comma-separated IP addresses or networks (CIDR)
ORIGIN = "origin"  # an http(s) origin: scheme://host[:port], no path
CHOICES = "choices"  # comma-separated words from ``choices``, in order, each once
KINDS = (TEXT, PATH, INT, FLOAT, BOOL, CHOICE, IDS, PORT, DATABASE_URL, NETWORKS, ORIGIN, CHOICES)

MODEL_KEYS = ("i2vgenxl", "wan22-5b", "ltxv")  # the models' keys (generator.model_spaces.MODEL_KEYS)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Setting:
    """One environment variable. ``default`` is the parsed value used when it is unset or empty (None: no value).

    ``minimum`` is inclusive, ``above`` exclusive; ``upper`` choices are matched in upper case, others in lower
    case. ``internal`` settings are set by one process for another (never by hand) and are left out of help;
    ``older_name_of`` marks an older spelling of another setting that is still read.
    """

    name: str
    kind: str
    default: object
    help: str
    readers: frozenset[str]
    unit: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    upper: bool = False
    secret: bool = False
    internal: bool = False
    older_name_of: str | None = None  # an older spelling still read (not listed in .env.example)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: unknown kind {self.kind!r}")
        if not self.readers <= set(PROCESSES):
            raise ValueError(f"{self.name}: unknown readers {set(self.readers) - set(PROCESSES)}")

    def describe_default(self) -> str:
        """The default as the help shows it."""
        if self.default is None or self.default in ("", frozenset(), ()):
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        value = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return f"{value} {self.unit}".strip()


class _Extra(TypedDict, total=False):
    """The optional fields of :class:`Setting`, as keywords of :func:`_s`."""

    unit: str
    choices: tuple[str, ...]
    minimum: float | None
    above: float | None
    maximum: float | None
    max_length: int | None
    upper: bool
    secret: bool
    internal: bool
    older_name_of: str | None


def _s(name: str, kind: str, default: object, help: str, *readers: str, **extra: Unpack[_Extra]) -> Setting:
    return Setting(name, kind, default, help, frozenset(readers), **extra)


_ALL = (BOT, WORKER, SUPERVISOR, CLI)
_STORE = (BOT, WORKER, SUPERVISOR)
_GPU = (WORKER, CLI)

SETTINGS: tuple[Setting, ...] = (
    # --- Discord
    _s(
        "DISCORD_TOKEN",
        TEXT,
        "",
        "the bot token (empty: only the web page and the embedded worker run)",
        BOT,
        secret=True,
    ),
    _s("DISCORD_API_BASE", TEXT, "", "REST base URL; empty = Discord's own (tests point it at a fake)", BOT),
    _s("DISCORD_GATEWAY_URL", TEXT, "", "gateway websocket URL; empty = Discord's own", BOT),
    _s(
        "DISCORD_CONNECT_TIMEOUT_SECONDS",
        FLOAT,
        30.0,
        "one attempt to log in to Discord gives up after this",
        BOT,
        unit="s",
        above=0,
    ),
    _s(
        "DISCORD_RETRY_MAX_SECONDS",
        FLOAT,
        300.0,
        "longest wait between two attempts to reach Discord",
        BOT,
        unit="s",
        above=0,
    ),
    _s("MESSAGE_CONTENT_INTENT", BOOL, False, "answer @mentions with an image (privileged intent)", BOT),
    _s(
        "GUILD_READY_TIMEOUT_SECONDS",
        FLOAT,
        2.0,
        "discord.py's wait for the servers before it reports ready",
        BOT,
        unit="s",
        minimum=0,
    ),
    # --- Storage
    _s(
        "DATABASE_URL",
        DATABASE_URL,
        "sqlite+aiosqlite:///data/i2v.sqlite3",
        "the job store (SQLite or PostgreSQL)",
        *_STORE,
    ),
    _s("DATA_DIR", PATH, "data", "the bot's command-sync state and delivery journal", BOT),
    _s(
        "OUTPUT_DIR",
        PATH,
        "outputs",
        "disk copies of delivered videos; the worker's scratch folder; the CLI's default output folder",
        *_ALL,
    ),
    # --- Model and worker
    _s(
        "I2V_MODEL",
        TEXT,
        "ali-vilab/i2vgen-xl",
        "I2VGen-XL's Hugging Face repo id or local folder; tiny = every "
        "model is a tiny random one built in code (tests)",
        *_ALL,
    ),
    _s(
        "I2V_MODEL_WAN",
        TEXT,
        "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        "Wan 2.2 TI2V-5B's Hugging Face repo id or local folder (model key wan22-5b)",
        *_ALL,
    ),
    _s(
        "I2V_MODEL_LTX",
        TEXT,
        "Lightricks/LTX-Video-0.9.7-distilled",
        "LTX-Video's Hugging Face repo id or local folder (model key ltxv)",
        *_ALL,
    ),
    _s(
        "I2V_MODELS",
        CHOICES,
        (),
        "the models users may choose, comma-separated keys in order, the first the "
        "default; unset = i2vgenxl alone (every model with I2V_MODEL=tiny)",
        BOT,
        WORKER,
        SUPERVISOR,
        choices=MODEL_KEYS,
    ),
    _s(
        "WORKER_MODELS",
        CHOICES,
        (),
        "the models this worker may load (a subset of I2V_MODELS); unset = all of I2V_MODELS",
        WORKER,
        SUPERVISOR,
        choices=MODEL_KEYS,
    ),
    _s(
        "MODEL_AFFINITY_MAX_SKIPS",
        INT,
        3,
        "a worker prefers jobs for the model it holds, but no queued job is "
        "passed over more than this many times for that; 0 = strict queue order",
        WORKER,
        unit="jobs",
        minimum=0,
    ),
    _s(
        "I2V_DEVICE",
        TEXT,
        "",
        "torch device; empty = the GPU (the real model refuses to load without one; "
        "tiny runs on the CPU); cpu = the CPU on purpose (hours per video)",
        *_GPU,
    ),
    _s(
        "WORKER",
        CHOICE,
        "embedded",
        "embedded: the bot supervises one worker; external: run workers yourself",
        BOT,
        choices=("embedded", "external"),
    ),
    _s(
        "WORKER_ID",
        TEXT,
        "",
        "this worker's name in the database; empty = <host>-<pid>",
        WORKER,
        SUPERVISOR,
        max_length=200,
    ),
    _s("I2V_POLL_INTERVAL_S", FLOAT, 1.0, "an idle worker's wait between two claims", WORKER, unit="s", minimum=0.01),
    _s(
        "I2V_LEASE_SECONDS",
        FLOAT,
        90.0,
        "lease of a claimed job, renewed by each progress write",
        WORKER,
        unit="s",
        minimum=1.0,
    ),
    _s(
        "I2V_GRACE_SECONDS",
        FLOAT,
        30.0,
        "on a stop, a running job's time to finish (and be delivered) before it is given back",
        WORKER,
        SUPERVISOR,
        BOT,
        unit="s",
        minimum=0,
    ),
    _s(
        "I2V_RESTART_BACKOFF_SECONDS",
        FLOAT,
        1.0,
        "first wait before a stopped worker is started again, doubling",
        BOT,
        SUPERVISOR,
        unit="s",
        minimum=0,
    ),
    _s(
        "I2V_RESTART_BACKOFF_MAX_SECONDS",
        FLOAT,
        60.0,
        "longest wait between restarts while the worker still starts",
        BOT,
        SUPERVISOR,
        unit="s",
        minimum=0,
    ),
    _s(
        "I2V_UNAVAILABLE_AFTER_FAILURES",
        INT,
        3,
        "failed starts in a row after which generation is unavailable",
        BOT,
        SUPERVISOR,
        unit="starts",
        minimum=1,
    ),
    _s(
        "I2V_UNAVAILABLE_RETRY_SECONDS",
        FLOAT,
        600.0,
        "longest wait between two tries while unavailable",
        BOT,
        SUPERVISOR,
        unit="s",
        minimum=0,
    ),
    _s("I2V_HEARTBEAT_INTERVAL_S", FLOAT, 2.0, "between two worker heartbeats", WORKER, unit="s", minimum=0.05),
    _s(
        "I2V_PROGRESS_INTERVAL_S",
        FLOAT,
        1.0,
        "least time between two progress writes of a job",
        WORKER,
        unit="s",
        minimum=0,
    ),
    _s(
        "I2V_RESCUE_INTERVAL_S",
        FLOAT,
        2.0,
        "between two sweeps for jobs of dead workers and expired leases",
        WORKER,
        unit="s",
        minimum=0.05,
    ),
    _s(
        "I2V_STALL_SECONDS",
        FLOAT,
        900.0,
        "without a denoising step, the worker counts as hung and exits",
        WORKER,
        unit="s",
        minimum=1.0,
    ),
    _s(
        "WORKER_DEAD_AFTER",
        FLOAT,
        15.0,
        "without a heartbeat, a worker counts as dead and its job is requeued",
        BOT,
        WORKER,
        unit="s",
        minimum=0.1,
    ),
    _s(
        "I2V_PARENT_PID",
        INT,
        None,
        "set by the supervisor: the worker stops when that process is gone",
        WORKER,
        minimum=0,
        internal=True,
    ),
    _s(
        "I2V_EXIT_REASON_FILE",
        PATH,
        None,
        "set by the supervisor: where a worker that cannot start writes why",
        WORKER,
        internal=True,
    ),
    # --- Speed and memory (generator.performance)
    _s(
        "I2V_DTYPE",
        CHOICE,
        None,
        "fp16, bf16 or fp32; unset = fp16 on CUDA, fp32 on CPU",
        *_GPU,
        choices=("fp16", "bf16", "fp32"),
    ),
    _s(
        "I2V_SDPA_BACKEND",
        CHOICE,
        "auto",
        "the UNet's attention kernel",
        *_GPU,
        choices=("auto", "flash", "efficient", "math"),
    ),
    _s("I2V_COMPILE", BOOL, False, "torch.compile the UNet at start", *_GPU),
    _s(
        "I2V_COMPILE_MODE",
        CHOICE,
        "default",
        "torch.compile mode",
        *_GPU,
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    ),
    _s("I2V_COMPILE_WARMUP", TEXT, "presets", "shapes compiled at start: presets, none or WxHxF,WxHxF", *_GPU),
    _s("I2V_CHANNELS_LAST", BOOL, False, "channels-last layout for the 2-D convolutions", *_GPU),
    _s("I2V_FUSE_QKV", BOOL, False, "fuse the attention's Q, K and V projections", *_GPU),
    _s(
        "I2V_DECODE_CHUNK_SIZE",
        INT,
        None,
        "frames per VAE decode call; unset = 8 on CUDA, 16 on CPU",
        *_GPU,
        unit="frames",
        minimum=1,
    ),
    _s("I2V_VAE_TILING", BOOL, False, "decode in overlapping tiles (less memory)", *_GPU),
    _s("I2V_CPU_OFFLOAD", BOOL, False, "keep each model on the CPU until it runs (CUDA only)", *_GPU),
    # --- Quotas and limits
    _s("OPERATOR_USER_IDS", IDS, frozenset(), "user ids of the bot's operator", BOT),
    _s(
        "ADMIN_USER_IDS",
        IDS,
        frozenset(),
        "older name of OPERATOR_USER_IDS (merged with it)",
        BOT,
        older_name_of="OPERATOR_USER_IDS",
    ),
    _s("OPERATOR_ROLE_IDS", IDS, frozenset(), "role ids whose members are operators", BOT),
    _s(
        "ADMIN_ROLE_IDS",
        IDS,
        frozenset(),
        "older name of OPERATOR_ROLE_IDS (merged with it)",
        BOT,
        older_name_of="OPERATOR_ROLE_IDS",
    ),
    _s("QUOTA_DAILY_GPU_SECONDS", FLOAT, 600.0, "rolling 24-hour budget per user", BOT, unit="GPU-s", minimum=0),
    _s("QUOTA_MAX_PENDING", INT, 2, "queued + running jobs one user may have", BOT, unit="jobs", above=0),
    _s("QUEUE_MAX_LENGTH", INT, 100, "queued jobs of everyone together", BOT, unit="jobs", above=0),
    _s("MAX_DOWNLOAD_BYTES", INT, 20 * MIB, "largest input image download", BOT, unit="bytes", above=0),
    _s(
        "RETENTION_DAYS",
        FLOAT,
        30.0,
        "a finished job's image and video are kept this long (0 = forever)",
        BOT,
        unit="days",
        minimum=0,
    ),
    _s("RETENTION_INTERVAL_SECONDS", FLOAT, 3600.0, "between two retention passes", BOT, unit="s", above=0),
    _s("SAVE_OUTPUT_COPY", BOOL, True, "also write each delivered video to OUTPUT_DIR", BOT),
    # --- Content safety (jobs.safety)
    _s(
        "PROMPT_BLOCKLIST",
        TEXT,
        "",
        "comma-separated words or phrases refused in prompts everywhere (whole words, any case)",
        BOT,
        max_length=20000,
    ),
    _s(
        "UNSAFE_VIDEOS",
        CHOICE,
        "age_restricted",
        "where a video the safety check flagged may be posted: "
        "age_restricted (only there, as a spoiler) or refuse (nowhere); servers may tighten it",
        BOT,
        choices=("age_restricted", "refuse"),
    ),
    _s(
        "SAFETY_MODEL",
        TEXT,
        "Falconsai/nsfw_image_detection",
        "image classifier run on each input image and on frames of each video; none = no check",
        WORKER,
    ),
    _s(
        "SAFETY_THRESHOLD",
        FLOAT,
        0.5,
        "an image is unsafe when the unsafe label's score reaches this",
        WORKER,
        minimum=0,
        maximum=1,
    ),
    _s("SAFETY_UNSAFE_LABEL", TEXT, "nsfw", "the classifier's label that counts as unsafe", WORKER),
    # --- Behaviour
    _s(
        "STATUS_EDIT_INTERVAL_SECONDS",
        FLOAT,
        5.0,
        "least time between two edits of one status message",
        BOT,
        unit="s",
        above=0,
    ),
    _s(
        "POLL_INTERVAL_SECONDS",
        FLOAT,
        1.0,
        "between two reads of job progress and finished jobs",
        BOT,
        unit="s",
        above=0,
    ),
    _s("UPLOAD_TIMEOUT_SECONDS", FLOAT, 120.0, "one upload attempt of a result", BOT, unit="s", above=0),
    _s("LOOP_LAG_REPORT", PATH, None, "file for a JSON summary of the event loop's lag, written at stop", BOT),
    # --- Logs (config.logs)
    _s("LOG_LEVEL", CHOICE, "INFO", "DEBUG, INFO, WARNING or ERROR", *_ALL, choices=LOG_LEVELS, upper=True),
    _s("LOG_FORMAT", CHOICE, "text", "text, or json for one JSON object per line", *_ALL, choices=LOG_FORMATS),
    _s("LOG_FILE", PATH, None, "also log to this file (rotated); an embedded worker writes NAME.worker.EXT", *_ALL),
    _s(
        "LOG_FILE_MAX_BYTES",
        INT,
        10 * MIB,
        "rotate the log file at this size (0 = never)",
        *_ALL,
        unit="bytes",
        minimum=0,
    ),
    _s("LOG_FILE_BACKUPS", INT, 5, "rotated log files kept", *_ALL, unit="files", minimum=0),
    # --- Web page, /healthz and /metrics
    _s("WEB_HOST", TEXT, "127.0.0.1", "address of the web page, /healthz and /metrics (every visitor signs in)", BOT),
    _s("WEB_PORT", PORT, 7860, "TCP port of the page (0 = any free port, logged)", BOT),
    _s(
        "WEB_PUBLIC_URL",
        ORIGIN,
        "",
        "the page's public origin (e.g. https://i2v.example.org behind a proxy): links, "
        "redirects, the Origin check and Secure cookies follow it",
        BOT,
    ),
    _s(
        "WEB_TRUSTED_PROXIES",
        NETWORKS,
        (),
        "comma-separated addresses or networks of reverse proxies whose forwarded "
        "headers name the client (access log only)",
        BOT,
    ),
    _s(
        "WEB_OPERATOR_LINK_TTL_SECONDS",
        FLOAT,
        3600.0,
        "how long the operator's sign-in link printed at start works (once)",
        BOT,
        unit="s",
        above=0,
    ),
    _s(
        "WEB_ROLE_RECHECK_SECONDS",
        FLOAT,
        1800.0,
        "how often the bot re-reads a signed-in member's roles from Discord; "
        "roles not re-read within twice this lapse on the page",
        BOT,
        unit="s",
        above=0,
        maximum=1800,
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The declaration of ``name`` (KeyError for an undeclared one)."""
    return BY_NAME[name]


def default(name: str) -> object:
    """The default value of ``name``."""
    return BY_NAME[name].default


def default_float(name: str) -> float:
    """The default of a numeric setting, as a float."""
    value = BY_NAME[name].default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} has no numeric default")
    return float(value)


def default_int(name: str) -> int:
    """The default of a whole-number setting."""
    value = BY_NAME[name].default
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} has no whole-number default")
    return value


def default_text(name: str) -> str:
    """The default of a text setting ("" when it has none)."""
    value = BY_NAME[name].default
    return "" if value is None else str(value)


def read_by(process: str) -> tuple[Setting, ...]:
    """The settings ``process`` reads, in declaration order (internal ones included)."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}")
    return tuple(s for s in SETTINGS if process in s.readers)
