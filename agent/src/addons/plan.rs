//! The manifests the spec asks for, and the changes that take k3s's
//! manifests directory there. Pure.

use std::{collections::BTreeMap, fmt};

use tfagent_spec::NodeSpec;

use super::manifests::{self, RenderError};

/// The files the step owns, as they are on disk and as the spec wants them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// File name → content, for the `tfagent-*.yaml` files present.
    pub present: BTreeMap<String, String>,
    /// File name → content the spec asks for.
    pub wanted: BTreeMap<&'static str, String>,
}

/// One change to the manifests directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddonChange {
    Write {
        file: &'static str,
        content: String,
        new: bool,
    },
    Remove {
        file: String,
    },
}

impl fmt::Display for AddonChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddonChange::Write {
                file, new: true, ..
            } => write!(f, "write {file}"),
            AddonChange::Write {
                file, new: false, ..
            } => write!(f, "rewrite {file}"),
            AddonChange::Remove { file } => write!(
                f,
                "delete what {file} deployed from the cluster, then remove it"
            ),
        }
    }
}

/// The files `spec` asks for. Only servers deploy manifests; an agent
/// wants none.
pub fn wanted(spec: &NodeSpec) -> Result<BTreeMap<&'static str, String>, RenderError> {
    if spec.role.is_server() {
        manifests::render(&spec.addons)
    } else {
        Ok(BTreeMap::new())
    }
}

/// Writes what is missing or different, then removes what is no longer
/// wanted; an unchanged file is left alone.
pub fn plan(observed: &Observed) -> Vec<AddonChange> {
    let mut changes = Vec::new();
    for (file, content) in &observed.wanted {
        let present = observed.present.get(*file);
        if present != Some(content) {
            changes.push(AddonChange::Write {
                file,
                content: content.clone(),
                new: present.is_none(),
            });
        }
    }
    for file in observed.present.keys() {
        if !observed.wanted.contains_key(file.as_str()) {
            changes.push(AddonChange::Remove { file: file.clone() });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tfagent_spec::fixtures::example_spec;

    fn observed(present: &[(&str, &str)], spec: &NodeSpec) -> Observed {
        Observed {
            present: present
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            wanted: manifests::render(&spec.addons).unwrap(),
        }
    }

    fn shown(observed: &Observed) -> Vec<String> {
        plan(observed).iter().map(ToString::to_string).collect()
    }

    /// The example server with MetalLB alone (local-path has no file).
    fn only_metallb() -> NodeSpec {
        let mut spec = example_spec("server-init");
        spec.addons.cert_manager = None;
        spec.addons.longhorn = None;
        spec.addons.ingress_nginx = false;
        spec
    }

    #[test]
    fn plans_write_what_is_missing_or_different_and_remove_what_is_off() {
        let spec = only_metallb();
        let wanted = manifests::render(&spec.addons).unwrap();
        let metallb = wanted["tfagent-metallb.yaml"].as_str();
        let state = observed(
            &[
                ("tfagent-metallb.yaml", metallb),
                ("tfagent-metallb-config.yaml", "stale"),
                ("tfagent-longhorn.yaml", "old"),
            ],
            &spec,
        );
        assert_eq!(
            shown(&state),
            [
                "rewrite tfagent-metallb-config.yaml",
                "delete what tfagent-longhorn.yaml deployed from the cluster, then remove it",
            ]
        );
        let converged = Observed {
            present: wanted
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            wanted: wanted.clone(),
        };
        assert!(shown(&converged).is_empty());
    }

    #[test]
    fn an_empty_directory_gets_every_file_as_new_and_writes_come_before_removals() {
        let spec = only_metallb();
        let changes = plan(&observed(&[], &spec));
        assert_eq!(changes.len(), 2);
        assert!(
            changes
                .iter()
                .all(|c| matches!(c, AddonChange::Write { new: true, .. }))
        );
        let state = observed(&[("tfagent-a.yaml", "x"), ("tfagent-z.yaml", "y")], &spec);
        assert_eq!(
            shown(&state),
            [
                "write tfagent-metallb-config.yaml",
                "write tfagent-metallb.yaml",
                "delete what tfagent-a.yaml deployed from the cluster, then remove it",
                "delete what tfagent-z.yaml deployed from the cluster, then remove it",
            ]
        );
        assert!(plan(&Observed::default()).is_empty());
    }

    #[test]
    fn only_servers_want_manifests_whatever_their_addons() {
        assert_eq!(wanted(&only_metallb()).unwrap().len(), 2);
        assert!(wanted(&example_spec("agent")).unwrap().is_empty());
        let mut agent = example_spec("server-init");
        agent.role = tfagent_spec::Role::Agent;
        assert!(!manifests::render(&agent.addons).unwrap().is_empty());
        assert!(wanted(&agent).unwrap().is_empty());
    }
}
