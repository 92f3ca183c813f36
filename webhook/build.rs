//! Relinks the webhook when the static builds' linker (`scripts/link/rust-lld`, set in
//! `.cargo/config.toml`) changes: cargo tracks the linker's name, not its file.
fn main() {
    println!("cargo:rerun-if-changed=../scripts/link/rust-lld");
}
