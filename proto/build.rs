//! Compiles `concord/v1/*.proto` with protox, a pure-Rust protobuf compiler, so a fresh machine
//! builds Concord with cargo alone (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "concord/v1/catalog.proto",
        "concord/v1/operator.proto",
        "concord/v1/federation.proto",
        "concord/v1/governance.proto",
        "concord/v1/jobs.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
