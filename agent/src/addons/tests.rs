#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use super::{
    fake::{FakeCluster, FakeManifests},
    *,
};
use crate::step::{Step, StepOutcome};
use tfagent_spec::{
    AcmeServer, CertManager, Longhorn, Metallb, Role, SpecDocument, ValidationContext,
    fixtures::example_spec,
};

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
    let on_disk = HostManifests.owned(&dir).unwrap();
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
    let fake = FakeCluster::default();
    let step = AddonsStep::with_cluster(paths.clone(), fake.clone());

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
        fake.state().deleted,
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
    let fake = FakeCluster::default();
    let step = AddonsStep::with_cluster(paths.clone(), fake.clone());
    let on = spec_with(Role::ServerInit, |s| {
        s.addons = Default::default();
        s.addons.ingress_nginx = true;
    });
    step.converge(&on).await.unwrap();
    let off = spec_with(Role::ServerInit, |s| s.addons = Default::default());

    fake.state().fail = true;
    let error = step.converge(&off).await.unwrap_err().to_string();
    assert!(error.contains("tfagent-ingress-nginx.yaml"), "{error}");
    assert!(error.contains("the apiserver is not ready"), "{error}");
    assert!(paths.manifests.join("tfagent-ingress-nginx.yaml").exists());

    fake.state().fail = false;
    step.converge(&off).await.unwrap();
    assert!(!paths.manifests.join("tfagent-ingress-nginx.yaml").exists());
}

#[tokio::test]
async fn agents_deploy_no_manifests() {
    let data = tempfile::tempdir().unwrap();
    let paths = K3sPaths::under(data.path());
    let step = AddonsStep::with_cluster(paths.clone(), FakeCluster::default());
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

fn faked() -> (
    AddonsStep<FakeCluster, FakeManifests>,
    FakeCluster,
    FakeManifests,
) {
    let (cluster, files) = (FakeCluster::default(), FakeManifests::default());
    let step = AddonsStep::with_ports(
        K3sPaths::under(Path::new("/k3s")),
        cluster.clone(),
        files.clone(),
    );
    (step, cluster, files)
}

#[tokio::test]
async fn only_differing_files_are_written_and_removal_deletes_from_the_cluster_first() {
    let (step, cluster, files) = faked();
    let spec = all_on();
    assert_eq!(
        step.converge(&spec).await.unwrap(),
        StepOutcome::Applied { changes: 6 }
    );
    assert_eq!(files.take_calls().len(), 6);
    assert_eq!(step.converge(&spec).await.unwrap(), StepOutcome::UpToDate);
    assert!(files.take_calls().is_empty());

    // Edited behind the agent's back: written again, and only that one.
    files.dir().files.insert(
        "/k3s/server/manifests/tfagent-longhorn.yaml".into(),
        "edited".into(),
    );
    let plan = Step::plan(&step, &spec).await.unwrap();
    assert_eq!(plan, ["rewrite tfagent-longhorn.yaml"]);
    step.converge(&spec).await.unwrap();
    assert_eq!(files.take_calls(), ["write tfagent-longhorn.yaml"]);

    let mut no_longhorn = spec.clone();
    no_longhorn.addons.longhorn = None;
    step.converge(&no_longhorn).await.unwrap();
    assert_eq!(cluster.state().deleted, ["tfagent-longhorn.yaml"]);
    assert_eq!(files.take_calls(), ["remove tfagent-longhorn.yaml"]);

    // The cluster refuses: the file stays, so the next pass tries again.
    let mut no_metallb = no_longhorn.clone();
    no_metallb.addons.metallb = None;
    cluster.state().fail = true;
    let error = step.converge(&no_metallb).await.unwrap_err().to_string();
    assert!(
        error.starts_with(
            "delete what tfagent-metallb-config.yaml deployed from the cluster, then remove it: \
             k3s kubectl delete -f /k3s/server/manifests/tfagent-metallb-config.yaml: "
        ),
        "{error}"
    );
    assert!(files.take_calls().is_empty());
    assert_eq!(
        Step::plan(&step, &no_metallb).await.unwrap().len(),
        2,
        "both MetalLB files are still to be removed"
    );
}

#[tokio::test]
async fn teardown_removes_the_agents_files_and_leaves_the_cluster_alone() {
    let (step, cluster, files) = faked();
    step.converge(&all_on()).await.unwrap();
    files
        .dir()
        .files
        .insert("/k3s/server/manifests/coredns.yaml".into(), "k3s".into());
    files.take_calls();
    let done = Step::teardown(&step, &all_on()).await.unwrap();
    assert_eq!(done.len(), 6);
    assert_eq!(
        done[0],
        "remove /k3s/server/manifests/tfagent-cert-manager-issuer.yaml"
    );
    assert!(cluster.state().deleted.is_empty());
    assert_eq!(
        files.dir().files.keys().collect::<Vec<_>>(),
        [Path::new("/k3s/server/manifests/coredns.yaml")]
    );
    assert!(Step::teardown(&step, &all_on()).await.unwrap().is_empty());
}
