//! Generates the tfagent.v1 code with protox, a protobuf compiler in Rust, so
//! a fresh machine needs no system `protoc`.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["tfagent/v1/agent.proto"];
    let includes = ["proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }

    let descriptors = protox::compile(protos, includes)?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    // Served by gRPC reflection so grpcurl and friends need no .proto files.
    fs::write(
        out_dir.join("tfagent_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // Channels are made by the callers (unix socket, mutual TLS): no
    // generated `connect`, so the crate needs no tonic transport.
    tonic_prost_build::configure()
        .build_transport(false)
        // ClusterSpec carries the cluster token: its Debug is written by hand
        // so the secret never reaches a log.
        .skip_debug([".tfagent.v1.ClusterSpec"])
        .compile_fds(descriptors)?;

    // containerd's Version service: the client the supervisor asks whether
    // its containerd is ready. Kept out of the reflection descriptor set.
    let containerd = ["containerd/services/version/v1/version.proto"];
    for proto in containerd {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    tonic_prost_build::configure()
        .build_transport(false)
        .build_server(false)
        .compile_fds(protox::compile(containerd, includes)?)?;
    Ok(())
}
