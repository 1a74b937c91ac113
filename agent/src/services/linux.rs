//! The services step on a real host: the generic supervisor, the rendered
//! files with std::fs, containerd's Version API over its socket, and the
//! kubeconfig k3s wrote.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
    sync::Arc,
};

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use tfagent_proto::containerd_version::version_client::VersionClient;
use tfagent_supervisor::{
    Ensured, ServiceDef, ServiceName, Supervisor,
    probe::{ProbeError, ReadinessCheck},
};
use tonic::transport::Endpoint;

use super::{
    kubeconfig::{self, KubeconfigError},
    ports::{FileError, FileState, RenderedFile, ServiceFiles, Supervision, SupervisionError},
};

#[async_trait]
impl Supervision for Supervisor {
    fn ensure(&self, def: ServiceDef) -> Result<Ensured, SupervisionError> {
        let service = def.name.clone();
        Supervisor::ensure(self, def).map_err(|source| SupervisionError::Ensure { service, source })
    }

    fn resume(&self, def: ServiceDef) -> Result<bool, SupervisionError> {
        let service = def.name.clone();
        Supervisor::resume(self, def).map_err(|source| SupervisionError::Resume { service, source })
    }

    async fn remove(&self, name: &ServiceName) {
        Supervisor::remove(self, name).await;
    }

    fn definitions(&self) -> Vec<Arc<ServiceDef>> {
        self.names()
            .iter()
            .filter_map(|name| Supervisor::definition(self, name.as_str()))
            .collect()
    }

    fn definition(&self, name: &str) -> Option<Arc<ServiceDef>> {
        Supervisor::definition(self, name)
    }
}

/// The services' files on the host's filesystems.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostFiles;

impl ServiceFiles for HostFiles {
    fn state(&self, path: &Path) -> Result<Option<FileState>, FileError> {
        let error = |source| FileError::Read {
            path: path.to_owned(),
            source,
        };
        match fs::read(path) {
            Ok(bytes) => {
                let mode = fs::metadata(path).map_err(error)?.permissions().mode() & 0o7777;
                Ok(Some(FileState::of(&bytes, mode)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(error(source)),
        }
    }

    fn write(&self, file: &RenderedFile) -> Result<(), FileError> {
        write_file(file)
    }

    fn remove(&self, path: &Path) -> Result<bool, FileError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(FileError::Remove {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// Writes a file atomically with its mode set from the start (a secret is
/// never readable by others, not even briefly), in a directory of the
/// agent's own that only root may enter ([`private_dir`]).
pub fn write_file(file: &RenderedFile) -> Result<(), FileError> {
    let error = |source| FileError::Write {
        path: file.path.clone(),
        source,
    };
    let dir = file.path.parent().unwrap_or(Path::new("/"));
    private_dir(dir).map_err(error)?;
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
    // The umask may have narrowed the mode given at creation.
    out.set_permissions(fs::Permissions::from_mode(file.mode))
        .map_err(error)?;
    out.sync_all().map_err(error)?;
    fs::rename(&tmp, &file.path).map_err(error)
}

/// Makes `dir` (the agent's own: the services' config dir, the VIP's dir)
/// a directory only its owner may enter, 0700: created so, or narrowed
/// when an older agent left it wider. Its parents are created as usual
/// (the run dir holds the API socket a reader group may reach).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != PRIVATE_DIR_MODE {
        // The umask may have narrowed it further, or an older agent left
        // it 0755.
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

const PRIVATE_DIR_MODE: u32 = 0o700;

/// The admin kubeconfig k3s wrote at `path`, with every cluster's server
/// set to `server` (the VIP, so it keeps working when this server is down).
pub fn kubeconfig_for(path: &Path, server: &str) -> Result<String, KubeconfigError> {
    let text = fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    kubeconfig::with_server(&text, path, server)
}

/// containerd is ready when its Version API answers on its own socket.
#[derive(Debug)]
pub struct VersionCheck {
    pub socket: std::path::PathBuf,
}

#[async_trait]
impl ReadinessCheck for VersionCheck {
    fn identity(&self) -> String {
        format!("containerd version unix://{}", self.socket.display())
    }

    async fn check(&self) -> Result<String, ProbeError> {
        let reply = VersionClient::new(unix_channel(&self.socket).await?)
            .version(())
            .await
            .map_err(|status| {
                ProbeError::Check(format!("containerd Version: {}", status.message()))
            })?
            .into_inner();
        Ok(format!("containerd {} answers", reply.version))
    }
}

/// A gRPC channel over a unix socket.
async fn unix_channel(path: &Path) -> Result<tonic::transport::Channel, ProbeError> {
    let socket = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .map_err(|error| {
            ProbeError::Check(format!(
                "connecting to {}: {}",
                path.display(),
                innermost(&error)
            ))
        })
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_are_written_atomically_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = RenderedFile {
            path: dir.path().join("sub/k3s-token"),
            contents: b"secret\n".to_vec(),
            mode: 0o600,
            secret: true,
        };
        HostFiles.write(&file).unwrap();
        HostFiles.write(&file).unwrap();
        let state = HostFiles.state(&file.path).unwrap().unwrap();
        assert_eq!(state.mode, 0o600);
        // The directory is the agent's alone.
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        assert_eq!(state, FileState::of(b"secret\n", 0o600));
        assert!(!format!("{file:?}").contains("secret\\n"));
        assert_eq!(HostFiles.state(&dir.path().join("none")).unwrap(), None);
        // No temp file is left beside it.
        let names: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["k3s-token"]);

        assert!(HostFiles.remove(&file.path).unwrap());
        assert!(!HostFiles.remove(&file.path).unwrap());
        let error = HostFiles.remove(dir.path()).unwrap_err().to_string();
        assert!(error.starts_with("removing "), "{error}");
    }

    #[test]
    fn a_config_dir_left_open_is_narrowed_and_its_parents_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("run");
        let config = parent.join("services");
        fs::create_dir_all(&config).unwrap();
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o755)).unwrap();
        let file = RenderedFile {
            path: config.join("containerd.toml"),
            contents: b"version = 2\n".to_vec(),
            mode: 0o600,
            secret: false,
        };
        HostFiles.write(&file).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&config), 0o700);
        assert_eq!(mode(&parent), 0o755);
        assert_eq!(mode(&file.path), 0o600);
    }

    #[test]
    fn the_kubeconfig_is_read_from_where_k3s_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig.yaml");
        fs::write(
            &path,
            "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n",
        )
        .unwrap();
        let text = kubeconfig_for(&path, "https://10.100.0.250:6443").unwrap();
        assert!(text.contains("server: https://10.100.0.250:6443"), "{text}");
        let missing = kubeconfig_for(&dir.path().join("none"), "https://x:6443")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("is this server's k3s up yet?"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn containerd_without_its_socket_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let check = VersionCheck {
            socket: dir.path().join("containerd.sock"),
        };
        assert!(check.identity().ends_with("containerd.sock"));
        let error = check.check().await.unwrap_err().to_string();
        assert!(error.contains("connecting to"), "{error}");
    }
}
