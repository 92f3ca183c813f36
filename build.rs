//! Relinks vault-env when the static builds' linker (`scripts/link/rust-lld`, set in
//! `.cargo/config.toml`) or the hot functions it lays out first change: cargo tracks the linker's
//! name, not its files, so without this a changed wrapper or list would leave the old program.
fn main() {
    for file in ["scripts/link/rust-lld", "scripts/link/names.sed", "scripts/hot-functions.txt"] {
        println!("cargo:rerun-if-changed={file}");
    }
}
