//! Where the services keep their files, in one place so the persistent
//! volumes (the storage step's bind mounts) can be wired to it, and tests
//! can point everything into temp dirs.

use std::path::PathBuf;

/// The services' paths. Defaults suit a zOS node; the boot config's
/// `[services]` table overrides any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePaths {
    /// Runtime files of the agent's services (tmpfs; never /run/containerd,
    /// which zOS's own containerd uses).
    pub run_dir: PathBuf,
    /// Our containerd's gRPC socket.
    pub containerd_socket: PathBuf,
    /// containerd's root (images, snapshots): on a persistent volume, and
    /// never tmpfs.
    pub containerd_root: PathBuf,
    /// containerd's state (runtime, may be tmpfs).
    pub containerd_state: PathBuf,
    /// The rendered containerd config, k3s config.yaml and token file.
    pub config_dir: PathBuf,
    /// k3s `data-dir` (persistent).
    pub k3s_data_dir: PathBuf,
    /// kubelet `root-dir` (persistent).
    pub kubelet_root_dir: PathBuf,
    /// `NAME.log` of each service.
    pub log_dir: PathBuf,
    /// Adoption records: they must outlive the agent, not the boot.
    pub record_dir: PathBuf,
    /// The cgroup directory the services' cgroups are made in.
    pub cgroup_parent: String,
    /// The host has cgroup v1 controllers (zOS mounts v1 only): the kubelet
    /// must be allowed to run there. Detected at start, not configured.
    pub host_cgroup_v1: bool,
}

impl Default for ServicePaths {
    fn default() -> Self {
        Self::under_run_dir("/run/tfagent".into())
    }
}

impl ServicePaths {
    /// The defaults, with every runtime path under `run_dir`.
    pub fn under_run_dir(run_dir: PathBuf) -> Self {
        Self {
            containerd_socket: run_dir.join("containerd/containerd.sock"),
            containerd_state: run_dir.join("containerd/state"),
            config_dir: run_dir.join("services"),
            record_dir: run_dir.join("supervise"),
            run_dir,
            containerd_root: "/var/lib/tfagent-containerd".into(),
            k3s_data_dir: "/var/lib/rancher/k3s".into(),
            kubelet_root_dir: "/var/lib/kubelet".into(),
            log_dir: "/var/log/tfagent".into(),
            cgroup_parent: "tfagent".into(),
            host_cgroup_v1: false,
        }
    }

    /// Everything under one directory (tests, and hosts without /run).
    pub fn under(dir: &std::path::Path) -> Self {
        Self {
            containerd_root: dir.join("containerd-root"),
            k3s_data_dir: dir.join("k3s"),
            kubelet_root_dir: dir.join("kubelet"),
            log_dir: dir.join("log"),
            ..Self::under_run_dir(dir.join("run"))
        }
    }

    /// The directories storage must persist, as validation knows them;
    /// `None` when one is not valid UTF-8.
    pub fn persisted_dirs(&self) -> Option<tfagent_spec::ServiceDirs> {
        let dir = |path: &PathBuf| path.to_str()?.trim_end_matches('/').parse().ok();
        Some(tfagent_spec::ServiceDirs {
            k3s_data_dir: dir(&self.k3s_data_dir)?,
            kubelet_dir: dir(&self.kubelet_root_dir)?,
            containerd_root: dir(&self.containerd_root)?,
        })
    }

    pub fn containerd_config(&self) -> PathBuf {
        self.config_dir.join("containerd.toml")
    }

    pub fn k3s_config(&self) -> PathBuf {
        self.config_dir.join("k3s-config.yaml")
    }

    /// The admin kubeconfig k3s writes on a server (0600), which
    /// `tfagentctl kubeconfig` serves with the VIP as its server.
    pub fn k3s_kubeconfig(&self) -> PathBuf {
        self.config_dir.join("kubeconfig.yaml")
    }

    pub fn k3s_token(&self) -> PathBuf {
        self.config_dir.join("k3s-token")
    }
}
