"""A private Dovecot 2.3 IMAP server on 127.0.0.1 for tests (spec dovecot-fixture.md, verified).

One server per pytest process, shared by every conftest that asks for it (the ``dovecot`` fixture
of tests/shared_fixtures/dovecot.py, used by tests/imap, tests/brick and tests/brick_jobs) through
:func:`acquire`/:func:`release`; it stops when the last user releases it.
Accounts: ``alice``/``bob`` plus a pool ``pool01..`` written before start (Dovecot re-reads the
passwd-file at most once a second, gotcha 7), so each test can take a fresh, empty mailbox.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"  # /usr/sbin is not on every PATH (gotcha 16)
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
NAMED_USERS = {"alice": "alice-pw", "bob": "bob-pw"}
POOL_SIZE = 250
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0


class NotInstalled(RuntimeError):
    """Dovecot is not installed here."""


class StartFailed(RuntimeError):
    """Dovecot did not come up; the message carries its stderr and log."""


@dataclasses.dataclass
class Dovecot:
    host: str
    port: int
    run_dir: Path
    conf: Path
    log: Path
    users: dict
    pid: int
    uid: int
    gid: int
    startup_seconds: float
    tls_port: int = 0
    """imaps port with a throwaway self-signed certificate (``cert``); 0 when openssl is missing."""
    cert: Path | None = None
    _pool: list = dataclasses.field(default_factory=list)

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``doveadm -c CONF ARGS...`` against this instance, never the system one (gotcha 15)."""
        return subprocess.run([DOVEADM, "-c", str(self.conf), *args], env={**os.environ, "TZ": "UTC"},
                              capture_output=True, text=True, check=check, timeout=30)   # dates in UTC

    def fresh_account(self) -> tuple[str, str]:
        """A pool account nobody has used in this run: (user, password)."""
        if not self._pool:
            raise RuntimeError(f"Dovecot account pool exhausted ({POOL_SIZE}); raise POOL_SIZE")
        name = self._pool.pop(0)
        return name, self.users[name]

    def url(self, user: str) -> str:
        return f"imap://{user}@{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mail_account() -> tuple[str, str, int, int]:
    """The unprivileged account all Dovecot processes and mail files belong to (gotcha 1)."""
    pw = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name, pw.pw_uid, pw.pw_gid


def _group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) PIDs in the process group we started (gotcha 14)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def _wait_ready(proc: subprocess.Popen, port: int, deadline: float) -> bool:
    """True once the '* OK' greeting arrives: only sent when auth is up (gotcha 3)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(100).startswith(b"* OK"):
                    s.sendall(b"a LOGOUT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)   # our own process group only


def _self_signed(run: Path) -> Path | None:
    """A P-256 certificate for 127.0.0.1 (imaps tests), or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = run / "cert.pem", run / "key.pem"
    done = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                           "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, timeout=30)
    return cert if done.returncode == 0 else None


def start() -> tuple[Dovecot, subprocess.Popen]:
    if not os.path.exists(DOVECOT):
        raise NotInstalled("dovecot is not installed (run `bash .ci/debian-deps` as root, "
                           "or apt-get install -y dovecot-imapd)")
    version = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True).stdout
    if not version.startswith("2.3."):
        raise StartFailed(f"config template is for Dovecot 2.3, found {version!r}")

    user, group, uid, gid = _mail_account()
    run = Path(tempfile.mkdtemp(prefix="dc", dir="/tmp"))   # short: socket paths < 108 bytes (gotcha 2)
    os.chmod(run, 0o755)
    users = dict(NAMED_USERS)
    pool = [f"pool{i:02d}" for i in range(1, POOL_SIZE + 1)]
    users.update({name: f"{name}-pw" for name in pool})
    (run / "home").mkdir()                     # Dovecot creates each home on first login (saves
    for name in NAMED_USERS:                  # hundreds of slow mkdir/rmdir for unused pool accounts)
        (run / "home" / name).mkdir()
    (run / "users").write_text("".join(
        f"{n}:{{PLAIN}}{p}:{uid}:{gid}::{run}/home/{n}::\n" for n, p in users.items()))
    template = (HERE / "dovecot.conf.tmpl").read_text()
    cert = _self_signed(run)
    ssl_settings = (f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{run / 'key.pem'}" if cert else "ssl = no")

    for _attempt in range(3):                  # the free port can be taken before Dovecot binds it
        port = _free_port()
        tls_port = _free_port() if cert else 0
        conf_text = template.replace("@SSL_SETTINGS@", ssl_settings)
        for key, value in {"@RUN@": str(run), "@PORT@": str(port), "@TLSPORT@": str(tls_port), "@USER@": user,
                           "@GROUP@": group, "@UID@": str(uid), "@GID@": str(gid)}.items():
            conf_text = conf_text.replace(key, value)
        (run / "dovecot.conf").write_text(conf_text)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{uid}:{gid}", str(run)], check=True)
        cmd = [DOVECOT, "-F", "-c", str(run / "dovecot.conf")]
        if os.geteuid() == 0:
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *cmd]
        t0 = time.monotonic()
        with open(run / "stdout.log", "ab") as out:   # config errors go to stderr (gotcha 13)
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        if _wait_ready(proc, port, t0 + START_TIMEOUT):
            startup = time.monotonic() - t0
            break
        _stop(proc)
    else:
        out = (run / "stdout.log").read_text(errors="replace")
        log = (run / "dovecot.log").read_text(errors="replace") if (run / "dovecot.log").exists() else ""
        shutil.rmtree(run, ignore_errors=True)
        raise StartFailed(f"dovecot did not start\n--- stdout/stderr ---\n{out}\n--- log ---\n{log}")

    server = Dovecot(host="127.0.0.1", port=port, run_dir=run, conf=run / "dovecot.conf",
                     log=run / "dovecot.log", users=users, pid=proc.pid, uid=uid, gid=gid,
                     startup_seconds=startup, tls_port=tls_port, cert=cert, _pool=pool)
    return server, proc


def stop(server: Dovecot, proc: subprocess.Popen) -> None:
    _stop(proc)
    if not os.environ.get("KEEP_DOVECOT_DIR"):
        shutil.rmtree(server.run_dir, ignore_errors=True)


_shared: dict = {"server": None, "proc": None, "refs": 0}


def acquire() -> Dovecot:
    """The process-wide server, started on first use."""
    if _shared["server"] is None:
        _shared["server"], _shared["proc"] = start()
    _shared["refs"] += 1
    return _shared["server"]


def release() -> None:
    _shared["refs"] -= 1
    if _shared["refs"] <= 0 and _shared["server"] is not None:
        stop(_shared["server"], _shared["proc"])
        _shared.update(server=None, proc=None, refs=0)
