//! Relinks vault-env when its linkers (`scripts/link/`, set in `.cargo/config.toml`) or the hot
//! functions they lay out first change: cargo tracks a linker's name, not its files, so without
//! this a changed wrapper or list would leave the old program.
fn main() {
    for file in ["scripts/link/rust-lld", "scripts/link/cc", "scripts/link/hot-order", "scripts/link/names.sed", "scripts/hot-functions.txt"] {
        println!("cargo:rerun-if-changed={file}");
    }
}
