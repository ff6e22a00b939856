//! Compiles the `.proto` files with protox (pure Rust): building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/downpour/v1/parameter_server.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        // Decode failures are the sender's fault: INVALID_ARGUMENT (see src/codec.rs).
        .codec_path("crate::codec::ProtoCodec")
        .compile_fds(descriptors)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
