//! Builds the eBPF programs (`ftptrace-ebpf`) with the nightly toolchain and
//! bpf-linker, so the object is embedded in the one `ftptrace` binary.
//! `AYA_BUILD_SKIP=1` skips it where only host code matters (the embedded
//! object is then empty and loading says so).
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    // The object's path must exist even when the build is skipped.
    let object = out_dir.join("ftptrace");
    if !object.exists() {
        fs::write(&object, b"").context("placeholder for the eBPF object")?;
    }
    let manifest_dir = env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = PathBuf::from(&manifest_dir).join("../ftptrace-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let common_dir = PathBuf::from(&manifest_dir).join("../ftptrace-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    aya_build::build_ebpf(
        [Package {
            name: "ftptrace-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
