//! Pod mutation (Bank-Vaults' `pkg/webhook/pod.go`, `mutateContainers`): which containers run through vault-env, and the JSONPatch that makes
//! them do so. Everything here is pure; the Kubernetes API and registry reads it needs are done by
//! [`crate::admit`] between the phases:
//!
//! 1. [`sources_to_fetch`]: Secrets/ConfigMaps whose values decide whether a container is mutated;
//! 2. [`select`]: the containers to mutate;
//! 3. [`images_to_look_up`]: mutated containers without `command` (their image's ENTRYPOINT/CMD);
//! 4. [`patch`]: the RFC 6902 patch, as precise `add` operations on the original object, so fields
//!    this webhook does not know (newer Kubernetes) are never rewritten. vault-env's variables go
//!    into a container's `env` in one operation: the list as the review carried it, verbatim, then
//!    them (the API server's cost grows with the number of operations).

use super::agent;
use super::consul_template;
use super::pod_parts::{BINARY, COPY_CONTAINER, VOLUME, copy_container, mounts, probe_command, sets_log_level, tls_volume, vault_env_vars};
use crate::annotations::PodConfig;
use crate::annotations::agent::AgentConfig;
use crate::annotations::consul_template::CtConfig;
use crate::model::{Container, Pod};
use crate::mutate::patch::{AddOps, JsonPatch, PatchError};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use vault_env::reference::looks_like_reference;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataSource {
    Secret,
    ConfigMap,
}

/// Data of the Secrets/ConfigMaps that env entries point to; `None` = not found.
pub type SourceData = HashMap<(DataSource, String), Option<BTreeMap<String, String>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    pub init: bool,
    pub index: usize,
}

/// An image's `config.Entrypoint` and `config.Cmd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageCommand {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// Init containers, then app containers, each with its place.
pub fn containers<'p>(pod: &'p Pod<'p>) -> impl Iterator<Item = (ContainerRef, &'p Container<'p>)> {
    let spec = pod.spec.as_ref();
    let init = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
    let app = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let tag = |init: bool| move |(index, c)| (ContainerRef { init, index }, c);
    init.iter().enumerate().map(tag(true)).chain(app.iter().enumerate().map(tag(false)))
}

pub fn container<'p>(pod: &'p Pod<'p>, target: ContainerRef) -> Option<&'p Container<'p>> {
    containers(pod).find(|(t, _)| *t == target).map(|(_, c)| c)
}

/// Already mutated (the `vault-env` volume is the marker): a second pass (the API server's
/// reinvocation after another webhook) wraps only containers added since, and adds no second
/// volume or copy container.
pub fn already_mutated(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|v| v.iter().any(|v| v.name == VOLUME))
}

/// Mutated by Bank-Vaults' successor (secrets-webhook): its `secret-init` volume, or a container
/// that runs `/vault/secret-init`. Wrapping it again would run secret-init under vault-env.
pub fn mutated_by_successor(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.volumes.as_ref()).is_some_and(|v| v.iter().any(|v| v.name == "secret-init"))
        || containers(pod).any(|(_, c)| c.command.as_ref().and_then(|c| c.first()).is_some_and(|first| first == "/vault/secret-init"))
}

/// A container that a pass before this one ran through vault-env, or our copy container.
fn ours(c: &Container) -> bool {
    c.name == COPY_CONTAINER || c.command.as_ref().and_then(|c| c.first()).is_some_and(|first| first == BINARY)
}

/// The containers this pass may mutate: all, or on a second pass those that are not [`ours`].
fn candidates<'p>(pod: &'p Pod<'p>) -> impl Iterator<Item = (ContainerRef, &'p Container<'p>)> {
    let again = already_mutated(pod);
    containers(pod).filter(move |(_, c)| !(again && ours(c)))
}

fn has_direct_reference(c: &Container) -> bool {
    c.env.iter().flatten().any(|e| e.value.as_deref().is_some_and(looks_like_reference))
}

/// One Secret or ConfigMap a container takes variables from: a key of it (`valueFrom`) or all of
/// it (`envFrom`). `optional: true` sources are read too (Bank-Vaults does): a missing one holds
/// nothing.
pub struct SourceRef<'a> {
    pub source: DataSource,
    pub name: &'a str,
    /// `None`: every key (`envFrom`).
    pub key: Option<&'a str>,
}

/// The one walk over a container's sources that reading them, deciding whether they hold
/// references, and naming the container in an error all share.
pub fn container_sources<'p>(c: &'p Container<'p>) -> impl Iterator<Item = SourceRef<'p>> {
    let by_key = c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()).flat_map(|from| {
        let secret = from.secret_key_ref.as_ref().map(|r| SourceRef { source: DataSource::Secret, name: &r.name, key: Some(&r.key) });
        let config_map = from.config_map_key_ref.as_ref().map(|r| SourceRef { source: DataSource::ConfigMap, name: &r.name, key: Some(&r.key) });
        secret.into_iter().chain(config_map)
    });
    let whole = c.env_from.iter().flatten().flat_map(|from| {
        let secret = from.secret_ref.as_ref().map(|r| SourceRef { source: DataSource::Secret, name: &r.name, key: None });
        let config_map = from.config_map_ref.as_ref().map(|r| SourceRef { source: DataSource::ConfigMap, name: &r.name, key: None });
        secret.into_iter().chain(config_map)
    });
    by_key.chain(whole)
}

/// Phase 1: the objects to read for containers that have no reference of their own.
pub fn sources_to_fetch(pod: &Pod, config: &PodConfig) -> Vec<(DataSource, String)> {
    if !config.from_path.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(DataSource, String)> = candidates(pod)
        .filter(|(_, c)| !has_direct_reference(c))
        .flat_map(|(_, c)| container_sources(c).map(|s| (s.source, s.name.to_string())).collect::<Vec<_>>())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn references_through_sources(c: &Container, fetched: &SourceData) -> bool {
    container_sources(c).any(|s| {
        let data = fetched.get(&(s.source, s.name.to_string())).and_then(|d| d.as_ref());
        match s.key {
            Some(key) => data.and_then(|d| d.get(key)).is_some_and(|v| looks_like_reference(v)),
            None => data.is_some_and(|d| d.values().any(|v| looks_like_reference(v))),
        }
    })
}

/// Phase 2: the containers to run through vault-env (init containers first).
pub fn select(pod: &Pod, config: &PodConfig, fetched: &SourceData) -> Vec<ContainerRef> {
    if config.skip {
        return Vec::new();
    }
    candidates(pod)
        .filter(|(_, c)| config.containers.is_empty() || config.containers.iter().any(|name| c.name == name.as_str()))
        .filter(|(_, c)| !config.from_path.is_empty() || has_direct_reference(c) || references_through_sources(c, fetched))
        .map(|(t, _)| t)
        .collect()
}

/// Phase 3: mutated containers with no `command`, whose image must say what to run.
pub fn images_to_look_up(pod: &Pod, targets: &[ContainerRef]) -> Vec<ContainerRef> {
    targets.iter().copied().filter(|t| container(pod, *t).is_some_and(|c| c.command.as_ref().is_none_or(|v| v.is_empty()))).collect()
}

/// Each value as JSON text; `at` names the place in an error.
fn written<T: Serialize>(values: &[T], at: impl FnOnce() -> String) -> Result<Vec<Vec<u8>>, PatchError> {
    values.iter().map(serde_json::to_vec).collect::<Result<_, _>>().map_err(|error| PatchError::Encode { at: at(), error })
}

/// Appends `values` (JSON text, from [`written`]) to the array at `path`, which may be absent
/// (`add …/-` on a missing array does not apply: then the whole array is added).
fn append(ops: &mut AddOps, path: &[&str], exists: bool, values: &[Vec<u8>]) {
    if values.is_empty() {
        return;
    }
    if exists {
        let mut at = path.to_vec();
        at.push("-");
        ops.add_json_each(&at, values);
    } else {
        let mut array = vec![b'['];
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                array.push(b',');
            }
            array.extend_from_slice(v);
        }
        array.push(b']');
        ops.add_json_each(path, &[array]);
    }
}

/// Phase 4: the patch for `targets` (from [`select`]); `images` holds the image command of every
/// target without `command` (from [`images_to_look_up`]); and, on the first pass, the pod's own
/// vault-agent ([`agent`]) and consul-template ([`consul_template`]), with or without targets.
/// `None` when nothing changes. The parts run in `PARTS`' order.
pub fn patch(
    pod: &Pod,
    config: &PodConfig,
    targets: &[ContainerRef],
    images: &HashMap<ContainerRef, ImageCommand>,
) -> Result<Option<JsonPatch>, PatchError> {
    let Some(pass) = Pass::new(pod, config, targets, images) else { return Ok(None) };
    let mut ops = AddOps::default();
    for part in PARTS {
        part(&pass, &mut ops)?;
    }
    ops.finish()
}

/// A patch's parts, in order. Container fields are addressed by index, so the parts that add
/// containers come last.
const PARTS: [Part; 5] = [wrap_targets, add_mounts, copy_on_a_later_pass, add_volumes, add_containers];

/// One part of a patch: what it adds for this pass, or why the pod is refused.
type Part = fn(&Pass<'_>, &mut AddOps) -> Result<(), PatchError>;

/// What one pass adds, decided once.
struct Pass<'a> {
    pod: &'a Pod<'a>,
    config: &'a PodConfig,
    targets: &'a [ContainerRef],
    images: &'a HashMap<ContainerRef, ImageCommand>,
    /// No pass has mutated this pod yet: volumes and containers are added now.
    first: bool,
    agent: Option<&'a AgentConfig>,
    ct: Option<&'a CtConfig>,
    /// The agent that only logs in, for consul-template and (case A) vault-env.
    login: Option<Value>,
}

impl<'a> Pass<'a> {
    fn new(pod: &'a Pod, config: &'a PodConfig, targets: &'a [ContainerRef], images: &'a HashMap<ContainerRef, ImageCommand>) -> Option<Pass<'a>> {
        // Without a spec there is nothing to run through vault-env, and `/spec/…` operations
        // would not apply. (The API server always sends a spec.)
        pod.spec.as_ref()?;
        let first = !already_mutated(pod);
        let agent = config.agent.as_ref().filter(|_| first && !config.skip);
        let ct = config.consul_template.as_ref().filter(|_| first && !config.skip);
        if targets.is_empty() && agent.is_none() && ct.is_none() {
            return None;
        }
        // Unless the pod brings its own token (token-auth-mount); named apart from a sidecar agent.
        let login = config
            .login_agent
            .as_ref()
            .filter(|_| first && !config.skip && config.token_auth_mount.is_none() && (ct.is_some() || !targets.is_empty()))
            .map(|login| agent::login_init(config, pod, login, if agent.is_some() { "vault-agent-login" } else { agent::CONTAINER }));
        Some(Pass { pod, config, targets, images, first, agent, ct, login })
    }
}

/// Each target runs `/vault/vault-env` with its command (or its image's) as arguments, its exec
/// probes too with `mutate-probes`, and gets vault-env's variables.
fn wrap_targets(p: &Pass<'_>, ops: &mut AddOps) -> Result<(), PatchError> {
    // The variables are the same for every target but VAULT_LOG_LEVEL: written once each way.
    let mut vars: [Option<Vec<Vec<u8>>>; 2] = [None, None];
    for &target in p.targets {
        let Some(c) = container(p.pod, target) else { continue };
        let list = if target.init { "initContainers" } else { "containers" };
        let index = target.index.to_string();
        let at = |field: &'static str| -> Vec<&str> { vec!["spec", list, index.as_str(), field] };

        let command = c.command.as_deref().unwrap_or_default();
        let args = c.args.as_deref().unwrap_or_default();
        let args: Vec<&str> = if !command.is_empty() {
            command.iter().chain(args).map(|a| &**a).collect()
        } else {
            let (entrypoint, cmd) = p
                .images
                .get(&target)
                .map_or((&[][..], &[][..]), |image| (image.entrypoint.as_slice(), if args.is_empty() { image.cmd.as_slice() } else { &[] }));
            entrypoint.iter().chain(cmd).map(String::as_str).chain(args.iter().map(|a| &**a)).collect()
        };
        ops.add(&at("command"), &[BINARY]);
        ops.add(&at("args"), &args);

        if p.config.mutate_probes {
            for (field, probe) in [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe), ("startupProbe", &c.startup_probe)] {
                if let Some(command) = probe_command(probe.as_deref()) {
                    ops.add(&["spec", list, &index, field, "exec", "command"], &command);
                }
            }
        }
        let own_level = sets_log_level(c);
        let vars = match &mut vars[usize::from(own_level)] {
            Some(written) => written,
            empty => empty.insert(written(&vault_env_vars(own_level, p.config, p.pod), || format!(" at /spec/{list}/{index}/env"))?),
        };
        match &c.env {
            Some(env) => ops.add_to_list(&at("env"), env.json, vars),
            None => append(ops, &at("env"), false, vars),
        }
    }
    Ok(())
}

/// Mounts: vault-env's in every target, the rendered files in every app container (and
/// consul-template's, with vault-ct-inject-in-initcontainers, in the user's init containers).
fn add_mounts(p: &Pass<'_>, ops: &mut AddOps) -> Result<(), PatchError> {
    // The list depends only on whether the container is a target and an init container: each
    // kind is written once.
    let mut lists: [[Option<Vec<Vec<u8>>>; 2]; 2] = Default::default();
    for (place, c) in containers(p.pod) {
        let target = p.targets.contains(&place);
        let index = place.index.to_string();
        let at = ["spec", if place.init { "initContainers" } else { "containers" }, index.as_str(), "volumeMounts"];
        let list = match &mut lists[usize::from(target)][usize::from(place.init)] {
            Some(list) => list,
            empty => {
                let mut list = if target { mounts(p.config, p.pod) } else { Vec::new() };
                if let Some(a) = p.agent.filter(|_| !place.init) {
                    list.push(agent::app_mount(a));
                }
                if let Some(ct) = p.ct.filter(|ct| !place.init || ct.inject_in_init_containers) {
                    list.push(consul_template::app_mount(ct));
                }
                empty.insert(written(&list, || format!(" at /{}", at.join("/")))?)
            }
        };
        append(ops, &at, c.volume_mounts.is_some(), list);
    }
    Ok(())
}

/// A pass after one that wrapped nothing (an agent or consul-template only), or a pod whose own
/// volume is named `vault-env`: wrapped containers need the copy container.
fn copy_on_a_later_pass(p: &Pass<'_>, ops: &mut AddOps) -> Result<(), PatchError> {
    let spec = p.pod.spec.as_ref();
    let copies = spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|i| i.iter().any(|c| c.name == COPY_CONTAINER));
    if p.first || p.targets.is_empty() || copies {
        return Ok(());
    }
    let volume = spec.and_then(|s| s.volumes.as_ref()).and_then(|v| v.iter().find(|v| v.name == VOLUME));
    if volume.is_none_or(|v| v.empty_dir.is_none()) {
        return Err(PatchError::VolumeTaken(VOLUME));
    }
    let copy = copy_container(p.config, p.pod);
    match spec.is_some_and(|s| s.init_containers.is_some()) {
        true => ops.add(&["spec", "initContainers", "0"], &copy),
        false => ops.add(&["spec", "initContainers"], &[copy]),
    }
    Ok(())
}

/// The first pass's volumes: vault-env's, the Vault CA's, the agents' and consul-template's.
fn add_volumes(p: &Pass<'_>, ops: &mut AddOps) -> Result<(), PatchError> {
    if !p.first {
        return Ok(());
    }
    let config = p.config;
    let medium = if config.volume_medium == "Disk" { json!({}) } else { json!({"medium": "Memory"}) };
    let mut volumes = vec![json!({"name": VOLUME, "emptyDir": medium})];
    if !config.vault.tls_secret.is_empty() {
        volumes.push(json!({
            "name": tls_volume(p.pod).0,
            "projected": {"sources": [{"secret": {"name": config.vault.tls_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]},
        }));
    }
    volumes.extend(p.agent.map(agent::volumes).unwrap_or_default());
    volumes.extend(p.login.as_ref().map(|_| agent::login_volumes()).unwrap_or_default());
    volumes.extend(p.ct.map(consul_template::volumes).unwrap_or_default());
    append(ops, &["spec", "volumes"], p.pod.spec.as_ref().is_some_and(|s| s.volumes.is_some()), &written(&volumes, || " at /spec/volumes".into())?);
    Ok(())
}

/// The first pass's containers. Init containers end up as [sidecar agent (native), init or
/// login agent, copy-vault-env, consul-template (once or native), the user's]: each prepended in
/// turn. App containers as [vault-agent, consul-template, the user's].
fn add_containers(p: &Pass<'_>, ops: &mut AddOps) -> Result<(), PatchError> {
    if !p.first {
        return Ok(());
    }
    let (config, pod) = (p.config, p.pod);
    let spec = pod.spec.as_ref();
    let mut inits = List { name: "initContainers", exists: spec.is_some_and(|s| s.init_containers.is_some()) };
    // `containers` absent, null or empty: the list is added whole (an `add` at `/0` would not apply).
    let mut apps = List { name: "containers", exists: spec.is_some_and(|s| !s.containers.is_empty()) };
    let mut share_process_namespace = false;
    if let Some(ct) = p.ct {
        let mut container = consul_template::container(config, pod, ct);
        if consul_template::sidecar(ct) {
            share_process_namespace |= ct.share_process_namespace;
            if ct.native_sidecar {
                container["restartPolicy"] = json!("Always");
                inits.prepend(ops, &container);
            } else {
                apps.prepend(ops, &container);
            }
        } else {
            inits.prepend(ops, &container);
        }
    }
    if !p.targets.is_empty() {
        inits.prepend(ops, &copy_container(config, pod));
    }
    if let Some(login) = p.login.clone() {
        inits.prepend(ops, &login);
    }
    match p.agent {
        Some(a) if a.init => inits.prepend(ops, &agent::init(config, pod, a)),
        Some(a) => {
            let mut sidecar = agent::sidecar(config, pod, a);
            if a.native_sidecar {
                // First of all init containers: it runs beside every later one and the app.
                sidecar["restartPolicy"] = json!("Always");
                inits.prepend(ops, &sidecar);
            } else {
                apps.prepend(ops, &sidecar);
            }
            share_process_namespace |= a.share_process_namespace;
        }
        None => {}
    }
    if share_process_namespace {
        ops.add(&["spec", "shareProcessNamespace"], &true);
    }
    Ok(())
}

/// A container list of the pod's spec, and whether the pod has it.
struct List {
    name: &'static str,
    exists: bool,
}

impl List {
    /// Puts `container` first, adding the list when the pod has none yet.
    fn prepend(&mut self, ops: &mut AddOps, container: &impl Serialize) {
        if self.exists {
            ops.add(&["spec", self.name, "0"], container);
        } else {
            ops.add(&["spec", self.name], &[container]);
            self.exists = true;
        }
    }
}

#[cfg(test)]
mod tests;
