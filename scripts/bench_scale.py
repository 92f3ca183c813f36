#!/usr/bin/env python3
"""Lease keeping at scale (issue 17), driven by scripts/bench-scale.sh, which builds vault-env and
starts MariaDB. Every OpenBao here writes a file audit log (configured, as OpenBao wants); the
figures come from what OpenBao received, not from vault-env's own logs.

Run 1: one vault-env keeping N database leases (N = LEASES, default "10 100 1000"), each from its
own role (distinct paths), TTL RUN1_TTL s and max TTL RUN1_MAX s, for RUN1_SECONDS s: renewal
points within lease lifetimes, double renewals, re-fetches and restarts per max-TTL event,
start-up time and requests, CPU and RSS. Then the same with N PKI certificates (N = PKI, default
"1000"; `>>vault:pki/issue/…` writes, one common name each, EC keys (PKI_KEY=rsa: 2048-bit RSA, an
answer three times bigger, issued ten times slower), leased for RUN1_TTL s, not
renewable, only `serial_number` used): each max TTL is a re-issue of all N and a restart.

Run 2: SUPERVISORS vault-env daemons (one lease each, TTL RUN2_TTL, max RUN2_MAX) started within
a few seconds, for RUN2_SECONDS s, OpenBao stopped (SIGSTOP) for OUTAGE s at OUTAGE_AT s (an
outage longer than the quarter of a TTL left after a renewal must let some leases expire):
renewals and restarts per second, restarts before expiry, OpenBao's CPU.

Run 3: STEADY daemons (default SUPERVISORS) started the same way, one lease each, TTL RUN3_TTL s
(default 20) and a max TTL far beyond the run, for RUN3_SECONDS s (default 240), nothing stopped:
how a fleet started together spreads out. Each cycle's peak against its mean, and over the last
STEADY_WINDOW s (default 120) the busiest second against the mean of every second (idle ones
counted: the load Vault sees once the fleet has spread), with the seconds without a renewal.

Writes bench-scale.json and, with matplotlib, bench-scale.png into OUT_DIR.
"""
import collections, datetime, json, os, signal, socket, statistics, subprocess, sys, time, urllib.request

STATE, BAO_BIN, VAULT_ENV, DB_PORT, OUT_DIR = (os.environ[k] for k in ("STATE", "BAO_BIN", "VAULT_ENV", "MARIADB_PORT", "OUT_DIR"))
BUILD = os.environ.get("BUILD", "")
num = lambda k, d: int(os.environ.get(k, d))
TICK = os.sysconf("SC_CLK_TCK")


def log(line):
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid, field="VmRSS"):
    """Resident memory now (VmRSS) or at its highest so far (VmHWM)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Bao:
    """An OpenBao dev server with a file audit log."""

    def __init__(self, name):
        self.dir = os.path.join(STATE, f"scale-{name}")
        os.makedirs(self.dir, exist_ok=True)
        self.audit = os.path.join(self.dir, "audit.log")
        if os.path.exists(self.audit):
            os.remove(self.audit)
        config = os.path.join(self.dir, "audit.hcl")
        with open(config, "w") as f:
            f.write(f'audit "file" "bench" {{\n  options {{\n    file_path = "{self.audit}"\n  }}\n}}\n')
        port = free_port()
        self.addr = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([BAO_BIN, "server", "-dev", "-dev-root-token-id=root", "-dev-no-store-token",
                                      f"-dev-listen-address=127.0.0.1:{port}", f"-config={config}"],
                                     env={"HOME": self.dir, "PATH": os.environ["PATH"]},
                                     stdout=open(os.path.join(self.dir, "bao.log"), "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                self.api("GET", "sys/mounts/secret")
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("OpenBao did not start")

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.addr}/v1/{path}", data=data, method=method, headers={"X-Vault-Token": "root"})
        with urllib.request.urlopen(req, timeout=30) as answer:
            text = answer.read()
            return json.loads(text) if text else {}

    def database(self, roles, ttl, max_ttl):
        self.api("POST", "sys/mounts/database", {"type": "database"})
        self.api("POST", "database/config/mariadb", {
            "plugin_name": "mysql-database-plugin", "connection_url": f"{{{{username}}}}:{{{{password}}}}@tcp(127.0.0.1:{DB_PORT})/",
            "username": "root", "password": "rootpass", "allowed_roles": ["*"], "max_open_connections": 8})
        for role in roles:
            self.api("POST", f"database/roles/{role}", {
                "db_name": "mariadb", "creation_statements": ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';"],
                "revocation_statements": ["DROP USER IF EXISTS '{{name}}'@'%';"], "default_ttl": f"{ttl}s", "max_ttl": f"{max_ttl}s"})

    def pki(self):
        """A PKI engine whose role issues leased certificates (not renewable: they are replaced)."""
        self.api("POST", "sys/mounts/pki", {"type": "pki"})
        self.api("POST", "sys/mounts/pki/tune", {"max_lease_ttl": "87600h"})
        key = os.environ.get("PKI_KEY", "ec")
        self.api("POST", "pki/root/generate/internal", {"common_name": "bench-ca", "ttl": "8760h", "key_type": key})
        self.api("POST", "pki/roles/svc", {"allowed_domains": ["svc.local"], "allow_subdomains": True, "max_ttl": "72h",
                                           "generate_lease": True, "key_type": key})

    def stop(self):
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        self.proc.wait()

    def events(self):
        """(time, kind, path, lease id) of every response: kind grant (a creds read) or renew."""
        out = []
        for line in open(self.audit):
            e = json.loads(line)
            if e.get("type") != "response":
                continue
            t = datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
            path, lease = e["request"]["path"], (e.get("response") or {}).get("secret", {}).get("lease_id")
            if (path.startswith("database/creds/") or path.startswith("pki/issue/")) and lease:
                out.append((t, "grant", path, lease))
            elif path == "sys/leases/renew" and lease and not (e.get("error") or ""):
                out.append((t, "renew", path, lease))
        return out

    def requests_between(self, since, until):
        n = 0
        for line in open(self.audit):
            e = json.loads(line)
            if e.get("type") == "request" and since <= datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() <= until:
                n += 1
        return n


def renewal_fractions(events, ttl, max_ttl):
    """Where each renewal fell within its lease's current lifetime (0..1), and double renewals."""
    by_lease = collections.defaultdict(list)
    for t, kind, _, lease in sorted(events):
        by_lease[lease].append((t, kind))
    fractions, doubles = [], 0
    for items in by_lease.values():
        granted = items[0][0]
        previous = granted
        for t, kind in items[1:]:
            if kind != "renew":
                continue
            life = min(ttl, granted + max_ttl - previous)
            if life > 0:
                fraction = (t - previous) / life
                fractions.append(fraction)
                if fraction < 0.5:
                    doubles += 1
            previous = t
    return fractions, doubles


def generations(events, gap=3.0):
    """Grant times clustered: each cluster is one fetch of every secret."""
    grants = sorted(t for t, kind, _, _ in events if kind == "grant")
    clusters = []
    for t in grants:
        if clusters and t - clusters[-1][-1] <= gap:
            clusters[-1].append(t)
        else:
            clusters.append([t])
    return clusters


def run1(n, ttl, max_ttl, seconds, kind="database"):
    """One vault-env with `n` leases: database credentials (renewed up to `max_ttl`) or, with
    kind "pki", certificates of `ttl` (not renewable; only their serial number is used)."""
    bao = Bao(f"run1-{kind}-{n}")
    roles = [f"r{i}" for i in range(n)]
    if kind == "pki":
        bao.pki()
        max_ttl = ttl
    else:
        bao.database(roles, ttl, max_ttl)
    starts = os.path.join(bao.dir, "app-starts")
    if os.path.exists(starts):
        os.remove(starts)
    env = {"PATH": os.environ["PATH"], "HOME": bao.dir, "VAULT_ADDR": bao.addr, "VAULT_TOKEN": "root", "VAULT_ENV_DAEMON": "true",
           "VAULT_ENV_STOP_TIMEOUT": "2s"}
    if kind == "pki":
        env.update({f"S{i}": f'>>vault:pki/issue/svc#serial_number#{{"common_name":"s{i}.svc.local","ttl":"{ttl}s"}}' for i in range(n)})
    else:
        env.update({f"S{i}": f"vault:database/creds/{role}#username" for i, role in enumerate(roles)})
    app = f"date +%s.%N >> {starts}; exec sleep 1000000"
    begun = time.time()
    ve = subprocess.Popen([VAULT_ENV, "sh", "-c", app], env=env, stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(bao.dir, "vault-env.log"), "w"))
    while not os.path.exists(starts) and ve.poll() is None and time.time() - begun < 120:
        time.sleep(0.01)
    app_at = time.time()
    cpu0, samples = cpu_seconds(ve.pid), []
    while time.time() - begun < seconds and ve.poll() is None:
        samples.append(rss_kib(ve.pid))
        time.sleep(1)
    cpu = cpu_seconds(ve.pid) - cpu0
    wall = time.time() - app_at
    peak = rss_kib(ve.pid, "VmHWM")
    ve.send_signal(signal.SIGTERM)
    ve.wait(timeout=60)
    events = bao.events()
    fractions, doubles = renewal_fractions(events, ttl, max_ttl)
    gens = generations(events)
    restarts = len(open(starts).read().split()) - 1
    startup_requests = bao.requests_between(begun, app_at)
    bao.stop()
    in_window = sum(1 for f in fractions if 0.695 <= f <= 0.805)
    result = {
        "kind": kind, "leases": n, "ttl": ttl, "max_ttl": max_ttl, "seconds": round(wall),
        "startup_s": round(app_at - begun, 3), "startup_requests": startup_requests,
        "renewals": len(fractions), "renewals_in_window": in_window,
        "fraction_p50": round(statistics.median(fractions), 4) if fractions else None,
        "fraction_min": round(min(fractions), 4) if fractions else None, "fraction_max": round(max(fractions), 4) if fractions else None,
        "double_renewals": doubles, "fetch_generations": [len(g) for g in gens], "restarts": restarts,
        "cpu_percent_of_a_core": round(100 * cpu / wall, 3), "cpu_s_per_hour": round(3600 * cpu / wall, 1),
        "rss_kib_peak": peak, "rss_kib_max": max(samples) if samples else 0, "rss_kib_last": samples[-1] if samples else 0, "rss_kib": samples,
        "fractions": [round(f, 4) for f in fractions],
    }
    log(f"run 1, {n} {kind} leases: start-up {result['startup_s']} s with {startup_requests} requests; {len(fractions)} renewals, "
        f"{in_window} in the 70-80 % window (p50 {result['fraction_p50']}, {result['fraction_min']}..{result['fraction_max']}), "
        f"{doubles} double; fetches {result['fetch_generations']}, {restarts} restarts; CPU {result['cpu_percent_of_a_core']} % "
        f"of a core; RSS peak {peak} KiB, most when sampled each second {result['rss_kib_max']} KiB")
    return result


def start_fleet(bao, m, role, run):
    """`m` vault-env daemons against `bao`, one `role` lease each, started within about 3 s, as a
    rollout does. Returns the processes, when they began, the file each app start is written to
    (`ID time`) and the directory of their logs."""
    starts = os.path.join(bao.dir, "app-starts")
    if os.path.exists(starts):
        os.remove(starts)
    logs = os.path.join(bao.dir, "logs")
    os.makedirs(logs, exist_ok=True)
    procs = []
    begun = time.time()
    for i in range(m):
        env = {"PATH": os.environ["PATH"], "HOME": bao.dir, "VAULT_ADDR": bao.addr, "VAULT_TOKEN": "root", "VAULT_ENV_DAEMON": "true",
               "VAULT_ENV_STOP_TIMEOUT": "2s", "S": f"vault:database/creds/{role}#username", "ID": str(i)}
        app = f'echo "$ID $(date +%s.%N)" >> {starts}; exec sleep 1000000'
        procs.append(subprocess.Popen([VAULT_ENV, "sh", "-c", app], env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(logs, f"{i}.log"), "w")))
        time.sleep(3.0 / m)
    log(f"{run}: {m} supervisors started in {time.time() - begun:.1f} s")
    return procs, begun, starts, logs


def end_fleet(bao, procs, begun, bao_cpu0):
    """Stops every daemon, then OpenBao. Returns how many daemons were still alive, OpenBao's CPU
    seconds since `bao_cpu0`, its events, and the renewals' times since `begun`."""
    bao_cpu = cpu_seconds(bao.proc.pid) - bao_cpu0
    alive = sum(1 for p in procs if p.poll() is None)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)
    events = bao.events()
    bao.stop()
    return alive, bao_cpu, events, [t - begun for t, kind, _, _ in events if kind == "renew"]


def renewal_cycles(per_second):
    """Renewal cycles: runs of seconds with renewals, apart by 3 s or more; in each, the peak per
    second against the cycle's mean (how evenly a fleet started together renews)."""
    cycles, run = [], []
    for s in sorted(per_second):
        if run and s - run[-1] > 2:
            cycles.append(run)
            run = []
        run.append(s)
    if run:
        cycles.append(run)
    stats = []
    for c in cycles:
        n, span, peak = sum(per_second[s] for s in c), c[-1] - c[0] + 1, max(per_second[s] for s in c)
        stats.append({"from_s": c[0], "seconds": span, "renewals": n, "peak_per_s": peak, "peak_over_mean": round(peak * span / n, 2)})
    return stats


def run2(m, ttl, max_ttl, seconds, outage_at, outage):
    bao = Bao("run2")
    bao.database(["fleet"], ttl, max_ttl)
    procs, begun, starts, logs = start_fleet(bao, m, "fleet", "run 2")
    bao_cpu0 = cpu_seconds(bao.proc.pid)
    stopped = False
    while time.time() - begun < seconds:
        now = time.time() - begun
        if not stopped and now >= outage_at:
            bao.proc.send_signal(signal.SIGSTOP)
            stopped, outage_began = True, time.time()
            log(f"run 2: OpenBao stopped for {outage} s")
        if stopped and outage_began and time.time() - outage_began >= outage:
            bao.proc.send_signal(signal.SIGCONT)
            outage_began = None
            log("run 2: OpenBao continues")
        time.sleep(0.2)
    alive, bao_cpu, events, renew_times = end_fleet(bao, procs, begun, bao_cpu0)
    start_lines = [line.split() for line in open(starts).read().splitlines() if line.strip()]
    firsts, restarts_at = set(), []
    for ident, t in start_lines:
        if ident in firsts:
            restarts_at.append(float(t) - begun)
        firsts.add(ident)
    ends, expired = [], 0
    for i in range(m):
        text = open(os.path.join(logs, f"{i}.log")).read()
        for part in text.split("ends in ")[1:]:
            ends.append(int(part.split("s", 1)[0]))
        expired += text.count("expired")
    per_second = collections.Counter(int(t) for t in renew_times)
    active = [per_second.get(s, 0) for s in range(int(seconds))]
    busy = [c for c in active if c]
    restart_seconds = collections.Counter(int(t) for t in restarts_at)
    cycle_stats = renewal_cycles(per_second)
    result = {
        "supervisors": m, "alive_at_end": alive, "ttl": ttl, "max_ttl": max_ttl, "seconds": seconds, "outage_at": outage_at, "outage_s": outage,
        "renewals": len(renew_times), "renewals_peak_per_s": max(active) if active else 0,
        "renewals_mean_per_busy_s": round(statistics.mean(busy), 1) if busy else 0,
        "restarts": len(restarts_at), "restarts_peak_per_s": max(restart_seconds.values()) if restart_seconds else 0,
        "restart_window_s": round(max(restarts_at) - min(restarts_at), 1) if restarts_at else 0,
        "min_seconds_left_at_restart": min(ends) if ends else None, "expired_mentions": expired,
        "openbao_cpu_percent": round(100 * bao_cpu / seconds, 1),
        "renewal_cycles": cycle_stats,
        "renew_times": [round(t, 2) for t in renew_times], "restart_times": [round(t, 2) for t in restarts_at],
    }
    log(f"run 2: {alive}/{m} alive; {len(renew_times)} renewals, peak {result['renewals_peak_per_s']}/s vs mean "
        f"{result['renewals_mean_per_busy_s']}/s over busy seconds; {len(restarts_at)} restarts over {result['restart_window_s']} s, "
        f"peak {result['restarts_peak_per_s']}/s; least time left at a restart {result['min_seconds_left_at_restart']} s; "
        f"OpenBao CPU {result['openbao_cpu_percent']} %")
    for c in cycle_stats:
        log(f"run 2: renewal cycle from {c['from_s']} s: {c['renewals']} renewals over {c['seconds']} s, "
            f"peak {c['peak_per_s']}/s, {c['peak_over_mean']}x the cycle's mean")
    return result


def run3(m, ttl, seconds, window):
    bao = Bao("run3")
    bao.database(["steady"], ttl, 100 * ttl)
    procs, begun, _, _ = start_fleet(bao, m, "steady", "run 3")
    bao_cpu0 = cpu_seconds(bao.proc.pid)
    while time.time() - begun < seconds:
        time.sleep(0.5)
    alive, bao_cpu, _, renew_times = end_fleet(bao, procs, begun, bao_cpu0)
    per_second = collections.Counter(int(t) for t in renew_times)
    # The last whole seconds before the daemons were stopped.
    last = [per_second.get(s, 0) for s in range(int(seconds) - window - 1, int(seconds) - 1)]
    mean = statistics.mean(last) if last else 0
    result = {
        "supervisors": m, "alive_at_end": alive, "ttl": ttl, "seconds": seconds, "renewals": len(renew_times),
        "renewal_cycles": renewal_cycles(per_second),
        "last_window_s": len(last), "last_mean_per_s": round(mean, 1), "last_peak_per_s": max(last) if last else 0,
        "last_peak_over_mean": round(max(last) / mean, 2) if mean else None, "last_idle_s": sum(1 for c in last if not c),
        "openbao_cpu_percent": round(100 * bao_cpu / seconds, 1), "renew_times": [round(t, 2) for t in renew_times],
    }
    log(f"run 3: {alive}/{m} alive; {len(renew_times)} renewals; over the last {len(last)} s: peak {result['last_peak_per_s']}/s "
        f"against a mean of {result['last_mean_per_s']}/s ({result['last_peak_over_mean']}x), {result['last_idle_s']} s without a renewal; "
        f"OpenBao CPU {result['openbao_cpu_percent']} %")
    for c in result["renewal_cycles"]:
        log(f"run 3: renewal cycle from {c['from_s']} s: {c['renewals']} renewals over {c['seconds']} s, "
            f"peak {c['peak_per_s']}/s, {c['peak_over_mean']}x the cycle's mean")
    return result


def plot(results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing: no picture")
        return
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 12))
    r2 = results.get("run2")
    if r2:
        edges = range(0, r2["seconds"] + 1)
        top.hist(r2["renew_times"], bins=edges, label="lease renewals OpenBao received", color="tab:blue")
        top.hist(r2["restart_times"], bins=edges, label="app restarts (max TTL reached)", color="tab:red", alpha=0.8)
        top.axvspan(r2["outage_at"], r2["outage_at"] + r2["outage_s"], color="grey", alpha=0.2, label="OpenBao stopped")
        top.set_title(f"{r2['supervisors']} vault-env daemons, one database lease each (TTL {r2['ttl']} s, max {r2['max_ttl']} s)")
        top.set_xlabel("seconds since the rollout began")
        top.set_ylabel("per second")
        top.legend()
    r3 = results.get("run3")
    if r3:
        middle.hist(r3["renew_times"], bins=range(0, r3["seconds"] + 1), color="tab:blue", label="lease renewals OpenBao received")
        middle.axvspan(r3["seconds"] - 1 - r3["last_window_s"], r3["seconds"] - 1, color="grey", alpha=0.15,
                       label=f"last {r3['last_window_s']} s: peak {r3['last_peak_over_mean']}x the mean")
        middle.set_title(f"{r3['supervisors']} vault-env daemons started together, one lease each (TTL {r3['ttl']} s): how they spread out")
        middle.set_xlabel("seconds since the rollout began")
        middle.set_ylabel("per second")
        middle.legend()
    runs = [r for r in results.get("run1", []) if r["fractions"]]
    if runs:
        last = runs[-1]
        bottom.hist(last["fractions"], bins=[0.6 + i * 0.005 for i in range(41)], color="tab:green")
        bottom.axvspan(0.70, 0.80, color="grey", alpha=0.2, label="target window 70-80 %")
        bottom.set_title(f"one vault-env with {last['leases']} leases: where each renewal fell in its lease's lifetime")
        bottom.set_xlabel("fraction of the lease's lifetime")
        bottom.set_ylabel("renewals")
        bottom.legend()
    for axes in (top, middle, bottom):
        if not axes.has_data():
            axes.set_axis_off()
    fig.tight_layout()
    path = os.path.join(OUT_DIR, "bench-scale.png")
    fig.savefig(path, dpi=90)
    log(f"picture: {path}")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    results = {"build": BUILD, "run1": []}
    for n in [int(x) for x in os.environ.get("LEASES", "10 100 1000").split()]:
        results["run1"].append(run1(n, num("RUN1_TTL", 20), num("RUN1_MAX", 60), num("RUN1_SECONDS", 140)))
    for n in [int(x) for x in os.environ.get("PKI", "1000").split()]:
        results["run1"].append(run1(n, num("RUN1_TTL", 20), 0, num("RUN1_SECONDS", 140), kind="pki"))
    m = num("SUPERVISORS", 1000)
    if m:
        results["run2"] = run2(m, num("RUN2_TTL", 60), num("RUN2_MAX", 180), num("RUN2_SECONDS", 220), num("OUTAGE_AT", 75), num("OUTAGE", 12))
    m = num("STEADY", m)
    if m:
        results["run3"] = run3(m, num("RUN3_TTL", 20), num("RUN3_SECONDS", 240), num("STEADY_WINDOW", 120))
    with open(os.path.join(STATE, "bench-scale.json"), "w") as f:
        json.dump(results, f)
    plot(results)
    summary = {k: ([{kk: vv for kk, vv in r.items() if kk != "fractions"} for r in v] if k == "run1"
                   else {kk: vv for kk, vv in v.items() if not kk.endswith("_times")} if isinstance(v, dict) else v)
               for k, v in results.items()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
