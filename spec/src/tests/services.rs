//! Rules of `services`.

use super::*;

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
                |d| d.services.k3s.extra_args = vec!["--token".into(), "abc".into()],
                "services.k3s.extra_args[0]",
                "--token",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["-t".into(), "abc".into()],
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
                |d| d.services.k3s.extra_args = vec!["--etcd-s3-secret-key".into(), "s".into()],
                "services.k3s.extra_args[0]",
                "its value is a secret",
            ),
            (
                |d| d.services.k3s.extra_args = vec!["--server".into(), "https://x:6443".into()],
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
        ],
    );
    check_valid(
        base,
        &[
            |d| {
                d.services.k3s.extra_args = vec![
                    "--disable=traefik".into(),
                    "--kubelet-arg=max-pods=200".into(),
                ]
            },
            |d| {
                d.services.k3s.extra_args =
                    vec!["--node-label".into(), "zone=a".into(), "--tokenizer".into()]
            },
            // Managed in k3s, but not in containerd.
            |d| {
                d.services.containerd.extra_args =
                    vec!["--log-level=debug".into(), "--token=x".into()]
            },
            |d| d.services.k3s.binary = "/opt/k3s/bin/k3s".into(),
        ],
    );
}
