//! Generates Rust code for keel's protobuf definitions with `tonic-prost-build`,
//! using the `protoc` binary shipped by `protoc-bin-vendored` so a fresh
//! machine needs nothing but cargo.

use std::error::Error;

const PROTOS: &[&str] = &[
    "proto/mvccpb/kv.proto",
    "proto/authpb/auth.proto",
    "proto/etcdserverpb/rpc.proto",
    "proto/v3lockpb/v3lock.proto",
    "proto/v3electionpb/v3election.proto",
    "proto/keel/peer.proto",
    "proto/keel/admin.proto",
];

/// Messages with a `password` field: their Debug is written by hand.
const REDACTED: &[&str] = &[
    ".etcdserverpb.AuthenticateRequest",
    ".etcdserverpb.AuthUserAddRequest",
    ".etcdserverpb.AuthUserChangePasswordRequest",
    ".authpb.User",
];

fn main() -> Result<(), Box<dyn Error>> {
    // Edition 2021: `set_var` is a safe function. prost-build reads PROTOC.
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);

    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .emit_rerun_if_changed(false)
        // Messages that carry a password get a hand-written Debug that hides
        // it (keel-proto's `redacted` module), so no log can show one.
        .skip_debug(REDACTED)
        .compile_protos(PROTOS, &["proto"])?;
    Ok(())
}
