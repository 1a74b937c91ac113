//! Services: containerd and k3s, run by the generic supervisor
//! (`tfagent_supervisor`: start order, readiness, restarts with back-off,
//! logs, adoption after an agent restart). This step renders their files
//! from the spec and hands their definitions to the supervisor.
//!
//! On agent shutdown the children keep running and the next agent adopts
//! them; they are stopped only on request.

pub mod containerd;
pub mod k3s;
pub mod paths;

use std::{
    collections::BTreeMap,
    fmt, fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use async_trait::async_trait;

pub use paths::ServicePaths;
use tfagent_supervisor::{ServiceDef, ServiceName, Supervisor, def};

use crate::step::{Capability, StepError, StepName};
use tfagent_spec::NodeSpec;

/// A file the services read, rendered from the spec.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Holds a secret: its contents are never shown.
    pub secret: bool,
}

impl fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .field("secret", &self.secret)
            .finish()
    }
}

/// What the spec asks of the services step: files, then services in start
/// order.
#[derive(Debug, Clone)]
pub struct DesiredServices {
    pub files: Vec<RenderedFile>,
    pub services: Vec<ServiceDef>,
}

/// Renders everything containerd and k3s need from the spec. Pure.
pub fn desired(spec: &NodeSpec, paths: &ServicePaths) -> DesiredServices {
    let containerd_config = containerd::render_config(paths);
    let k3s_config = k3s::render_config(spec, paths);
    DesiredServices {
        files: vec![
            RenderedFile {
                path: paths.containerd_config(),
                contents: containerd_config.clone().into_bytes(),
                mode: 0o644,
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

/// At agent start: adopts the services of the stored spec that still run
/// (see [`Supervisor::resume`]), in start order. Returns their names.
pub fn resume(supervisor: &Supervisor, spec: &NodeSpec, paths: &ServicePaths) -> Vec<ServiceName> {
    let mut resumed = Vec::new();
    for def in desired(spec, paths).services {
        let name = def.name.clone();
        // A service whose dependency is not running waits for the step.
        if let Ok(true) = supervisor.resume(def) {
            resumed.push(name);
        }
    }
    resumed
}

/// A file as found on disk: a digest of its contents and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub digest: u64,
    pub mode: u32,
}

fn digest(bytes: &[u8]) -> u64 {
    let mut hash = def::Fnv64::default();
    hash.write(bytes);
    hash.0
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

/// The services capability.
#[derive(Debug, Clone)]
pub struct Services {
    supervisor: Supervisor,
    paths: ServicePaths,
}

impl Services {
    pub fn new(supervisor: Supervisor, paths: ServicePaths) -> Self {
        Self { supervisor, paths }
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    pub fn paths(&self) -> &ServicePaths {
        &self.paths
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub(crate) struct FileError {
    path: String,
    source: io::Error,
}

fn file_state(path: &Path) -> Result<Option<FileState>, FileError> {
    match fs::read(path) {
        Ok(bytes) => {
            let mode = fs::metadata(path)
                .map_err(|source| FileError {
                    path: path.display().to_string(),
                    source,
                })?
                .permissions()
                .mode()
                & 0o7777;
            Ok(Some(FileState {
                digest: digest(&bytes),
                mode,
            }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes a file atomically with its mode set from the start (a secret is
/// never readable by others, not even briefly).
pub(crate) fn write_file(file: &RenderedFile) -> Result<(), FileError> {
    let error = |source| FileError {
        path: file.path.display().to_string(),
        source,
    };
    let dir = file.path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(error)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        file.path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = fs::remove_file(&tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(&tmp)
        .map_err(error)?;
    out.write_all(&file.contents).map_err(error)?;
    out.set_permissions(fs::Permissions::from_mode(file.mode))
        .map_err(error)?;
    out.sync_all().map_err(error)?;
    fs::rename(&tmp, &file.path).map_err(error)
}

#[async_trait]
impl Capability for Services {
    type Observed = Observed;
    type Change = Change;

    fn step(&self) -> StepName {
        StepName::Services
    }

    async fn observe(&self, desired: &NodeSpec) -> Result<Observed, StepError> {
        let wanted = self::desired(desired, &self.paths);
        let paths: Vec<PathBuf> = wanted.files.iter().map(|f| f.path.clone()).collect();
        let files = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|path| file_state(&path).map(|state| (path, state)))
                .collect::<Result<BTreeMap<_, _>, _>>()
        })
        .await
        .map_err(|e| StepError::Observe {
            what: "the services' files".into(),
            source: Box::new(e),
        })?
        .map_err(|e| StepError::Observe {
            what: "the services' files".into(),
            source: Box::new(e),
        })?;
        let supervised = self
            .supervisor
            .names()
            .into_iter()
            .filter_map(|name| {
                let def = self.supervisor.definition(name.as_str())?;
                Some((name.to_string(), (*def).clone()))
            })
            .collect();
        Ok(Observed {
            paths: self.paths.clone(),
            files,
            supervised,
        })
    }

    fn plan(desired: &NodeSpec, observed: &Observed) -> Vec<Change> {
        let wanted = self::desired(desired, &observed.paths);
        let mut changes = Vec::new();
        for file in wanted.files {
            let want = FileState {
                digest: digest(&file.contents),
                mode: file.mode,
            };
            if observed.files.get(&file.path).copied().flatten() != Some(want) {
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

    async fn apply(&self, _desired: &NodeSpec, changes: &[Change]) -> Result<(), StepError> {
        for change in changes {
            let failed = |source: Box<dyn std::error::Error + Send + Sync>| StepError::Apply {
                change: change.to_string(),
                source,
            };
            match change {
                Change::WriteFile(file) => {
                    let file = file.clone();
                    tokio::task::spawn_blocking(move || write_file(&file))
                        .await
                        .map_err(|e| failed(Box::new(e)))?
                        .map_err(|e| failed(Box::new(e)))?;
                }
                Change::Start(def) | Change::Update { def, .. } => {
                    self.supervisor
                        .ensure(def.clone())
                        .map_err(|e| failed(Box::new(e)))?;
                }
            }
        }
        Ok(())
    }

    // ---- reset ----
    /// Stops the services of `last` (dependents first) and stops
    /// supervising them, then removes the files rendered for them (the
    /// token file among them). Their data dirs stay.
    async fn teardown(&self, last: &NodeSpec) -> Result<Vec<String>, StepError> {
        let wanted = desired(last, &self.paths);
        let mut done = Vec::new();
        for def in wanted.services.iter().rev() {
            if self.supervisor.definition(def.name.as_str()).is_some() {
                self.supervisor.remove(&def.name).await;
                done.push(format!("stop {}", def.name));
            }
        }
        for file in &wanted.files {
            match fs::remove_file(&file.path) {
                Ok(()) => done.push(format!("remove {}", file.path.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StepError::Apply {
                        change: format!("remove {}", file.path.display()),
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
        <Services as Capability>::plan(spec, observed)
    }

    /// The host after applying `changes`.
    fn applied(mut observed: Observed, changes: &[Change]) -> Observed {
        for change in changes {
            match change {
                Change::WriteFile(file) => {
                    observed.files.insert(
                        file.path.clone(),
                        Some(FileState {
                            digest: digest(&file.contents),
                            mode: file.mode,
                        }),
                    );
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
        let shown: Vec<String> = plan.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "write /run/tfagent/services/containerd.toml (644)",
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
    fn changes_restart_only_what_they_touch() {
        let paths = ServicePaths::default();
        let spec = example_spec("server-init");
        let host = applied(observed(&paths), &changes(&spec, &observed(&paths)));

        let mut more_sans = spec.clone();
        more_sans
            .cluster
            .tls_sans
            .push("api.example.org".parse().unwrap());
        let shown: Vec<String> = changes(&more_sans, &host)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "write /run/tfagent/services/k3s-config.yaml (600)",
                "restart k3s with its new definition"
            ]
        );

        let mut new_token = spec.clone();
        new_token.cluster.token = tfagent_spec::Secret::new("another-token-value-0123456789");
        let shown: Vec<String> = changes(&new_token, &host)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["write /run/tfagent/services/k3s-token (600)"]);

        let mut containerd_args = spec.clone();
        containerd_args
            .services
            .containerd
            .extra_args
            .push("--log-level=debug".into());
        let shown: Vec<String> = changes(&containerd_args, &host)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["restart containerd with its new definition"]);

        // A file changed on disk behind our back is written again.
        let mut drifted = host.clone();
        drifted.files.insert(
            paths.k3s_token(),
            Some(FileState {
                digest: 1,
                mode: 0o644,
            }),
        );
        let shown: Vec<String> = changes(&spec, &drifted)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["write /run/tfagent/services/k3s-token (600)"]);
    }

    #[test]
    fn files_are_written_atomically_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = RenderedFile {
            path: dir.path().join("sub/k3s-token"),
            contents: b"secret\n".to_vec(),
            mode: 0o600,
            secret: true,
        };
        write_file(&file).unwrap();
        write_file(&file).unwrap();
        let state = file_state(&file.path).unwrap().unwrap();
        assert_eq!(state.mode, 0o600);
        assert_eq!(state.digest, digest(b"secret\n"));
        assert!(!format!("{file:?}").contains("secret\\n"));
        assert_eq!(file_state(&dir.path().join("none")).unwrap(), None);
    }
}
