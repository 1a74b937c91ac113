//! Rules of `services`.

use super::*;
use crate::model::Services;

#[test]
fn services_rules() {
    check_faults(
        base,
        &[
            (
                |d| d.services.k3s.binary = "k3s".into(),
                "services.k3s.binary",
                "must be an absolute path",
            ),
            (
                |d| d.services.containerd.binary = "/usr/bin/".into(),
                "services.containerd.binary",
                "must not end with `/`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--token=abc".into()],
                "services.k3s.extra_args[0]",
                "`--token` is managed by the agent: set cluster.token instead",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--token".into()],
                "services.k3s.extra_args[0]",
                "--token",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["-t".into()],
                "services.k3s.extra_args[0]",
                "`--token`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["-token=abc".into()],
                "services.k3s.extra_args[0]",
                "`--token`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--token-file=/x".into()],
                "services.k3s.extra_args[0]",
                "`--token-file`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--agent-token-file=/x".into()],
                "services.k3s.extra_args[0]",
                "`--agent-token-file`",
            ),
            (
                |d| {
                    d.services.k3s.extra_args =
                        vec!["--datastore-endpoint=postgres://u:pw@db/k3s".into()]
                },
                "services.k3s.extra_args[0]",
                "may hold a password",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--etcd-s3-secret-key".into()],
                "services.k3s.extra_args[0]",
                "`--etcd-s3-secret-key` is not among",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--server".into()],
                "services.k3s.extra_args[0]",
                "cluster.join_url",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--cluster-init".into()],
                "services.k3s.extra_args[0]",
                "it follows role",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--node-ip=10.0.0.1".into()],
                "services.k3s.extra_args[0]",
                "addresses",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--node-name=x".into()],
                "services.k3s.extra_args[0]",
                "node_name",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--flannel-iface=eth0".into()],
                "services.k3s.extra_args[0]",
                "interface",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--data-dir=/x".into()],
                "services.k3s.extra_args[0]",
                "storage.volumes",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--tls-san=x".into()],
                "services.k3s.extra_args[0]",
                "cluster.tls_sans",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--cluster-cidr=x".into()],
                "services.k3s.extra_args[0]",
                "cluster_cidr",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--service-cidr=x".into()],
                "services.k3s.extra_args[0]",
                "service_cidr",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--container-runtime-endpoint=x".into()],
                "services.k3s.extra_args[0]",
                "services.containerd",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--config=/x".into()],
                "services.k3s.extra_args[0]",
                "config",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--config".into()],
                "services.containerd.extra_args[0]",
                "`--config`",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["-a=/run/x.sock".into()],
                "services.containerd.extra_args[0]",
                "`--address`",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--root=/x".into()],
                "services.containerd.extra_args[0]",
                "`--root`",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--state=/x".into()],
                "services.containerd.extra_args[0]",
                "`--state`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["a\nb".into()],
                "services.k3s.extra_args[0]",
                "line breaks",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["a\0b".into()],
                "services.k3s.extra_args[0]",
                "NUL",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["x".repeat(4097)],
                "services.k3s.extra_args[0]",
                "longer than 4096",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--v=1".into(); 129],
                "services.k3s.extra_args",
                "at most 128 entries",
            ),
            // The allow-list: anything that could grant access, change what
            // runs as root or where files go is refused, naming the flag.
            (
                |d| {
                    d.services.k3s.extra_args =
                        vec!["--kube-apiserver-arg=anonymous-auth=true".into()]
                },
                "services.k3s.extra_args[0]",
                "`--kube-apiserver-arg` is not among the flags that may be passed through",
            ),
            (
                |d| {
                    d.services.k3s.extra_args = vec![
                        "--disable=traefik".into(),
                        "--kubelet-arg=max-pods=200".into(),
                    ]
                },
                "services.k3s.extra_args[1]",
                "`--kubelet-arg` is not among",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--write-kubeconfig-mode=0644".into()],
                "services.k3s.extra_args[0]",
                "`--write-kubeconfig-mode` is managed by the agent",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--write-kubeconfig=/tmp/k".into()],
                "services.k3s.extra_args[0]",
                "`--write-kubeconfig` is managed by the agent",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--log=/etc/passwd".into()],
                "services.k3s.extra_args[0]",
                "`--log` is not among",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--node-label".into()],
                "services.k3s.extra_args[0]",
                "`--node-label` needs a value after `=`",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["zone=a".into()],
                "services.k3s.extra_args[0]",
                "is not a flag",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--disable=traefik,kube-proxy".into()],
                "services.k3s.extra_args[0]",
                "`--disable` takes one or more of coredns",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--node-label=a=$(id)".into()],
                "services.k3s.extra_args[0]",
                "letters, digits",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--debug=yes".into()],
                "services.k3s.extra_args[0]",
                "takes no value but true or false",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--token=x".into()],
                "services.containerd.extra_args[0]",
                "`--token` is not among the flags that may be passed through (--log-level)",
            ),
            (
                |d| d.services.containerd.extra_args = vec!["--log-level=loud".into()],
                "services.containerd.extra_args[0]",
                "`--log-level` takes one or more of trace",
            ),
        ],
    );
    check_valid(
        base,
        &[
            |d| {
                d.services.k3s.extra_args = vec![
                    "--disable=traefik".into(),
                    "--disable=servicelb,metrics-server".into(),
                    "-disable=local-storage".into(),
                ]
            },
            |d| {
                d.services.k3s.extra_args = vec![
                    "--node-label=zone=a".into(),
                    "--node-taint=dedicated=db:NoSchedule".into(),
                    "--disable-helm-controller".into(),
                    "--etcd-disable-snapshots=false".into(),
                    "--etcd-snapshot-schedule-cron=0 */6 * * *".into(),
                    "--etcd-snapshot-retention=10".into(),
                    "--debug".into(),
                    "--v=2".into(),
                ]
            },
            |d| d.services.containerd.extra_args = vec!["--log-level=debug".into()],
            |d| d.services.k3s.binary = "/opt/k3s/bin/k3s".into(),
        ],
    );
}

#[test]
fn a_binary_the_host_refuses_is_refused_naming_its_field() {
    let context = ValidationContext {
        refused_binaries: [(
            "/tmp/k3s".to_owned(),
            "/tmp is writable by others".to_owned(),
        )]
        .into(),
        ..ValidationContext::default()
    };
    let mut doc = base();
    doc.services.k3s.binary = "/tmp/k3s".into();
    let errors = doc.validate(&context).unwrap_err();
    let error = errors
        .iter()
        .find(|e| e.path == "services.k3s.binary")
        .unwrap();
    assert!(
        error.message.contains("/tmp is writable by others"),
        "{error:?}"
    );
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn only_binaries_are_fields_that_decide_what_runs_as_root() {
    let spec = base().validate(&ValidationContext::default()).unwrap();
    assert!(spec.services.root_fields_changed(&spec.services).is_empty());
    let mut other = spec.services.clone();
    other.k3s.extra_args = vec!["--debug".into()];
    assert!(spec.services.root_fields_changed(&other).is_empty());
    other.k3s.binary = "/opt/k3s".parse().unwrap();
    assert_eq!(
        spec.services.root_fields_changed(&other),
        ["services.k3s.binary"]
    );
    other.containerd.binary = "/opt/containerd".parse().unwrap();
    assert_eq!(
        spec.services.root_fields_changed(&other),
        ["services.containerd.binary", "services.k3s.binary"]
    );
}

#[test]
fn the_default_services_are_those_of_a_document_without_them() {
    let mut doc = base();
    doc.services = Default::default();
    let spec = doc.validate(&ValidationContext::default()).unwrap();
    assert_eq!(spec.services, Services::defaults());
}
