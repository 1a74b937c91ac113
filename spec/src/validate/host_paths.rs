//! Where on the host tfagent may mount (or hand a directory to an add-on):
//! the rules are compared component-wise on canonical paths ([`AbsPath`]
//! refuses `.`, `..`, `//` and a trailing `/` before anything gets here), so
//! `/etcx` is not under `/etc` and `/var/lib/rancher2` is not under
//! `/var/lib/rancher`.
//!
//! A path is refused when it is `/`, lies in a [`SYSTEM_DIRS`] tree (the
//! directory itself or anything under it) and not in an [`ALLOWED`] tree,
//! is one of [`TOP_LEVEL_ONLY`] itself, or is the agent's state dir or run
//! dir, one of their ancestors or something inside them. Whether a path
//! holds a symlink is a fact of the host: the agent looks it up and passes
//! it in the [`ValidationContext`](super::ValidationContext).

use crate::types::AbsPath;

/// Trees of the operating system: a mount on or under one of them hides
/// or replaces what the host, zOS or the agent itself runs on (binaries,
/// libraries, /etc/ssh, cgroups under /sys/fs/cgroup, the agent's socket
/// under /run, /dev/shm, root's and users' homes, /var's logs and caches).
pub const SYSTEM_DIRS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/efi",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/run",
    "/var",
    "/root",
    "/home",
    "/snap",
    "/nix",
    "/lost+found",
];

/// Directories inside [`SYSTEM_DIRS`] that tfagent's own services keep
/// their data in, and which volumes and persisted paths may therefore be
/// (or lie under): k3s's config and data, the kubelet, tfagent's
/// containerd, Longhorn, and the pods' logs.
pub const ALLOWED: &[&str] = &[
    "/etc/rancher",
    "/var/lib/rancher",
    "/var/lib/kubelet",
    "/var/lib/tfagent-containerd",
    "/var/lib/longhorn",
    "/var/log/pods",
    "/var/log/containers",
];

/// Top-level directories that may hold mounts but must not be one: a
/// mount over `/mnt` hides zOS's pools, one over `/tmp` everyone's
/// temporary files.
pub const TOP_LEVEL_ONLY: &[&str] = &["/tmp", "/mnt", "/media", "/opt", "/srv"];

/// A directory of the agent's own that no mount may touch.
#[derive(Debug, Clone, Copy)]
pub struct AgentDir<'a> {
    /// What it is, for the message ("state dir", "run dir").
    pub what: &'static str,
    pub path: &'a AbsPath,
}

/// Why `path` may not be mounted on, or `None` when it may. `extra_allowed`
/// are further [`ALLOWED`] trees (the services' data dirs the boot config
/// names).
pub fn refusal(
    path: &AbsPath,
    agent_dirs: &[AgentDir],
    extra_allowed: &[&AbsPath],
) -> Option<String> {
    if path.as_str() == "/" {
        return Some("must not be `/`".to_owned());
    }
    for dir in agent_dirs {
        if dir.path.is_within(path) {
            return Some(format!(
                "would hide the agent's {} {}, which the agent keeps open: a mount there \
                 hides its spec and keys and wedges the node",
                dir.what, dir.path
            ));
        }
        if path.is_within(dir.path) {
            return Some(format!(
                "lies inside the agent's {} {}, which no volume or persisted path may touch",
                dir.what, dir.path
            ));
        }
    }
    let allowed = ALLOWED.iter().any(|dir| path.as_path().starts_with(dir))
        || extra_allowed.iter().any(|dir| path.is_within(dir));
    if !allowed
        && let Some(system) = SYSTEM_DIRS
            .iter()
            .find(|dir| path.as_path().starts_with(dir))
    {
        let what = if path.as_str() == *system {
            format!("must not be {system}, a system directory")
        } else {
            format!("lies under {system}, a system directory")
        };
        return Some(format!(
            "{what}; mount outside the system directories (e.g. /srv, /mnt/<pool>) or in one \
             tfagent's services use ({})",
            ALLOWED.join(", ")
        ));
    }
    if TOP_LEVEL_ONLY.contains(&path.as_str()) {
        return Some(format!(
            "must not be {path} itself (it holds others' files or mounts); use a directory under it"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(text: &str) -> AbsPath {
        text.parse().unwrap()
    }

    fn check(text: &str) -> Option<String> {
        let state = p("/var/cache/modules/tfagent");
        let run = p("/opt/tfagent-run");
        let k3s = p("/data/k3s");
        refusal(
            &p(text),
            &[
                AgentDir {
                    what: "state dir",
                    path: &state,
                },
                AgentDir {
                    what: "run dir",
                    path: &run,
                },
            ],
            &[&k3s],
        )
    }

    #[test]
    fn system_trees_are_refused_whole() {
        for path in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/tfagent",
            "/etc/ssh",
            "/etc",
            "/usr/lib",
            "/usr/local/bin",
            "/run",
            "/run/tfagent",
            "/var/lib",
            "/var/lib/containerd",
            "/var/log",
            "/root",
            "/root/.ssh",
            "/home/alice",
            "/dev/shm/x",
            "/proc/1",
            "/boot/efi",
            "/lib64",
        ] {
            let why = check(path).unwrap_or_else(|| panic!("{path} was accepted"));
            assert!(why.contains("system directory"), "{path}: {why}");
        }
        assert!(check("/etc").unwrap().contains("must not be /etc"));
        assert!(check("/etc/ssh").unwrap().contains("lies under /etc"));
        // An ancestor of the state dir, refused as that first.
        assert!(check("/var").unwrap().contains("state dir"));
    }

    #[test]
    fn the_allow_list_and_ordinary_places_are_accepted() {
        for path in [
            "/etc/rancher",
            "/etc/rancher/k3s",
            "/var/lib/rancher/k3s",
            "/var/lib/rancher/k3s/storage",
            "/var/lib/kubelet",
            "/var/lib/tfagent-containerd",
            "/var/lib/longhorn",
            "/var/log/pods",
            "/srv/data",
            "/mnt/ssd-1/data",
            "/tmp/x/y",
            "/data",
            "/data/k3s",
            "/etcx",
            "/variable",
        ] {
            assert_eq!(check(path), None, "{path}");
        }
    }

    #[test]
    fn allowed_trees_are_compared_component_wise() {
        assert!(check("/var/lib/rancher2").is_some());
        assert!(check("/etc/rancher-x").is_some());
        assert!(check("/var/lib/kubelet-old").is_some());
    }

    #[test]
    fn the_agents_dirs_their_ancestors_and_insides_are_refused() {
        for path in [
            "/var/cache/modules/tfagent",
            "/var/cache/modules/tfagent/x",
            "/var/cache/modules",
            "/opt/tfagent-run",
            "/opt/tfagent-run/containerd",
            "/opt",
        ] {
            let why = check(path).unwrap_or_else(|| panic!("{path} was accepted"));
            assert!(why.contains("the agent's"), "{path}: {why}");
        }
        assert!(check("/opt/other").is_none());
        assert!(check("/").unwrap().contains("must not be `/`"));
    }

    #[test]
    fn top_level_dirs_only_below() {
        for path in TOP_LEVEL_ONLY {
            assert!(check(path).is_some(), "{path}");
        }
    }
}
