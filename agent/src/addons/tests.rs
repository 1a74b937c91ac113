#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use super::*;
use crate::step::{Step, StepOutcome};
use tfagent_spec::{
    AcmeServer, CertManager, Longhorn, Metallb, Role, SpecDocument, ValidationContext,
    fixtures::example_spec,
};

/// Records deletions; fails them while `fail` is set.
#[derive(Debug, Default)]
struct FakeCluster {
    deleted: Mutex<Vec<String>>,
    fail: Mutex<bool>,
}

#[async_trait]
impl ClusterOps for &'static FakeCluster {
    async fn delete_resources(
        &self,
        _k3s: &Path,
        _kubeconfig: &Path,
        manifest: &Path,
    ) -> Result<(), io::Error> {
        if *self.fail.lock().unwrap() {
            return Err(io::Error::other("the apiserver is not ready"));
        }
        self.deleted
            .lock()
            .unwrap()
            .push(manifest.file_name().unwrap().to_string_lossy().into_owned());
        Ok(())
    }
}

fn cluster() -> &'static FakeCluster {
    Box::leak(Box::default())
}

fn all_on() -> NodeSpec {
    let mut spec = example_spec("server-init");
    spec.addons.cert_manager = Some(CertManager {
        email: "ops@example.com".into(),
        server: AcmeServer::Production,
    });
    spec.addons.longhorn = Some(Longhorn {
        data_path: "/mnt/ssd-1/longhorn".parse().unwrap(),
    });
    spec
}

/// Compares `files` with agent/src/addons/golden/CASE/; UPDATE_GOLDEN=1
/// rewrites them instead.
fn check_golden(case: &str, files: &BTreeMap<&'static str, String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/addons/golden")
        .join(case);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            fs::write(dir.join(name), content).unwrap();
        }
    }
    let on_disk = read_owned(&dir).unwrap();
    let rendered: BTreeMap<String, String> = files
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        on_disk.keys().collect::<Vec<_>>(),
        "{case}: the files differ (UPDATE_GOLDEN=1 rewrites them)"
    );
    for (name, content) in &rendered {
        assert_eq!(
            content, &on_disk[name],
            "{case}/{name} differs from its golden file (UPDATE_GOLDEN=1 rewrites it)"
        );
    }
}

#[test]
fn manifests_match_their_golden_files() {
    check_golden(
        "server-init",
        &manifests::render(&example_spec("server-init").addons).unwrap(),
    );
    check_golden("all-on", &manifests::render(&all_on().addons).unwrap());
}

#[test]
fn every_document_is_a_kubernetes_resource_and_chart_values_are_yaml() {
    for (name, content) in manifests::render(&all_on().addons).unwrap() {
        let documents: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&content)
            .map(|doc| <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc).unwrap())
            .filter(|doc| !doc.is_null())
            .collect();
        assert!(!documents.is_empty(), "{name}");
        for doc in documents {
            for key in ["apiVersion", "kind"] {
                assert!(
                    doc[key].as_str().is_some_and(|v| !v.is_empty()),
                    "{name}: {key}"
                );
            }
            assert!(doc["metadata"]["name"].as_str().is_some(), "{name}");
            if doc["kind"] == "HelmChart" {
                assert_eq!(doc["metadata"]["namespace"], "kube-system", "{name}");
                assert!(doc["spec"]["version"].as_str().is_some(), "{name}: pinned");
                if let Some(values) = doc["spec"]["valuesContent"].as_str() {
                    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(values).unwrap();
                    assert!(values.is_mapping(), "{name}: values");
                }
            }
        }
    }
}

#[test]
fn values_come_from_the_spec() {
    let files = manifests::render(&all_on().addons).unwrap();
    let metallb = &files["tfagent-metallb-config.yaml"];
    assert!(metallb.contains("- 198.51.100.0/28"), "{metallb}");
    assert!(metallb.contains("- eth0"), "{metallb}");
    let issuer = &files["tfagent-cert-manager-issuer.yaml"];
    assert!(issuer.contains("email: ops@example.com"), "{issuer}");
    assert!(issuer.contains("https://acme-v02.api.letsencrypt.org/directory"));
    assert!(files["tfagent-longhorn.yaml"].contains("defaultDataPath: /mnt/ssd-1/longhorn"));
    // local-path is k3s's own: no file.
    assert!(files.keys().all(|f| !f.contains("local-path")));
}

fn observed(present: &[(&str, &str)], spec: &NodeSpec) -> Observed {
    Observed {
        present: present
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        wanted: manifests::render(&spec.addons).unwrap(),
    }
}

fn plan(spec: &NodeSpec, observed: &Observed) -> Vec<String> {
    <AddonsStep<K3sKubectl> as Capability>::plan(spec, observed)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn plans_write_what_is_missing_or_different_and_remove_what_is_off() {
    let mut spec = all_on();
    spec.addons.cert_manager = None;
    spec.addons.longhorn = None;
    spec.addons.ingress_nginx = false;
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
        plan(&spec, &state),
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
    assert!(plan(&spec, &converged).is_empty());
}

fn spec_with(role: Role, addons: impl FnOnce(&mut NodeSpec)) -> NodeSpec {
    let mut spec = example_spec("server-init");
    spec.role = role;
    addons(&mut spec);
    spec
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn turning_addons_on_and_off_adds_and_removes_exactly_their_files() {
    let data = tempfile::tempdir().unwrap();
    let paths = K3sPaths::under(data.path());
    fs::create_dir_all(&paths.manifests).unwrap();
    // k3s's own manifest and a person's are never touched.
    fs::write(paths.manifests.join("coredns.yaml"), "k3s").unwrap();
    fs::write(paths.manifests.join("custom.yaml"), "mine").unwrap();
    let fake = cluster();
    let step = AddonsStep::with_cluster(paths.clone(), fake);

    let only_ingress = spec_with(Role::ServerInit, |s| {
        s.addons = Default::default();
        s.addons.ingress_nginx = true;
    });
    assert_eq!(
        step.converge(&only_ingress).await.unwrap(),
        StepOutcome::Applied { changes: 1 }
    );
    assert_eq!(
        names(&paths.manifests),
        ["coredns.yaml", "custom.yaml", "tfagent-ingress-nginx.yaml"]
    );

    let with_metallb = spec_with(Role::ServerInit, |s| {
        s.addons = Default::default();
        s.addons.ingress_nginx = true;
        s.addons.metallb = Some(Metallb {
            addresses: vec!["198.51.100.0/28".parse().unwrap()],
            interface: "eth0".parse().unwrap(),
        });
    });
    let ingress_before = fs::metadata(paths.manifests.join("tfagent-ingress-nginx.yaml"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        step.converge(&with_metallb).await.unwrap(),
        StepOutcome::Applied { changes: 2 }
    );
    assert_eq!(
        names(&paths.manifests),
        [
            "coredns.yaml",
            "custom.yaml",
            "tfagent-ingress-nginx.yaml",
            "tfagent-metallb-config.yaml",
            "tfagent-metallb.yaml"
        ]
    );
    let ingress_after = fs::metadata(paths.manifests.join("tfagent-ingress-nginx.yaml"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        ingress_before, ingress_after,
        "an unchanged file is not rewritten"
    );
    assert_eq!(
        step.converge(&with_metallb).await.unwrap(),
        StepOutcome::UpToDate
    );

    // Off again: the cluster resources go first, then the files.
    assert_eq!(
        step.converge(&only_ingress).await.unwrap(),
        StepOutcome::Applied { changes: 2 }
    );
    assert_eq!(
        *fake.deleted.lock().unwrap(),
        ["tfagent-metallb-config.yaml", "tfagent-metallb.yaml"]
    );
    assert_eq!(
        names(&paths.manifests),
        ["coredns.yaml", "custom.yaml", "tfagent-ingress-nginx.yaml"]
    );
    assert_eq!(
        fs::read_to_string(paths.manifests.join("custom.yaml")).unwrap(),
        "mine"
    );
}

#[tokio::test]
async fn a_file_whose_resources_cannot_be_deleted_stays_until_they_can() {
    let data = tempfile::tempdir().unwrap();
    let paths = K3sPaths::under(data.path());
    let fake = cluster();
    let step = AddonsStep::with_cluster(paths.clone(), fake);
    let on = spec_with(Role::ServerInit, |s| {
        s.addons = Default::default();
        s.addons.ingress_nginx = true;
    });
    step.converge(&on).await.unwrap();
    let off = spec_with(Role::ServerInit, |s| s.addons = Default::default());

    *fake.fail.lock().unwrap() = true;
    let error = step.converge(&off).await.unwrap_err().to_string();
    assert!(error.contains("tfagent-ingress-nginx.yaml"), "{error}");
    assert!(error.contains("the apiserver is not ready"), "{error}");
    assert!(paths.manifests.join("tfagent-ingress-nginx.yaml").exists());

    *fake.fail.lock().unwrap() = false;
    step.converge(&off).await.unwrap();
    assert!(!paths.manifests.join("tfagent-ingress-nginx.yaml").exists());
}

#[tokio::test]
async fn agents_deploy_no_manifests() {
    let data = tempfile::tempdir().unwrap();
    let paths = K3sPaths::under(data.path());
    let step = AddonsStep::with_cluster(paths.clone(), cluster());
    let agent = example_spec("agent");
    assert_eq!(step.converge(&agent).await.unwrap(), StepOutcome::UpToDate);
    assert!(!paths.manifests.exists());
}

#[test]
fn the_example_server_spec_turns_on_what_it_says() {
    let doc = SpecDocument::parse(tfagent_spec::fixtures::example_text("server-init")).unwrap();
    let spec = doc.validate(&ValidationContext::default()).unwrap();
    let files = manifests::render(&spec.addons).unwrap();
    assert_eq!(
        files.keys().copied().collect::<Vec<_>>(),
        [
            "tfagent-cert-manager-issuer.yaml",
            "tfagent-cert-manager.yaml",
            "tfagent-ingress-nginx.yaml",
            "tfagent-metallb-config.yaml",
            "tfagent-metallb.yaml",
        ]
    );
}
