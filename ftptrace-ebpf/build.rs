//! Rebuild the programs when bpf-linker changes (e.g. after `cargo xtask setup`
//! rebuilt it against a new nightly): the linker is not a cargo dependency.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
