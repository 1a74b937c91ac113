//! Generated code of the `tfagent.v1` API (messages and the `NodeAgent`
//! service), and the descriptor set that gRPC reflection serves.

#![allow(missing_docs, unused_qualifications, missing_debug_implementations)]

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("tfagent.v1");

    impl std::fmt::Debug for ClusterSpec {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let token = if self.token.is_empty() {
                ""
            } else {
                "<redacted>"
            };
            f.debug_struct("ClusterSpec")
                .field("token", &token)
                .field("join_url", &self.join_url)
                .field("vip", &self.vip)
                .field("tls_sans", &self.tls_sans)
                .field("cluster_cidr", &self.cluster_cidr)
                .field("service_cidr", &self.service_cidr)
                .finish()
        }
    }
}

/// The client of containerd's Version service (`containerd.services.version.v1`).
pub mod containerd_version {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("containerd.services.version.v1");
}

/// Where the agent serves the API to local callers unless its boot config
/// says otherwise (root only, mode 0600).
pub const DEFAULT_SOCKET: &str = "/run/tfagent/tfagent.sock";

/// Encoded `FileDescriptorSet` of the tfagent.v1 files, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tfagent_descriptor");

#[cfg(test)]
mod tests {
    use super::v1::ClusterSpec;

    #[test]
    fn cluster_spec_debug_redacts_the_token() {
        let spec = ClusterSpec {
            token: "s3cr3t-token-value".into(),
            vip: "10.100.0.250".into(),
            ..Default::default()
        };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("10.100.0.250"));
    }
}
