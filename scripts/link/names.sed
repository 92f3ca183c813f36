# The name of a function in scripts/hot-functions.txt, from c++filt's demangled name (sed -E): without
# the parts that change with versions and builds, so the list outlives dependency and compiler
# updates. Used by scripts/link/rust-lld and scripts/hot-functions.sh.
# a legacy Rust symbol's hash
s/::h[0-9a-f]{16}$//
# a v0 Rust symbol's crate disambiguators
s/\[[0-9a-f]+\]//g
# ring's version in its C and assembly names (ring_core_0_17_14__x25519_…)
s/^ring_core_[0-9_]+__/ring_core__/
