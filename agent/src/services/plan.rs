//! What the spec asks of the services (their files and definitions,
//! rendered), and the changes that take the host there. Pure.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use tfagent_spec::NodeSpec;
use tfagent_supervisor::{ServiceDef, ServiceName};

use super::{
    containerd, k3s,
    paths::ServicePaths,
    ports::{FileState, RenderedFile},
};

/// What the spec asks of the services step: files, then services in start
/// order.
#[derive(Debug, Clone)]
pub struct DesiredServices {
    pub files: Vec<RenderedFile>,
    pub services: Vec<ServiceDef>,
}

/// Renders everything containerd and k3s need from the spec.
pub fn desired(spec: &NodeSpec, paths: &ServicePaths) -> DesiredServices {
    let containerd_config = containerd::render_config(paths);
    let k3s_config = k3s::render_config(spec, paths);
    DesiredServices {
        files: vec![
            RenderedFile {
                path: paths.containerd_config(),
                contents: containerd_config.clone().into_bytes(),
                mode: 0o600,
                secret: false,
            },
            RenderedFile {
                path: paths.k3s_token(),
                contents: k3s::token_file(spec),
                mode: 0o600,
                secret: true,
            },
            RenderedFile {
                path: paths.k3s_config(),
                contents: k3s_config.clone().into_bytes(),
                mode: 0o600,
                secret: false,
            },
        ],
        services: vec![
            containerd::service(&spec.services.containerd, paths, &containerd_config),
            k3s::service(spec, paths, &k3s_config),
        ],
    }
}

/// What the services step reads of the host.
#[derive(Debug, Clone)]
pub struct Observed {
    pub paths: ServicePaths,
    /// Each rendered file's current state (`None`: missing).
    pub files: BTreeMap<PathBuf, Option<FileState>>,
    /// Supervised services and their definitions.
    pub supervised: BTreeMap<String, ServiceDef>,
}

/// One change of the services step.
#[derive(Debug, Clone)]
pub enum Change {
    WriteFile(RenderedFile),
    Start(ServiceDef),
    /// Runs another definition: restarted with the new one, or (only
    /// policies changed) updated in place.
    Update {
        def: ServiceDef,
        restart: bool,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::WriteFile(file) => {
                write!(f, "write {} ({:o})", file.path.display(), file.mode)
            }
            Change::Start(def) => write!(f, "start {}", def.name),
            Change::Update { def, restart: true } => {
                write!(f, "restart {} with its new definition", def.name)
            }
            Change::Update { def, .. } => write!(f, "update {}'s policies", def.name),
        }
    }
}

/// The files that differ (contents or mode) first, so a service never
/// starts on a stale one; then the services, in start order.
pub fn plan(wanted: DesiredServices, observed: &Observed) -> Vec<Change> {
    let mut changes = Vec::new();
    for file in wanted.files {
        if observed.files.get(&file.path).copied().flatten() != Some(file.state()) {
            changes.push(Change::WriteFile(file));
        }
    }
    for def in wanted.services {
        match observed.supervised.get(def.name.as_str()) {
            None => changes.push(Change::Start(def)),
            Some(current) if *current == def => {}
            Some(current) => {
                let restart = current.fingerprint() != def.fingerprint();
                changes.push(Change::Update { def, restart });
            }
        }
    }
    changes
}

/// What taking the services of a spec back does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// The supervised ones, dependents first.
    pub stop: Vec<ServiceName>,
    /// Every rendered file (the token file among them); data dirs stay.
    pub remove: Vec<PathBuf>,
}

/// Stops what `supervised` holds of `last`'s services in the reverse of
/// their start order, then removes their files.
pub fn teardown(last: DesiredServices, supervised: impl Fn(&str) -> bool) -> Teardown {
    Teardown {
        stop: last
            .services
            .into_iter()
            .rev()
            .filter(|def| supervised(def.name.as_str()))
            .map(|def| def.name)
            .collect(),
        remove: last.files.into_iter().map(|file| file.path).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use tfagent_spec::fixtures::example_spec;

    fn observed(paths: &ServicePaths) -> Observed {
        Observed {
            paths: paths.clone(),
            files: BTreeMap::new(),
            supervised: BTreeMap::new(),
        }
    }

    fn changes(spec: &NodeSpec, observed: &Observed) -> Vec<Change> {
        plan(desired(spec, &observed.paths), observed)
    }

    fn shown(changes: &[Change]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    /// The host after applying `changes`.
    fn applied(mut observed: Observed, changes: &[Change]) -> Observed {
        for change in changes {
            match change {
                Change::WriteFile(file) => {
                    observed.files.insert(file.path.clone(), Some(file.state()));
                }
                Change::Start(def) | Change::Update { def, .. } => {
                    observed
                        .supervised
                        .insert(def.name.to_string(), def.clone());
                }
            }
        }
        observed
    }

    #[test]
    fn a_fresh_node_writes_files_then_starts_containerd_before_k3s() {
        let spec = example_spec("server-init");
        let paths = ServicePaths::default();
        let plan = changes(&spec, &observed(&paths));
        let shown = shown(&plan);
        assert_eq!(
            shown,
            [
                "write /run/tfagent/services/containerd.toml (600)",
                "write /run/tfagent/services/k3s-token (600)",
                "write /run/tfagent/services/k3s-config.yaml (600)",
                "start containerd",
                "start k3s",
            ]
        );
        // The plan never shows the token, not even in Debug.
        let token = spec.cluster.token.expose();
        assert!(!format!("{plan:?}").contains(token));
        assert!(!shown.concat().contains(token));
        // Applied, the plan is empty: an unchanged spec changes nothing.
        let after = applied(observed(&paths), &plan);
        assert!(changes(&spec, &after).is_empty());
    }

    #[test]
    fn every_role_converges_to_an_empty_plan() {
        let paths = ServicePaths::under(std::path::Path::new("/srv/t"));
        for role in ["server-init", "server-join", "agent"] {
            let spec = example_spec(role);
            let first = changes(&spec, &observed(&paths));
            assert_eq!(first.len(), 5, "{role}");
            let after = applied(observed(&paths), &first);
            assert!(changes(&spec, &after).is_empty(), "{role}");
        }
    }

    #[test]
    fn changes_restart_only_what_they_touch() {
        let paths = ServicePaths::default();
        let spec = example_spec("server-init");
        let host = applied(observed(&paths), &changes(&spec, &observed(&paths)));

        let mut more_sans = spec.clone();
        more_sans
            .cluster
            .tls_sans
            .push("api.example.org".parse().unwrap());
        assert_eq!(
            shown(&changes(&more_sans, &host)),
            [
                "write /run/tfagent/services/k3s-config.yaml (600)",
                "restart k3s with its new definition"
            ]
        );

        let mut new_token = spec.clone();
        new_token.cluster.token = tfagent_spec::Secret::new("another-token-value-0123456789");
        assert_eq!(
            shown(&changes(&new_token, &host)),
            ["write /run/tfagent/services/k3s-token (600)"]
        );

        let mut containerd_args = spec.clone();
        containerd_args
            .services
            .containerd
            .extra_args
            .push("--log-level=debug".into());
        assert_eq!(
            shown(&changes(&containerd_args, &host)),
            ["restart containerd with its new definition"]
        );

        // A file changed on disk behind our back is written again.
        let mut drifted = host.clone();
        drifted.files.insert(
            paths.k3s_token(),
            Some(FileState {
                digest: 1,
                mode: 0o644,
            }),
        );
        assert_eq!(
            shown(&changes(&spec, &drifted)),
            ["write /run/tfagent/services/k3s-token (600)"]
        );
    }

    #[test]
    fn a_file_with_the_right_contents_but_another_mode_is_written_again() {
        let paths = ServicePaths::default();
        let spec = example_spec("agent");
        let mut host = applied(observed(&paths), &changes(&spec, &observed(&paths)));
        let token = desired(&spec, &paths).files[1].clone();
        host.files.insert(
            token.path.clone(),
            Some(FileState::of(&token.contents, 0o644)),
        );
        assert_eq!(
            shown(&changes(&spec, &host)),
            ["write /run/tfagent/services/k3s-token (600)"]
        );
    }

    #[test]
    fn a_policy_change_updates_in_place_and_a_missing_service_starts() {
        let paths = ServicePaths::default();
        let spec = example_spec("server-init");
        let mut host = applied(observed(&paths), &changes(&spec, &observed(&paths)));
        // Running with another stop timeout: the process stays.
        host.supervised.get_mut("containerd").unwrap().stop_timeout = Duration::from_secs(1);
        host.supervised.remove("k3s");
        let plan = changes(&spec, &host);
        assert_eq!(shown(&plan), ["update containerd's policies", "start k3s"]);
        assert!(matches!(plan[0], Change::Update { restart: false, .. }));
    }

    #[test]
    fn teardown_stops_dependents_first_then_removes_every_file() {
        let paths = ServicePaths::default();
        let spec = example_spec("server-init");
        let both = teardown(desired(&spec, &paths), |_| true);
        assert_eq!(
            both.stop
                .iter()
                .map(ServiceName::as_str)
                .collect::<Vec<_>>(),
            ["k3s", "containerd"]
        );
        assert_eq!(
            both.remove,
            [
                paths.containerd_config(),
                paths.k3s_token(),
                paths.k3s_config()
            ]
        );
        let only_containerd = teardown(desired(&spec, &paths), |name| name == "containerd");
        assert_eq!(only_containerd.stop.len(), 1);
        assert_eq!(only_containerd.stop[0].as_str(), "containerd");
        assert_eq!(only_containerd.remove, both.remove);
    }
}
