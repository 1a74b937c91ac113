//! The manifests k3s deploys for each add-on, rendered from typed values.
//! Each add-on owns a fixed set of files in k3s's `server/manifests`
//! directory; the chart versions are pinned in [`CHARTS`], in one place.
//!
//! A chart and the resources its CRDs define go in separate files: k3s
//! applies each file as a whole and retries a failed one, so the resources
//! land once the chart has installed their CRDs, without holding the chart
//! up.

use std::collections::BTreeMap;

use serde::Serialize;

use tfagent_spec::{AcmeServer, Addons};

/// Every file name the agent owns starts with this, so it never touches
/// k3s's own manifests or a person's.
pub const FILE_PREFIX: &str = "tfagent-";

/// Whether the file `name` of the manifests directory is the agent's.
pub fn is_owned(name: &str) -> bool {
    name.starts_with(FILE_PREFIX) && name.ends_with(".yaml")
}

/// A Helm chart, pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chart {
    pub name: &'static str,
    pub repo: &'static str,
    pub version: &'static str,
    pub namespace: &'static str,
}

pub const METALLB: Chart = Chart {
    name: "metallb",
    repo: "https://metallb.github.io/metallb",
    version: "0.14.9",
    namespace: "metallb-system",
};
pub const INGRESS_NGINX: Chart = Chart {
    name: "ingress-nginx",
    repo: "https://kubernetes.github.io/ingress-nginx",
    version: "4.12.1",
    namespace: "ingress-nginx",
};
pub const CERT_MANAGER: Chart = Chart {
    name: "cert-manager",
    repo: "https://charts.jetstack.io",
    version: "v1.17.2",
    namespace: "cert-manager",
};
pub const LONGHORN: Chart = Chart {
    name: "longhorn",
    repo: "https://charts.longhorn.io",
    version: "1.8.1",
    namespace: "longhorn-system",
};

/// Every chart the agent deploys, for `info` and the README.
pub const CHARTS: [Chart; 4] = [METALLB, INGRESS_NGINX, CERT_MANAGER, LONGHORN];

/// The ingress class ingress-nginx serves and cert-manager solves through.
const INGRESS_CLASS: &str = "nginx";
/// The name of MetalLB's pool and announcement.
const METALLB_POOL: &str = "tfagent";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("rendering {file}: {source}")]
    Yaml {
        file: &'static str,
        source: serde_yaml_ng::Error,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: &'static str,
    /// `None` for cluster-scoped resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<&'static str, &'static str>,
}

impl Metadata {
    fn new(name: &'static str, namespace: &'static str) -> Self {
        Self {
            namespace: Some(namespace),
            ..Self::cluster_scoped(name)
        }
    }

    fn cluster_scoped(name: &'static str) -> Self {
        Self {
            name,
            namespace: None,
            labels: BTreeMap::from([("app.kubernetes.io/managed-by", "tfagent")]),
        }
    }
}

/// A resource: apiVersion, kind, metadata, spec.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource<S: Serialize> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

/// k3s's helm controller resource (`helm.cattle.io/v1`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HelmChartSpec {
    repo: &'static str,
    chart: &'static str,
    version: &'static str,
    target_namespace: &'static str,
    create_namespace: bool,
    /// The chart's values, as the YAML text the helm controller expects.
    #[serde(skip_serializing_if = "String::is_empty")]
    values_content: String,
}

fn helm_chart<V: Serialize>(
    file: &'static str,
    chart: Chart,
    values: Option<&V>,
) -> Result<String, RenderError> {
    let values_content = match values {
        Some(values) => yaml(file, values)?,
        None => String::new(),
    };
    yaml(
        file,
        &Resource {
            api_version: "helm.cattle.io/v1",
            kind: "HelmChart",
            // The helm controller watches kube-system.
            metadata: Metadata::new(chart.name, "kube-system"),
            spec: HelmChartSpec {
                repo: chart.repo,
                chart: chart.name,
                version: chart.version,
                target_namespace: chart.namespace,
                create_namespace: true,
                values_content,
            },
        },
    )
}

fn yaml<T: Serialize>(file: &'static str, value: &T) -> Result<String, RenderError> {
    serde_yaml_ng::to_string(value).map_err(|source| RenderError::Yaml { file, source })
}

/// Joins YAML documents into one file.
fn documents(docs: &[String]) -> String {
    let mut text =
        String::from("# Written by tfagent from the node spec; edits are overwritten.\n");
    for doc in docs {
        text.push_str("---\n");
        text.push_str(doc);
    }
    text
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressNginxValues {
    controller: IngressController,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressController {
    service: IngressService,
    ingress_class_resource: IngressClassResource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressService {
    /// MetalLB gives it an address.
    #[serde(rename = "type")]
    kind: &'static str,
    /// Keeps clients' source addresses (MetalLB L2 sends traffic to the
    /// announcing node).
    external_traffic_policy: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IngressClassResource {
    name: &'static str,
    default: bool,
}

#[derive(Serialize)]
struct CertManagerValues {
    crds: Enabled,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LonghornValues {
    default_settings: LonghornSettings,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LonghornSettings {
    default_data_path: String,
}

#[derive(Serialize)]
struct IpAddressPoolSpec {
    addresses: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct L2AdvertisementSpec {
    ip_address_pools: Vec<&'static str>,
    interfaces: Vec<String>,
}

#[derive(Serialize)]
struct ClusterIssuerSpec {
    acme: Acme,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Acme {
    email: String,
    server: &'static str,
    private_key_secret_ref: SecretRef,
    solvers: Vec<Solver>,
}

#[derive(Serialize)]
struct SecretRef {
    name: &'static str,
}

#[derive(Serialize)]
struct Solver {
    http01: Http01,
}

#[derive(Serialize)]
struct Http01 {
    ingress: SolverIngress,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SolverIngress {
    ingress_class_name: &'static str,
}

/// The ClusterIssuer's name for a directory, as Ingresses refer to it
/// (`cert-manager.io/cluster-issuer: letsencrypt-staging`).
pub fn issuer_name(server: AcmeServer) -> &'static str {
    match server {
        AcmeServer::Staging => "letsencrypt-staging",
        AcmeServer::Production => "letsencrypt-production",
    }
}

/// The files the add-ons of `addons` need, by file name; the add-ons that
/// are off have none. local-path is k3s's own provisioner, configured
/// through k3s's config, so it has no file here.
pub fn render(addons: &Addons) -> Result<BTreeMap<&'static str, String>, RenderError> {
    let mut files = BTreeMap::new();
    if let Some(metallb) = &addons.metallb {
        const CHART: &str = "tfagent-metallb.yaml";
        const CONFIG: &str = "tfagent-metallb-config.yaml";
        files.insert(CHART, documents(&[helm_chart::<()>(CHART, METALLB, None)?]));
        let pool = yaml(
            CONFIG,
            &Resource {
                api_version: "metallb.io/v1beta1",
                kind: "IPAddressPool",
                metadata: Metadata::new(METALLB_POOL, METALLB.namespace),
                spec: IpAddressPoolSpec {
                    addresses: metallb.addresses.iter().map(ToString::to_string).collect(),
                },
            },
        )?;
        let announcement = yaml(
            CONFIG,
            &Resource {
                api_version: "metallb.io/v1beta1",
                kind: "L2Advertisement",
                metadata: Metadata::new(METALLB_POOL, METALLB.namespace),
                spec: L2AdvertisementSpec {
                    ip_address_pools: vec![METALLB_POOL],
                    interfaces: vec![metallb.interface.to_string()],
                },
            },
        )?;
        files.insert(CONFIG, documents(&[pool, announcement]));
    }
    if addons.ingress_nginx {
        const CHART: &str = "tfagent-ingress-nginx.yaml";
        let values = IngressNginxValues {
            controller: IngressController {
                service: IngressService {
                    kind: "LoadBalancer",
                    external_traffic_policy: "Local",
                },
                ingress_class_resource: IngressClassResource {
                    name: INGRESS_CLASS,
                    default: true,
                },
            },
        };
        files.insert(
            CHART,
            documents(&[helm_chart(CHART, INGRESS_NGINX, Some(&values))?]),
        );
    }
    if let Some(cert_manager) = &addons.cert_manager {
        const CHART: &str = "tfagent-cert-manager.yaml";
        const ISSUER: &str = "tfagent-cert-manager-issuer.yaml";
        let values = CertManagerValues {
            crds: Enabled { enabled: true },
        };
        files.insert(
            CHART,
            documents(&[helm_chart(CHART, CERT_MANAGER, Some(&values))?]),
        );
        let name = issuer_name(cert_manager.server);
        let issuer = Resource {
            api_version: "cert-manager.io/v1",
            kind: "ClusterIssuer",
            metadata: Metadata::cluster_scoped(name),
            spec: ClusterIssuerSpec {
                acme: Acme {
                    email: cert_manager.email.clone(),
                    server: cert_manager.server.directory_url(),
                    private_key_secret_ref: SecretRef {
                        name: match cert_manager.server {
                            AcmeServer::Staging => "letsencrypt-staging-account",
                            AcmeServer::Production => "letsencrypt-production-account",
                        },
                    },
                    solvers: vec![Solver {
                        http01: Http01 {
                            ingress: SolverIngress {
                                ingress_class_name: INGRESS_CLASS,
                            },
                        },
                    }],
                },
            },
        };
        files.insert(ISSUER, documents(&[yaml(ISSUER, &issuer)?]));
    }
    if let Some(longhorn) = &addons.longhorn {
        const CHART: &str = "tfagent-longhorn.yaml";
        let values = LonghornValues {
            default_settings: LonghornSettings {
                default_data_path: longhorn.data_path.to_string(),
            },
        };
        files.insert(
            CHART,
            documents(&[helm_chart(CHART, LONGHORN, Some(&values))?]),
        );
    }
    Ok(files)
}
