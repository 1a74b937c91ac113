//! The admin kubeconfig k3s writes on a server, served with another server
//! address (the VIP). Pure: the file itself is read on the Linux side.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{path}: {source} (is this server's k3s up yet?)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a kubeconfig k3s wrote: {message}")]
    Parse { path: String, message: String },
}

/// `text`, the kubeconfig read from `path`, with every cluster's server
/// set to `server`; the credentials are kept as they are.
pub fn with_server(text: &str, path: &Path, server: &str) -> Result<String, KubeconfigError> {
    let parse = |message: String| KubeconfigError::Parse {
        path: path.display().to_string(),
        message,
    };
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| parse(e.to_string()))?;
    let clusters = config
        .get_mut("clusters")
        .and_then(serde_yaml_ng::Value::as_sequence_mut)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| parse("it names no cluster".into()))?;
    for cluster in clusters {
        let entry = cluster
            .get_mut("cluster")
            .and_then(serde_yaml_ng::Value::as_mapping_mut)
            .ok_or_else(|| parse("a cluster without its `cluster` map".into()))?;
        entry.insert("server".into(), server.into());
    }
    serde_yaml_ng::to_string(&config).map_err(|e| parse(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const K3S_WROTE: &str = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

    #[test]
    fn the_kubeconfig_points_at_the_given_server_and_keeps_the_credentials() {
        let path = Path::new("/run/k/kubeconfig.yaml");
        let text = with_server(K3S_WROTE, path, "https://10.100.0.250:6443").unwrap();
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            parsed["clusters"][0]["cluster"]["server"],
            "https://10.100.0.250:6443"
        );
        assert_eq!(
            parsed["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(parsed["users"][0]["user"]["client-key-data"], "S0VZ");

        let error = with_server("clusters: []\n", path, "https://x:6443")
            .unwrap_err()
            .to_string();
        assert!(error.contains("names no cluster"), "{error}");
        assert!(error.starts_with("/run/k/kubeconfig.yaml: "), "{error}");
        let error = with_server("clusters:\n- name: x\n", path, "https://x:6443")
            .unwrap_err()
            .to_string();
        assert!(error.contains("without its `cluster` map"), "{error}");
    }
}
