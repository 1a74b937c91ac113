//! `cluster`: the token, how to join, the VIP address, and the pod and
//! service networks.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::checker::{Checker, first_seen};
use crate::defaults;
use crate::document::ClusterDoc;
use crate::limits::{MAX_TLS_SANS, MAX_TOKEN_BYTES};
use crate::model::Cluster;
use crate::types::{Host, JoinUrl, REDACTED, Role, Secret, nets_overlap};

pub(super) struct ClusterParts {
    token: Option<Secret>,
    join_url: Option<Option<JoinUrl>>,
    pub(super) vip: Option<Option<IpAddr>>,
    tls_sans: Option<Vec<Host>>,
    cluster_cidr: Option<IpNet>,
    service_cidr: Option<IpNet>,
}

impl ClusterParts {
    pub(super) fn build(self) -> Option<Cluster> {
        Some(Cluster {
            token: self.token?,
            join_url: self.join_url?,
            vip: self.vip?,
            tls_sans: self.tls_sans?,
            cluster_cidr: self.cluster_cidr?,
            service_cidr: self.service_cidr?,
        })
    }

    pub(super) fn cidrs(&self) -> impl Iterator<Item = (&'static str, IpNet)> {
        [
            ("cluster.cluster_cidr", self.cluster_cidr),
            ("cluster.service_cidr", self.service_cidr),
        ]
        .into_iter()
        .filter_map(|(path, net)| net.map(|net| (path, net)))
    }
}

impl Checker<'_> {
    pub(super) fn cluster(&mut self, doc: &ClusterDoc, role: Option<Role>) -> ClusterParts {
        let token = self.token(&doc.token);
        let join_url = match (role, doc.join_url.is_empty()) {
            (Some(Role::ServerInit), true) => Some(None),
            (Some(Role::ServerInit), false) => {
                self.fail(
                    "cluster.join_url",
                    "must be empty for role server-init, which starts the cluster",
                );
                None
            }
            (Some(role), true) => {
                self.fail(
                    "cluster.join_url",
                    format!("required for role {role}: the https://HOST:PORT API to join through (normally the VIP)"),
                );
                None
            }
            // The role's own fault is reported already.
            (None, true) => None,
            (_, false) => self
                .parse::<JoinUrl>("cluster.join_url", &doc.join_url)
                .map(Some),
        };
        let vip = if doc.vip.is_empty() {
            Some(None)
        } else {
            self.ip("cluster.vip", &doc.vip).map(Some)
        };
        let tls_sans = self.tls_sans(&doc.tls_sans);

        let cluster_cidr = self.cidr(
            "cluster.cluster_cidr",
            &doc.cluster_cidr,
            defaults::CLUSTER_CIDR,
        );
        let mut service_cidr = self.cidr(
            "cluster.service_cidr",
            &doc.service_cidr,
            defaults::SERVICE_CIDR,
        );
        if let (Some(cluster), Some(service)) = (cluster_cidr, service_cidr)
            && nets_overlap(&cluster, &service)
        {
            self.fail(
                "cluster.service_cidr",
                format!("overlaps cluster.cluster_cidr ({cluster})"),
            );
            service_cidr = None;
        }
        ClusterParts {
            token,
            join_url,
            vip,
            tls_sans,
            cluster_cidr,
            service_cidr,
        }
    }

    fn token(&mut self, text: &str) -> Option<Secret> {
        const PATH: &str = "cluster.token";
        // Never quote the value: it is the cluster's secret.
        let problem = if text.is_empty() {
            "required".to_owned()
        } else if text == REDACTED {
            "is the redaction placeholder from `get spec`; supply the real token".to_owned()
        } else if text.len() > MAX_TOKEN_BYTES {
            format!("longer than {MAX_TOKEN_BYTES} bytes")
        } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            "must not contain whitespace or control characters".to_owned()
        } else {
            return Some(Secret::new(text));
        };
        self.fail(PATH, problem);
        None
    }

    fn tls_sans(&mut self, sans: &[String]) -> Option<Vec<Host>> {
        if !self.list_fits("cluster.tls_sans", sans.len(), MAX_TLS_SANS) {
            return None;
        }
        let mut seen = HashMap::new();
        let mut items = Vec::with_capacity(sans.len());
        for (i, text) in sans.iter().enumerate() {
            let path = format!("cluster.tls_sans[{i}]");
            let host = self.parse::<Host>(&path, text);
            let host = match host {
                Some(host) => match first_seen(&mut seen, host.clone(), i) {
                    Some(first) => {
                        self.fail(path, format!("duplicate of tls_sans[{first}]"));
                        None
                    }
                    None => Some(host),
                },
                None => None,
            };
            items.push(host);
        }
        items.into_iter().collect()
    }

    fn cidr(&mut self, path: &str, text: &str, default: &str) -> Option<IpNet> {
        let net = self.network(path, if text.is_empty() { default } else { text })?;
        self.not_reserved(path, &net).then_some(net)
    }
}
