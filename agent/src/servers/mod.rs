//! What the agent serves: the gRPC API ([`grpc`]: `tfagent.v1.NodeAgent`,
//! health, reflection) and the Prometheus endpoint ([`metrics`]), both
//! thin shells over the control core.

pub mod grpc;
pub mod metrics;
