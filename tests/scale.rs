//! The small, fast version of scripts/bench-scale.sh: many leases in one vault-env, and many
//! vault-env daemons against one OpenBao, checked from OpenBao's audit log (what the server
//! received): renewals land in their 70–80 % window, each lease at the same place in it every
//! time, no lease is renewed twice per period, all the leases that reach their max TTL together
//! cause one re-fetch and one restart, restarts happen before the leases end, and the
//! supervisors' restarts spread out.

use crate::common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A database role's default and max TTL, in seconds.
#[derive(Clone, Copy)]
struct Ttls {
    ttl: f64,
    max: f64,
}

/// One supervisor's 30 leases: three renewals of 6 s, then the cap.
const LEASES: Ttls = Ttls { ttl: 6.0, max: 15.0 };

/// The fleet's: a 2 s replacement lead (a fifth of 10 s) and as much default splay, so the
/// splay stands out of the restarts' other spread (OpenBao's whole-second rounding of the capped
/// TTL, the renewals' own jitter), and the cap shows at the second renewal (at 14–16 s, 6–8 s
/// before the end), leaving the whole replacement window ahead.
const FLEET: Ttls = Ttls { ttl: 10.0, max: 22.0 };

/// OpenBao with a file audit log ([`audited_bao`]) and the database engine on `db` with `roles`.
fn audited_vault(dir: &Path, db: &MariaDb, roles: &[String], ttls: Ttls) -> Bao {
    let bao = audited_bao(dir);
    bao.api("POST", "sys/mounts/database", Some(json!({"type": "database"})));
    bao.api(
        "POST",
        "database/config/mariadb",
        Some(
            json!({"plugin_name": "mysql-database-plugin", "connection_url": format!("{{{{username}}}}:{{{{password}}}}@tcp(127.0.0.1:{})/", db.port),
                    "username": "root", "password": "rootpass", "allowed_roles": ["*"]}),
        ),
    );
    for role in roles {
        bao.api(
            "POST",
            &format!("database/roles/{role}"),
            Some(json!({"db_name": "mariadb", "creation_statements": ["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';"],
                        "default_ttl": format!("{}s", ttls.ttl), "max_ttl": format!("{}s", ttls.max)})),
        );
    }
    bao
}

/// (seconds since the epoch, grant or renew, lease id) of every answer OpenBao gave.
fn audit_events(dir: &Path) -> Vec<(f64, &'static str, String)> {
    let text = audit_log(dir);
    let mut out = Vec::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["type"] != "response" || e["error"].as_str().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let (Some(path), Some(lease)) = (e["request"]["path"].as_str(), e["response"]["secret"]["lease_id"].as_str()) else { continue };
        let kind = if path.starts_with("database/creds/") {
            "grant"
        } else if path == "sys/leases/renew" {
            "renew"
        } else {
            continue;
        };
        out.push((rfc3339_seconds(e["time"].as_str().unwrap()), kind, lease.to_string()));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// `2026-12-02T17:30:01.123456Z` → seconds since the epoch.
fn rfc3339_seconds(t: &str) -> f64 {
    let (whole, frac) = t.trim_end_matches('Z').split_once('.').unwrap_or((t.trim_end_matches('Z'), "0"));
    let secs = humantime::parse_rfc3339(&format!("{whole}Z")).unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    secs + format!("0.{frac}").parse::<f64>().unwrap_or(0.0)
}

/// The most requests to `path` that OpenBao was handling at once (audit request to response).
fn most_in_flight(dir: &Path, path: &str) -> usize {
    let text = audit_log(dir);
    let mut edges: Vec<(f64, i32)> = Vec::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["request"]["path"] == path {
            edges.push((rfc3339_seconds(e["time"].as_str().unwrap()), if e["type"] == "request" { 1 } else { -1 }));
        }
    }
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    edges
        .iter()
        .scan(0i32, |n, (_, d)| {
            *n += d;
            Some(*n)
        })
        .max()
        .unwrap_or(0) as usize
}

/// Each renewal's place in its lease's lifetime (from the previous grant or renewal).
fn renewal_fractions(events: &[(f64, &'static str, String)], ttls: Ttls) -> Vec<f64> {
    let mut last: HashMap<&str, (f64, f64)> = HashMap::new(); // lease → (granted, previous)
    let mut out = Vec::new();
    for (t, kind, lease) in events {
        match (*kind, last.get(lease.as_str()).copied()) {
            ("grant", _) => {
                last.insert(lease, (*t, *t));
            }
            ("renew", Some((granted, previous))) => {
                // What the previous answer granted: the TTL, or what was left to the max TTL
                // in whole seconds. OpenBao rounds that to the nearest second (4.85 s left is
                // granted as 5, and the lease then lives 5 s: measured with sys/leases/lookup),
                // and counts from its own issue time, a little before its audit entry. A renewal
                // is placed in the life that puts it closest to the middle of its window.
                let left = granted + ttls.max - previous;
                let lives = [left, left.ceil(), left.floor(), left.floor() - 1.0].map(|l| ttls.ttl.min(l));
                let fraction = lives
                    .iter()
                    .filter(|l| **l > 0.0)
                    .map(|l| (t - previous) / l)
                    .min_by(|a, b| (a - WINDOW_MIDDLE).abs().total_cmp(&(b - WINDOW_MIDDLE).abs()));
                out.extend(fraction);
                last.insert(lease, (granted, *t));
            }
            _ => {}
        }
    }
    out
}

/// Renewals fall at 70–80 % of what was granted. Measured where OpenBao answered, so a renewal
/// also carries its request's time: with 24 daemons renewing 6 s leases together beside the other
/// tests on two cores, up to about half a second (the tests allow 10 % of the lease).
const WINDOW_MIDDLE: f64 = 0.75;
const WINDOW: std::ops::RangeInclusive<f64> = 0.69..=0.90;

/// For each lease renewed twice or more: how much the interval from its first renewal to its
/// second differs from the interval from its grant to its first renewal, in seconds.
fn first_two_intervals_apart(events: &[(f64, &'static str, String)]) -> Vec<f64> {
    let mut times: HashMap<&str, Vec<f64>> = HashMap::new();
    for (t, _, lease) in events {
        times.entry(lease.as_str()).or_default().push(*t);
    }
    times.values().filter(|t| t.len() >= 3).map(|t| ((t[2] - t[1]) - (t[1] - t[0])).abs()).collect()
}

/// Grant times clustered into fetches (each fetch of every secret is one cluster).
fn fetches(events: &[(f64, &'static str, String)]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = Vec::new();
    for (t, _, _) in events.iter().filter(|e| e.1 == "grant") {
        match out.last_mut() {
            Some(cluster) if t - cluster.last().unwrap() <= 1.5 => cluster.push(*t),
            _ => out.push(vec![*t]),
        }
    }
    out
}

fn spawn_daemon(bao: &Bao, vars: &[(String, String)], starts: &Path, id: &str) -> Child {
    let mut cmd = Command::new(vault_env_bin());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", "root")
        .env("VAULT_ENV_DAEMON", "true")
        .env("VAULT_ENV_STOP_TIMEOUT", "2s")
        .env("ID", id)
        .envs(vars.iter().map(|(k, v)| (k, v)));
    let app = format!("echo \"$ID $(date +%s.%N)\" >> {}; exec sleep 1000", starts.display());
    cmd.args(["sh", "-c", &app]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn stop(children: Vec<Child>) -> Vec<String> {
    for c in &children {
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    }
    children.into_iter().map(|c| c.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).to_string()).unwrap_or_default()).collect()
}

/// App starts per supervisor id, as seconds since the epoch.
fn starts(file: &Path) -> HashMap<String, Vec<f64>> {
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        if let Some((id, t)) = line.split_once(' ') {
            out.entry(id.to_string()).or_default().push(t.parse().unwrap());
        }
    }
    out
}

/// From one supervisor's log: how long before `lead` ahead of its capped lease's end (the
/// renewal's time plus the TTL it granted) the app was restarted.
fn splayed_by(log: &str, lead: f64) -> f64 {
    let time = |line: &str| rfc3339_seconds(line.split_whitespace().next().unwrap_or_default());
    let capped =
        log.lines().find(|l| l.contains("lease renewed") && l.contains("capped=true")).unwrap_or_else(|| panic!("no capped renewal in\n{log}"));
    let ttl: f64 =
        capped.split("ttl=").nth(1).and_then(|t| t.split_whitespace().next()).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{capped}"));
    let restart = log.lines().find(|l| l.contains("restarting the app")).unwrap_or_else(|| panic!("no restart in\n{log}"));
    time(capped) + ttl - lead - time(restart)
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// One vault-env with 30 leases over more than one max TTL.
#[test]
fn one_supervisor_keeps_many_leases_in_their_windows_and_restarts_once_per_max_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let db = MariaDb::start();
    let roles: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    let bao = audited_vault(dir.path(), &db, &roles, LEASES);
    let vars: Vec<(String, String)> =
        roles.iter().enumerate().map(|(i, r)| (format!("S{i}"), format!("vault:database/creds/{r}#username"))).collect();
    let starts_file = dir.path().join("starts");
    let begun = now();
    let child = spawn_daemon(&bao, &vars, &starts_file, "one");
    let _lifeline = Lifeline::watch(child.id());
    std::thread::sleep(Duration::from_secs_f64(LEASES.max + 6.0));
    let log = stop(vec![child]).remove(0);
    let events = audit_events(dir.path());

    let fractions = renewal_fractions(&events, LEASES);
    assert!(fractions.len() >= 30, "renewals: {fractions:?}\n{log}");
    let outside: Vec<&f64> = fractions.iter().filter(|f| !WINDOW.contains(*f)).collect();
    assert!(outside.is_empty(), "renewals outside 70-80 % (+10 % for a loaded machine): {outside:?}");
    let clusters = fetches(&events);
    assert!(clusters.len() >= 2, "the max TTL was reached: {clusters:?}");
    assert!(clusters.iter().all(|c| c.len() == 30), "each fetch takes every secret once: {:?}", clusters.iter().map(Vec::len).collect::<Vec<_>>());
    let app_starts = &starts(&starts_file)["one"];
    assert_eq!(app_starts.len(), clusters.len(), "one restart per max-TTL event: {app_starts:?} {clusters:?}");
    // Every restart came before the leases it replaced reached their max TTL.
    for (restart, before) in app_starts.iter().skip(1).zip(&clusters) {
        assert!(*restart < before[0] + LEASES.max, "restart at +{:.1} s, leases ended at +{:.1} s", restart - begun, before[0] + LEASES.max - begun);
    }
    assert!(!log.contains("expired"), "{log}");
    // A restart's and the exit's revocations (30 leases each) go at most 16 at a time.
    let revoking = most_in_flight(dir.path(), "sys/leases/revoke");
    assert!((1..=16).contains(&revoking), "revocations in flight at once: {revoking}");
}

/// 24 vault-env daemons started together: nothing expires, each restarts once at its max TTL,
/// and the restarts spread over the default splay instead of landing in one instant.
#[test]
fn many_supervisors_restart_spread_out_and_before_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let db = MariaDb::start();
    let bao = audited_vault(dir.path(), &db, &["fleet".to_string()], FLEET);
    let vars = [("S".to_string(), "vault:database/creds/fleet#username".to_string())];
    let starts_file = dir.path().join("starts");
    let children: Vec<Child> = (0..24).map(|i| spawn_daemon(&bao, &vars, &starts_file, &i.to_string())).collect();
    let _lifelines: Vec<Lifeline> = children.iter().map(|c| Lifeline::watch(c.id())).collect();
    std::thread::sleep(Duration::from_secs_f64(FLEET.max + 3.0));
    let logs = stop(children);
    let events = audit_events(dir.path());
    let fractions = renewal_fractions(&events, FLEET);
    let outside: Vec<&f64> = fractions.iter().filter(|f| !WINDOW.contains(*f)).collect();
    assert!(outside.is_empty(), "renewals outside 70-80 % (+10 %): {outside:?} of {}", fractions.len());
    // Each lease keeps its place in the window: its first two renewals (both of the full 10 s)
    // come the same time apart. With a fresh place at each renewal they differed by a third of
    // the 1 s window on average, and by more than 0.12 s for 77 % of leases; the median of 24
    // leases under 0.12 s then has a chance of about 0.2 %.
    let mut moved = first_two_intervals_apart(&events);
    assert!(moved.len() >= 20, "leases renewed twice: {moved:?}");
    moved.sort_by(f64::total_cmp);
    let median = moved[moved.len() / 2];
    assert!(median < 0.12, "a lease's first two renewals came {median:.3} s apart from each other (median): {moved:.3?}");

    let all = starts(&starts_file);
    assert_eq!(all.len(), 24, "{all:?}");
    let restarts: Vec<f64> = all.values().filter_map(|s| s.get(1).copied()).collect();
    assert_eq!(restarts.len(), 24, "each supervisor restarted at its max TTL: {all:?}\n{}", logs.join("\n"));
    assert!(all.values().all(|s| s.len() == 2), "once: {all:?}");
    let clusters = fetches(&events);
    let last_first_grant = clusters[0].iter().cloned().fold(f64::MIN, f64::max);
    assert!(restarts.iter().all(|t| *t < last_first_grant + FLEET.max), "a restart came after the first leases ended");
    // How much earlier than the replacement lead (2 s before the end) each supervisor restarted,
    // from its own log: the capped renewal's time and TTL, and the restart's time. Without a splay
    // that is 0 (a little less: the new secrets are fetched first); the default splay moves each
    // restart up to one lead earlier, at random, so about 85 % come more than 0.3 s early.
    // Fewer than 6 of 24 has a chance under 1e-9, and none may come more than the lead early.
    // (This test compared the first and last restart before, with 6 s leases whose splay had
    // almost no room: the spread without any splay, 0.7–0.9 s, nearly matched the bound, 0.8 s,
    // and one CI run failed at 0.76 s. Timing restarts against the apps' starts instead still
    // carries OpenBao's whole-second rounding of the capped TTL and the start-up delays.)
    let early: Vec<f64> = logs.iter().map(|log| splayed_by(log, FLEET.ttl / 5.0)).collect();
    assert!(early.iter().all(|e| (-0.5..=FLEET.ttl / 5.0 + 0.1).contains(e)), "restarts from 0 to 2 s before the lead: {early:.2?}");
    let splayed = early.iter().filter(|e| **e > 0.3).count();
    assert!(splayed >= 6, "restarts moved earlier by the default splay: {splayed} of 24: {early:.2?}");
    for log in &logs {
        assert!(log.contains("can't be extended (ends in") && !log.contains("expired") && !log.contains("could not"), "{log}");
    }
}
