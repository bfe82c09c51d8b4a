"""The local stack without Docker: real Kafka (KRaft, from Maven Central jars), PostgreSQL, Redis and the
four services, as processes on loopback, with their data under .local/ (git-ignored).

    python deploy/local/stack.py up [--infra-only]   install what is missing, start what is not running
    python deploy/local/stack.py down                stop exactly what `up` started
    python deploy/local/stack.py status              what is up, and where
    python deploy/local/stack.py install-browser     Debian's Chromium, for the browser test

Idempotent: `up` twice starts nothing the second time; a crashed process comes back on the next `up`.
Ports can be moved with STACK_KAFKA_PORT, STACK_POSTGRES_PORT, STACK_REDIS_PORT, STACK_HTTP_PORT_BASE.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"
SECRETS = LOCAL / "secrets"
KAFKA_HOME = LOCAL / "kafka"
PYTHON = ROOT / ".venv" / "bin" / "python"

KAFKA_PORT = int(os.environ.get("STACK_KAFKA_PORT", "19092"))
CONTROLLER_PORT = KAFKA_PORT + 1
POSTGRES_PORT = int(os.environ.get("STACK_POSTGRES_PORT", "15432"))
REDIS_PORT = int(os.environ.get("STACK_REDIS_PORT", "16379"))
HTTP_BASE = int(os.environ.get("STACK_HTTP_PORT_BASE", "8081"))

SERVICES = {  # name -> (port, env var with its URL)
    "giftcard_ledger": (HTTP_BASE, "GIFTCARD_LEDGER_URL"),
    "redemption_ledger": (HTTP_BASE + 1, "REDEMPTION_LEDGER_URL"),
    "segment_engine": (HTTP_BASE + 2, "SEGMENT_ENGINE_URL"),
    "marketing_view": (HTTP_BASE + 3, "MARKETING_VIEW_URL"),
    "marketing_view_projector": (HTTP_BASE + 4, "MARKETING_VIEW_PROJECTOR_URL"),
}
# marketing_view runs as two processes of the same code: the read API (port 8084, MARKETING_VIEW_URL) and the
# projector (Kafka consumer, loss watchdog, auto-rebuild; HTTP: health, readiness, metrics only), so reads
# never wait behind a projection batch. name -> (python module, environment of that process only).
# MARKETING_VIEW_WORKERS=2 `make up` runs the API as two processes (measured: no gain on this 2-core machine).
PROCESSES = {
    "marketing_view": ("marketing_view", {"MARKETING_VIEW_ROLE": "api",
                                          "MARKETING_VIEW_WORKERS": os.environ.get("MARKETING_VIEW_WORKERS", "1")}),
    "marketing_view_projector": ("marketing_view", {"MARKETING_VIEW_ROLE": "projector",
                                                    "MARKETING_VIEW_HTTP_PORT": str(HTTP_BASE + 4)}),
}


# The read API answers people at a till; the consumers do background work. On one shared machine the
# consumers get a smaller CPU share (nice 5, per session: the kernel's autogroup scheduling shares the CPU
# between sessions first), as a Kubernetes deployment gives the API pods CPU of their own. Measured on
# 2 cores during ingest: read API 453 -> 1,288 requests/s (bench/analysis.md, Read).
BACKGROUND_NICE = int(os.environ.get("MARKETING_STACK_CONSUMER_NICE", "5"))
FOREGROUND = {"marketing_view"}


def lower_cpu_share() -> None:
    """Runs in the child, after setsid: a larger nice value for this session (autogroup) and process."""
    try:
        Path("/proc/self/autogroup").write_text(f"{BACKGROUND_NICE}\n")
    except OSError:
        pass  # no autogroup here: the process's own nice value below is what the scheduler uses
    os.nice(BACKGROUND_NICE)


def module_of(name: str) -> str:
    return PROCESSES.get(name, (name, {}))[0]


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


# --- installing what is missing -------------------------------------------------------------------------

_apt_updated = False


def apt_install(*packages: str) -> None:
    global _apt_updated
    if os.geteuid() != 0:
        sys.exit(f"[stack] missing {' '.join(packages)}: install it (e.g. sudo apt-get install {' '.join(packages)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        say("apt-get update")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        _apt_updated = True
    say(f"apt-get install {' '.join(packages)}")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.insert(0, Path(on_path).resolve())
    if not candidates:
        apt_install("postgresql")
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return candidates[0].parent


def install() -> None:
    if not shutil.which("java"):
        apt_install("openjdk-17-jre-headless")
    if not list((KAFKA_HOME / "libs").glob("kafka_2.13-*.jar")):
        if not shutil.which("mvn"):
            apt_install("maven")
        say("fetching Apache Kafka jars from Maven Central (cached in ~/.m2)")
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(ROOT / "deploy/local/kafka/pom.xml"),
             "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={KAFKA_HOME / 'libs'}"],
            check=True,
        )
    postgres_bin()
    if not shutil.which("redis-server"):
        apt_install("redis-server")


# --- processes ------------------------------------------------------------------------------------------


def pid_of(name: str) -> int | None:
    """The pid in the pidfile, if that process is alive and is still the one we started."""
    pidfile = RUN / f"{name}.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        marker = pidfile.read_text().split(maxsplit=1)[1].strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return pid if marker in cmdline else None


def spawn(name: str, argv: list[str], *, marker: str, env: dict[str, str] | None = None,
          background: bool = False) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            cwd=ROOT, start_new_session=True,
                            preexec_fn=lower_cpu_share if background and BACKGROUND_NICE else None)
    (RUN / f"{name}.pid").write_text(f"{proc.pid} {marker}\n")
    return proc.pid


def stop_pid(name: str, timeout_s: float = 30) -> bool:
    pid = pid_of(name)
    if pid is None:
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        if _is_zombie(pid):
            break
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
        os.killpg(pid, signal.SIGKILL)
    (RUN / f"{name}.pid").unlink(missing_ok=True)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float, log_name: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = ""
    if log_name and (LOGS / f"{log_name}.log").exists():
        tail = "\n".join((LOGS / f"{log_name}.log").read_text(errors="replace").splitlines()[-30:])
    sys.exit(f"[stack] {what} did not become ready within {timeout_s:.0f}s\n{tail}")


# --- Kafka -----------------------------------------------------------------------------------------------


def kafka_running() -> bool:
    return pid_of("kafka") is not None


def start_kafka() -> None:
    if kafka_running():
        return
    data = KAFKA_HOME / "data"
    config = KAFKA_HOME / "server.properties"
    config.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{CONTROLLER_PORT}",
        f"listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data}",
        "num.partitions=6",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=12",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "log.retention.hours=168",
        "",
    ]))
    classpath = f"{KAFKA_HOME / 'libs'}/*"
    java = ["java", "-Xms512m", "-Xmx2g", "-XX:+UseG1GC", f"-Dkafka.logs.dir={LOGS / 'kafka-broker'}",
            f"-Dlog4j2.configurationFile={ROOT / 'deploy/local/kafka/log4j2.properties'}", "-cp", classpath]
    if not (data / "meta.properties").exists():
        cluster_id = subprocess.run([*java, "kafka.tools.StorageTool", "random-uuid"], check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1]
        subprocess.run([*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c",
                        str(config)], check=True, stdout=subprocess.DEVNULL)
    spawn("kafka", [*java, "kafka.Kafka", str(config)], marker=str(config))


# --- PostgreSQL ------------------------------------------------------------------------------------------


def _as_postgres_user(argv: list[str]) -> list[str]:
    """Postgres refuses to run as root: on a root shell, run it as the 'postgres' user."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _ensure_postgres_user() -> None:
    if os.geteuid() == 0:
        try:
            subprocess.run(["id", "postgres"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)


def pg_data() -> Path:
    return LOCAL / "postgres" / "data"


def postgres_running() -> bool:
    pidfile = pg_data() / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists() and not _is_zombie(pid)


def start_postgres() -> None:
    if postgres_running():
        return
    bindir = postgres_bin()
    _ensure_postgres_user()
    data = pg_data()
    sockets = LOCAL / "postgres" / "sockets"
    for d in (LOCAL, LOCAL / "postgres", sockets):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(LOCAL / "postgres", "postgres")
        shutil.chown(sockets, "postgres")
    if not (data / "PG_VERSION").exists():
        say("initialising PostgreSQL data directory")
        subprocess.run(_as_postgres_user([str(bindir / "initdb"), "-D", str(data), "-U", "marketing",
                                          "--auth=trust", "-E", "UTF8", "--locale=C"]),
                       check=True, stdout=subprocess.DEVNULL)
    # More than the 128 MB / 1 GB defaults: a 1M-customer backfill writes about 1 GB of WAL, and a
    # checkpoint in the middle of it costs more than the job's own writes.
    options = (f"-p {POSTGRES_PORT} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=300"
               f" -c shared_buffers=512MB -c max_wal_size=4GB")
    subprocess.run(_as_postgres_user([str(bindir / "pg_ctl"), "-D", str(data), "-l",
                                      str(LOCAL / "postgres" / "postgres.log"), "-o", options, "-w", "start"]),
                   check=True, stdout=subprocess.DEVNULL)


def ensure_database() -> None:
    bindir = postgres_bin()
    exists = subprocess.run(
        [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(POSTGRES_PORT), "-U", "marketing", "-d", "postgres",
         "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'marketing'"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(POSTGRES_PORT), "-U", "marketing",
                        "marketing"], check=True)


def stop_postgres() -> bool:
    if not postgres_running():
        return False
    subprocess.run(_as_postgres_user([str(postgres_bin() / "pg_ctl"), "-D", str(pg_data()), "-m", "fast", "-w",
                                      "stop"]), check=False, stdout=subprocess.DEVNULL)
    return True


# --- Redis -----------------------------------------------------------------------------------------------


def start_redis() -> None:
    if pid_of("redis") is not None:
        return
    data = LOCAL / "redis"
    data.mkdir(parents=True, exist_ok=True)
    # The read model is disposable (rebuilt from the ledgers), so no persistence: a restart is a data loss
    # that marketing_view must notice and repair, exactly as in production.
    spawn("redis", ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--dir", str(data),
                    "--save", "", "--appendonly", "no", "--maxclients", "2000"],
          marker=f"redis-server 127.0.0.1:{REDIS_PORT}")


# --- environment and services ----------------------------------------------------------------------------


def secret(name: str, nbytes: int = 24) -> str:
    SECRETS.mkdir(parents=True, exist_ok=True)
    SECRETS.chmod(0o700)
    path = SECRETS / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(nbytes))
        path.chmod(0o600)
    return path.read_text().strip()


def stack_env() -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
        "DATABASE_URL": f"postgresql://marketing@127.0.0.1:{POSTGRES_PORT}/marketing",
        "REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "MARKETING_API_KEY": secret("dev_api_key"),
        "GIFTCARD_LEDGER_CARD_HMAC_KEY": secret("card_hmac_key", 32),
        # The local stack also serves the benchmarks' load: a high per-key limit (production default: 50/s).
        "MARKETING_RATE_LIMIT_PER_S": os.environ.get("MARKETING_RATE_LIMIT_PER_S", "100000"),
        "MARKETING_RATE_LIMIT_BURST": os.environ.get("MARKETING_RATE_LIMIT_BURST", "100000"),
    }
    for name, (port, var) in SERVICES.items():
        env[var] = f"http://127.0.0.1:{port}"
        if module_of(name) == name:  # the projector takes its port from PROCESSES
            env[f"{name.upper()}_HTTP_PORT"] = str(port)
    return env


def write_env_file(env: dict[str, str]) -> Path:
    path = LOCAL / "stack.env"
    lines = ["# Written by `make up` (deploy/local/stack.py). Shell-sourceable: set -a; . .local/stack.env"]
    lines += [f"{k}='{v}'" for k, v in env.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def prepare_kafka_and_db(env: dict[str, str]) -> None:
    """Topics (POS topics with several partitions), and the migrations of each service about to start
    (a running service migrated its schema when it started)."""
    code = (
        "import asyncio, os\n"
        "from shared.kafka import ensure_topics\n"
        "from shared.topology import topic_specs, topic_configs\n"
        "created = asyncio.run(ensure_topics(os.environ['KAFKA_BOOTSTRAP_SERVERS'], topic_specs(),"
        " config=topic_configs()))\n"
        "print(f'topics created: {len(created)}' if created else 'topics: all present')\n"
    )
    subprocess.run([str(PYTHON), "-c", code], check=True, env={**os.environ, **env}, cwd=ROOT)
    for module in dict.fromkeys(module_of(name) for name in SERVICES if pid_of(name) is None):
        subprocess.run([str(PYTHON), "-m", f"services.{module}", "migrate"], check=True, env={**os.environ, **env},
                       cwd=ROOT, stdout=subprocess.DEVNULL)


def start_services(env: dict[str, str]) -> list[str]:
    started = []
    for name in SERVICES:
        if pid_of(name) is not None:
            continue
        module = module_of(name)
        own = dict(PROCESSES.get(name, (module, {}))[1])
        if module == "marketing_view":  # page sessions must verify in every worker and process
            own["MARKETING_VIEW_SESSION_SECRET"] = secret("view_session_secret", 32)
        spawn(name, [str(PYTHON), "-m", f"services.{module}", "serve"], marker=f"services.{module}",
              env={**os.environ, **env, **own, "PYTHONUNBUFFERED": "1"}, background=name not in FOREGROUND)
        started.append(name)
    for name in started:
        port = SERVICES[name][0]
        wait_for(name, lambda port=port: http_ok(f"http://127.0.0.1:{port}/readyz"), 90, log_name=name)
    return started


def up(infra_only: bool) -> None:
    t0 = time.monotonic()
    for d in (LOCAL, RUN, LOGS, KAFKA_HOME):
        d.mkdir(parents=True, exist_ok=True)
    LOCAL.chmod(0o755)
    install()
    start_kafka()
    start_postgres()
    start_redis()
    wait_for("Kafka", lambda: port_open(KAFKA_PORT), 90, log_name="kafka")
    wait_for("Redis", lambda: port_open(REDIS_PORT), 30, log_name="redis")
    ensure_database()
    env = stack_env()
    env_file = write_env_file(env)
    prepare_kafka_and_db(env)
    started = [] if infra_only else start_services(env)
    say(f"up in {time.monotonic() - t0:.1f}s" + (f" (started {', '.join(started)})" if started else ""))
    status(env)
    say(f"environment: {env_file.relative_to(ROOT)}  (set -a; . {env_file.relative_to(ROOT)}; set +a)")


def down() -> None:
    for name in reversed(list(SERVICES)):
        if stop_pid(name, timeout_s=15):
            say(f"stopped {name}")
    if stop_pid("redis"):
        say("stopped redis")
    if stop_pid("kafka", timeout_s=60):
        say("stopped kafka")
    if stop_postgres():
        say("stopped postgres")


def status(env: dict[str, str] | None = None) -> bool:
    env = env or stack_env()
    rows = [
        ("kafka", kafka_running() and port_open(KAFKA_PORT), env["KAFKA_BOOTSTRAP_SERVERS"]),
        ("postgres", postgres_running() and port_open(POSTGRES_PORT), env["DATABASE_URL"]),
        ("redis", pid_of("redis") is not None and port_open(REDIS_PORT), env["REDIS_URL"]),
    ]
    for name, (port, var) in SERVICES.items():
        alive = pid_of(name) is not None
        ready = alive and http_ok(f"http://127.0.0.1:{port}/readyz")
        rows.append((name, ready if alive else False, env[var] + ("" if ready or not alive else "  (not ready)")))
    width = max(len(r[0]) for r in rows)
    for name, ok, where in rows:
        print(f"  {name:<{width}}  {'up  ' if ok else 'down'}  {where}")
    tab = f"{env['MARKETING_VIEW_URL']}/v1/customers/C-10042/marketing"
    print(f"  read API: curl -H 'Authorization: Bearer {env['MARKETING_API_KEY']}' {tab}")
    return all(ok for _, ok, _ in rows)


def install_browser() -> None:
    """Debian's Chromium for the browser test of the tab page (no browser is ever downloaded otherwise)."""
    if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
        apt_install("chromium", "fonts-dejavu-core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install-browser")
    up_parser = sub.add_parser("up")
    up_parser.add_argument("--infra-only", action="store_true", help="Kafka, Postgres and Redis, no services")
    sub.add_parser("down")
    sub.add_parser("status")
    args = parser.parse_args()
    if args.command == "up":
        up(args.infra_only)
    elif args.command == "down":
        down()
    elif args.command == "install-browser":
        install_browser()
    else:
        sys.exit(0 if status() else 3)


if __name__ == "__main__":
    main()
