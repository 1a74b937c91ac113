//! Recording fakes of the services step's ports: a supervisor that runs
//! nothing but keeps definitions as the real one does (dependencies
//! checked, dependents stopped first), and files in memory.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use tfagent_supervisor::{Ensured, ServiceDef, ServiceName, SuperviseError};

use super::ports::{
    FileError, FileState, RenderedFile, ServiceFiles, Supervision, SupervisionError,
};

#[derive(Debug, Default)]
pub struct SupervisorState {
    /// In start order.
    pub defs: Vec<Arc<ServiceDef>>,
    /// Processes an earlier agent left running, which `resume` adopts.
    pub left_running: BTreeSet<String>,
    /// `ensure` of this service fails.
    pub refuse: Option<String>,
    /// Every change, in order: `start k3s`, `restart k3s`, `update k3s`,
    /// `adopt k3s`, `stop k3s`.
    pub calls: Vec<String>,
}

/// Cheap to clone: every clone is the same supervisor.
#[derive(Debug, Default, Clone)]
pub struct FakeSupervisor {
    state: Arc<Mutex<SupervisorState>>,
}

impl FakeSupervisor {
    pub fn state(&self) -> MutexGuard<'_, SupervisorState> {
        self.state.lock().unwrap()
    }

    /// The calls so far, and forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.state().calls)
    }

    pub fn names(&self) -> Vec<String> {
        self.state()
            .defs
            .iter()
            .map(|d| d.name.to_string())
            .collect()
    }

    fn ensure_as(&self, def: ServiceDef, new: &str) -> Result<Ensured, SupervisionError> {
        let mut state = self.state();
        let service = def.name.clone();
        if state.refuse.as_deref() == Some(service.as_str()) {
            return Err(SupervisionError::Ensure {
                service,
                source: SuperviseError::ShuttingDown,
            });
        }
        if let Some(entry) = state.defs.iter_mut().find(|d| d.name == def.name) {
            if **entry == def {
                return Ok(Ensured::Unchanged);
            }
            let restart = entry.fingerprint() != def.fingerprint();
            *entry = Arc::new(def);
            let verb = if restart { "restart" } else { "update" };
            state.calls.push(format!("{verb} {service}"));
            return Ok(if restart {
                Ensured::Restarted
            } else {
                Ensured::Unchanged
            });
        }
        for dependency in &def.depends_on {
            if !state.defs.iter().any(|d| d.name == *dependency) {
                return Err(SupervisionError::Ensure {
                    source: SuperviseError::UnknownDependency {
                        service: service.clone(),
                        dependency: dependency.clone(),
                    },
                    service,
                });
            }
        }
        state.defs.push(Arc::new(def));
        state.calls.push(format!("{new} {service}"));
        Ok(Ensured::Started)
    }
}

#[async_trait]
impl Supervision for FakeSupervisor {
    fn ensure(&self, def: ServiceDef) -> Result<Ensured, SupervisionError> {
        self.ensure_as(def, "start")
    }

    fn resume(&self, def: ServiceDef) -> Result<bool, SupervisionError> {
        let alive = self.state().left_running.contains(def.name.as_str());
        if !alive || self.definition(def.name.as_str()).is_some() {
            return Ok(false);
        }
        self.ensure_as(def, "adopt").map(|_| true)
    }

    async fn remove(&self, name: &ServiceName) {
        let mut state = self.state();
        let mut gone: BTreeSet<ServiceName> = BTreeSet::from([name.clone()]);
        // Dependents go with what they depend on (start order lists a
        // service after its dependencies).
        for def in &state.defs {
            if def.depends_on.iter().any(|d| gone.contains(d)) {
                gone.insert(def.name.clone());
            }
        }
        let stopped: Vec<String> = state
            .defs
            .iter()
            .rev()
            .filter(|d| gone.contains(&d.name))
            .map(|d| format!("stop {}", d.name))
            .collect();
        state.calls.extend(stopped);
        state.defs.retain(|d| !gone.contains(&d.name));
    }

    fn definitions(&self) -> Vec<Arc<ServiceDef>> {
        self.state().defs.clone()
    }

    fn definition(&self, name: &str) -> Option<Arc<ServiceDef>> {
        self.state()
            .defs
            .iter()
            .find(|d| d.name.as_str() == name)
            .cloned()
    }
}

#[derive(Debug, Default)]
pub struct FilesState {
    /// Path → contents and mode.
    pub files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    /// Writing this path fails.
    pub refuse: Option<PathBuf>,
    /// Every change, in order: `write PATH (MODE)`, `remove PATH`.
    pub calls: Vec<String>,
}

/// Files in memory. Cheap to clone: every clone is the same.
#[derive(Debug, Default, Clone)]
pub struct FakeFiles {
    state: Arc<Mutex<FilesState>>,
}

impl FakeFiles {
    pub fn disk(&self) -> MutexGuard<'_, FilesState> {
        self.state.lock().unwrap()
    }

    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.disk().calls)
    }

    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.disk().files.get(path).map(|(c, _)| c.clone())
    }
}

impl ServiceFiles for FakeFiles {
    fn state(&self, path: &Path) -> Result<Option<FileState>, FileError> {
        Ok(self
            .disk()
            .files
            .get(path)
            .map(|(contents, mode)| FileState::of(contents, *mode)))
    }

    fn write(&self, file: &RenderedFile) -> Result<(), FileError> {
        let mut state = self.disk();
        if state.refuse.as_ref() == Some(&file.path) {
            return Err(FileError::Write {
                path: file.path.clone(),
                source: std::io::Error::other("read-only file system"),
            });
        }
        state
            .calls
            .push(format!("write {} ({:o})", file.path.display(), file.mode));
        state
            .files
            .insert(file.path.clone(), (file.contents.clone(), file.mode));
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<bool, FileError> {
        let mut state = self.disk();
        let existed = state.files.remove(path).is_some();
        if existed {
            state.calls.push(format!("remove {}", path.display()));
        }
        Ok(existed)
    }
}
