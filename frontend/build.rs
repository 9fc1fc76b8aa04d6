//! Compiles proto/thaw.proto with protox (pure Rust, no system protoc) and tonic-prost-build.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/thaw.proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).open_file("thaw.proto")?;
    // Through bytes, so protox's prost-types version need not match tonic-prost-build's.
    let fds = tonic_prost_build::FileDescriptorSet::decode(
        compiler.encode_file_descriptor_set().as_slice(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
