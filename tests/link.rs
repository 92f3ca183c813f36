//! scripts/link/rust-lld, the static builds' linker, on small objects (and an archive) made here
//! with cc: the listed hot functions come first in the list's order, only in vault-env's program
//! (not in other programs or test harnesses), relative relocations are packed where musl's start
//! applies them, and a stale list is refused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Four functions in their own sections, in this order in the object: `demo::cold`,
/// `demo::second`, `demo::first` and (when `vault_env`) `vault_env::main`, with legacy Rust names
/// (hashes the list does not have), and a pointer in data: a relative relocation in a PIE. Beside
/// it, `libhot.a` holds a C function, `c_hot`, which `demo::first` calls.
fn object(dir: &Path, vault_env: bool) -> PathBuf {
    let main = if vault_env { r#"void vmain(void) __asm__("_ZN9vault_env4main17h0123456789abcdefE"); void vmain(void) { cold(); }"# } else { "" };
    let source = format!(
        r#"void cold(void) __asm__("_ZN4demo4cold17h1111111111111111E");
void second(void) __asm__("_ZN4demo6second17h2222222222222222E");
void first(void) __asm__("_ZN4demo5first17h3333333333333333E");
void c_hot(void);
void cold(void) {{ for (;;) {{}} }}
void second(void) {{ cold(); }}
void first(void) {{ second(); c_hot(); }}
{main}
void (*entry)(void) = first;
"#
    );
    let c = dir.join("demo.c");
    std::fs::write(&c, source).unwrap();
    let o = dir.join("demo.o");
    let out = Command::new("cc").args(["-c", "-O0", "-fPIE", "-ffunction-sections", "-o"]).arg(&o).arg(&c).output().unwrap();
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    let hot = dir.join("hot.c");
    std::fs::write(&hot, "void c_hot(void) {}\n").unwrap();
    let hot_o = dir.join("hot.o");
    assert!(Command::new("cc").args(["-c", "-fPIE", "-o"]).arg(&hot_o).arg(&hot).status().unwrap().success());
    assert!(Command::new("ar").arg("rcs").arg(dir.join("libhot.a")).arg(&hot_o).status().unwrap().success());
    o
}

/// The directory of the toolchain's own rust-lld (rustc puts it on its linker's PATH).
fn lld_dir() -> PathBuf {
    let rustc = crate::common::path_from_env("RUSTC").unwrap_or_else(|| "rustc".into());
    let text = |args: &[&str]| String::from_utf8(Command::new(&rustc).args(args).output().unwrap().stdout).unwrap();
    let host = text(&["-vV"]).lines().find_map(|l| l.strip_prefix("host: ")).unwrap().to_string();
    Path::new(text(&["--print", "sysroot"]).trim()).join("lib/rustlib").join(host).join("bin")
}

/// A `libc.a` in `dir/libc-SYMBOL`, defining SYMBOL: `statx` stands for musl 1.2.5's.
fn libc_with(dir: &Path, symbol: &str) -> PathBuf {
    let lib = dir.join(format!("libc-{symbol}"));
    std::fs::create_dir_all(&lib).unwrap();
    let c = lib.join("libc.c");
    std::fs::write(&c, format!("int {symbol}(void) {{ return 0; }}\n")).unwrap();
    let o = lib.join("libc.o");
    assert!(Command::new("cc").args(["-c", "-fPIC", "-o"]).arg(&o).arg(&c).status().unwrap().success());
    assert!(Command::new("ar").arg("rcs").arg(lib.join("libc.a")).arg(&o).status().unwrap().success());
    lib
}

/// Links `object` (and `more` arguments) into `dir/demo` (a static PIE) with the wrapper and
/// `list` as HOT_FUNCTIONS.
fn link(dir: &Path, object: &Path, more: &[&OsStr], list: &[&str]) -> Output {
    let hot = dir.join("hot.txt");
    std::fs::write(&hot, format!("# a comment line\n{}\n", list.join("\n"))).unwrap();
    wrapper("rust-lld")
        .args(["-flavor", "gnu", "-static", "-pie", "--no-dynamic-linker", "-e", "_ZN4demo5first17h3333333333333333E", "-o"])
        .arg(dir.join("demo"))
        .arg(object)
        .arg(dir.join("libhot.a"))
        .args(more)
        .env("HOT_FUNCTIONS", &hot)
        .output()
        .unwrap()
}

/// One of our linkers, scripts/link/NAME, with the toolchain's rust-lld on its PATH (as rustc runs it).
fn wrapper(name: &str) -> Command {
    let mut command = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/link").join(name));
    command.env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", lld_dir().display()));
    command
}

/// The demangled functions of `program` by address, without legacy hashes.
fn layout(program: &Path) -> Vec<String> {
    let out = Command::new("nm").args(["-n", "-C"]).arg(program).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().filter_map(|l| l.split_once(" T ").map(|(_, name)| name.split("::h").next().unwrap().to_string())).collect()
}

#[test]
fn vault_envs_hot_functions_come_first_in_the_lists_order_and_relocations_are_packed() {
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), true);
    let libc = libc_with(dir.path(), "statx");
    let out = link(dir.path(), &o, &["-L".as_ref(), libc.as_os_str()], &["vault_env::main", "demo::first", "c_hot", "demo::second", "demo::absent"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(layout(&dir.path().join("demo")), ["vault_env::main", "demo::first", "c_hot", "demo::second", "demo::cold"]);
    assert!(sections(&dir.path().join("demo")).contains(".relr.dyn"), "no packed relocations");
}

/// The section headers of `program`.
fn sections(program: &Path) -> String {
    String::from_utf8(Command::new("readelf").arg("-SW").arg(program).output().unwrap().stdout).unwrap()
}

#[test]
fn relocations_are_not_packed_for_a_musl_whose_start_cannot_apply_them() {
    // musl 1.2.3 (Rust 1.89 to 1.92) has no statx, and its static-PIE start no DT_RELR.
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), true);
    let libc = libc_with(dir.path(), "stat");
    let out = link(dir.path(), &o, &["-L".as_ref(), libc.as_os_str()], &["vault_env::main"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sections = sections(&dir.path().join("demo"));
    assert!(!sections.contains(".relr.dyn") && sections.contains(".rela.dyn"), "{sections}");
}

#[test]
fn other_programs_keep_their_own_layout() {
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), false);
    // Not vault-env (no vault_env::main): the list is not used, however stale.
    let out = link(dir.path(), &o, &[], &["demo::first", "demo::second", "demo::gone", "demo::also_gone", "demo::and_this"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(layout(&dir.path().join("demo")), ["demo::cold", "demo::second", "demo::first", "c_hot"]);
}

#[test]
fn test_harnesses_keep_their_own_layout() {
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), true);
    // vault-env's library tests define vault_env::main too; a test harness links libtest.
    let libtest = dir.path().join("libtest-0123.rlib");
    std::fs::write(&libtest, "!<arch>\n").unwrap();
    let out = link(dir.path(), &o, &[libtest.as_os_str()], &["demo::first", "demo::gone", "demo::also_gone", "demo::and_this"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(layout(&dir.path().join("demo")), ["demo::cold", "demo::second", "demo::first", "vault_env::main", "c_hot"]);
}

#[test]
fn a_stale_list_is_refused_and_names_the_script_that_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), true);
    let out = link(dir.path(), &o, &[], &["vault_env::main", "demo::gone", "demo::also_gone", "demo::and_this", "demo::first"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a list with 2 of its 5 functions in the link was accepted");
    assert!(stderr.contains("is stale: 2 of its 5 functions") && stderr.contains("scripts/hot-functions.sh"), "{stderr}");
    assert!(!dir.path().join("demo").exists(), "a program was written anyway");
}

/// musl's start files in `dir/crt`, each defining a function named after it (`crt1_o`,
/// `rcrt1_o`, `crtbeginS_o`…); without `rcrt1.o` (the static-PIE start) when `!static_pie_start`.
fn start_files(dir: &Path, static_pie_start: bool) -> PathBuf {
    let crt = dir.join("crt");
    std::fs::create_dir_all(&crt).unwrap();
    let files: &[&str] = if static_pie_start {
        &["crt1", "rcrt1", "crtbegin", "crtbeginS", "crtend", "crtendS"]
    } else {
        &["crt1", "crtbegin", "crtend", "crtbeginS", "crtendS"]
    };
    for name in files {
        let c = crt.join(format!("{name}.c"));
        std::fs::write(&c, format!("void {name}_o(void) {{}}\n")).unwrap();
        let out = Command::new("cc").args(["-c", "-fPIC", "-o"]).arg(crt.join(format!("{name}.o"))).arg(&c).output().unwrap();
        assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    }
    crt
}

/// Links `object` with the start files in `crt` as rustc links a plain static executable
/// (aarch64-unknown-linux-musl's: crt1.o, crtbegin.o, `-static`, crtend.o) and `more` arguments;
/// returns the ELF header and program headers (`readelf -hl`) and the functions of `dir/demo`.
fn link_static(dir: &Path, object: &Path, crt: &Path, more: &[&str]) -> (String, Vec<String>) {
    let out = wrapper("rust-lld")
        .args(["-flavor", "gnu"])
        .arg(crt.join("crt1.o"))
        .arg(crt.join("crtbegin.o"))
        .arg(object)
        .arg(dir.join("libhot.a"))
        .args(["-e", "_ZN4demo5first17h3333333333333333E", "-o"])
        .arg(dir.join("demo"))
        .arg("-static")
        .args(more)
        .arg(crt.join("crtend.o"))
        .env("HOT_FUNCTIONS", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let headers = Command::new("readelf").arg("-hlW").arg(dir.join("demo")).output().unwrap();
    (String::from_utf8(headers.stdout).unwrap(), layout(&dir.join("demo")))
}

#[test]
fn a_plain_static_link_becomes_a_static_pie_with_the_static_pie_start() {
    // aarch64-unknown-linux-musl's links: without this, a fixed address (no ASLR).
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), false);
    let crt = start_files(dir.path(), true);
    let (headers, functions) = link_static(dir.path(), &o, &crt, &[]);
    assert!(headers.contains("DYN (Position-Independent Executable file)"), "{headers}");
    assert!(!headers.contains("INTERP"), "a static PIE asks for no dynamic loader: {headers}");
    for start in ["rcrt1_o", "crtbeginS_o", "crtendS_o"] {
        assert!(functions.iter().any(|f| f == start), "{start} not linked: {functions:?}");
    }
    for plain in ["crt1_o", "crtbegin_o", "crtend_o"] {
        assert!(!functions.iter().any(|f| f == plain), "{plain} linked: {functions:?}");
    }
}

#[test]
fn a_static_link_stays_as_asked_without_the_static_pie_start_or_with_no_pie() {
    for (static_pie_start, more) in [(false, &[][..]), (true, &["--no-pie"][..])] {
        let dir = tempfile::tempdir().unwrap();
        let o = object(dir.path(), false);
        let crt = start_files(dir.path(), static_pie_start);
        let (headers, functions) = link_static(dir.path(), &o, &crt, more);
        assert!(headers.contains("EXEC (Executable file)"), "{static_pie_start} {more:?}: {headers}");
        assert!(functions.iter().any(|f| f == "crt1_o") && !functions.iter().any(|f| f == "rcrt1_o"), "{functions:?}");
    }
}

/// Links `object`, a `main` that returns 0 when the pointer in the object's data was relocated
/// and libgcc's unwinder walks its stack, and `libhot.a` into a dynamically linked PIE `dir/NAME`
/// with scripts/link/cc (the glibc build's linker) and libgcc_s asked for as rustc asks for it,
/// with rustc's own lld (`-fuse-ld=lld`, its gcc-ld directory) when `lld`; returns the layout of
/// the listed functions, the section headers and the libraries the program needs.
fn link_glibc(dir: &Path, object: &Path, name: &str, lld: bool, list: &[&str]) -> (Vec<String>, String, String) {
    let main = dir.join("main.c");
    std::fs::write(
        &main,
        r#"#include <unwind.h>
void first(void) __asm__("_ZN4demo5first17h3333333333333333E");
extern void (*entry)(void);
static _Unwind_Reason_Code frame(struct _Unwind_Context *context, void *frames) { (void)context; ++*(int *)frames; return _URC_NO_REASON; }
int main(void) { int frames = 0; _Unwind_Backtrace(frame, &frames); return entry == first && frames > 0 ? 0 : 1; }
"#,
    )
    .unwrap();
    let main_o = dir.join("main.o");
    assert!(Command::new("cc").args(["-c", "-fPIE", "-o"]).arg(&main_o).arg(&main).status().unwrap().success());
    let hot = dir.join("hot.txt");
    std::fs::write(&hot, format!("{}\n", list.join("\n"))).unwrap();
    let program = dir.join(name);
    let mut cc = wrapper("cc");
    cc.args(["-m64", "-pie", "-o"]).arg(&program).arg(object).arg(&main_o).arg(dir.join("libhot.a")).args(["-Wl,--no-as-needed", "-lgcc_s"]);
    if lld {
        cc.arg(format!("-B{}", lld_dir().join("gcc-ld").display())).arg("-fuse-ld=lld");
    }
    let out = cc.env("HOT_FUNCTIONS", &hot).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&program).status().unwrap();
    assert!(run.success(), "{name}: {run} (its relocations were not applied, or it could not unwind)");
    let ours = layout(&program).into_iter().filter(|name| name.starts_with("demo::") || name == "vault_env::main" || name == "c_hot").collect();
    let dynamic = Command::new("readelf").arg("-dW").arg(&program).output().unwrap().stdout;
    let needed = String::from_utf8(dynamic).unwrap().lines().filter(|l| l.contains("(NEEDED)")).collect::<Vec<_>>().join("\n");
    (ours, sections(&program), needed)
}

/// Whether this machine's glibc applies packed relative relocations (2.36 and newer).
fn glibc_applies_relr() -> bool {
    let libc = Command::new("cc").arg("-print-file-name=libc.so.6").output().unwrap();
    let libc = String::from_utf8(libc.stdout).unwrap();
    let versions = Command::new("objdump").arg("-p").arg(libc.trim()).output().unwrap();
    String::from_utf8_lossy(&versions.stdout).contains("GLIBC_ABI_DT_RELR")
}

#[test]
fn the_glibc_builds_linker_lays_out_vault_envs_program_when_cc_links_with_lld() {
    let dir = tempfile::tempdir().unwrap();
    let o = object(dir.path(), true);
    let list = ["vault_env::main", "demo::first", "c_hot", "demo::second"];
    // cargo's name for vault-env's program: deps/vault_env-HASH
    let (layout, sections, needed) = link_glibc(dir.path(), &o, "vault_env-0123", true, &list);
    assert_eq!(layout, ["vault_env::main", "demo::first", "c_hot", "demo::second", "demo::cold"]);
    assert_eq!(sections.contains(".relr.dyn"), glibc_applies_relr(), "{sections}");
    assert!(needed.contains("libc.so.6") && !needed.contains("libgcc_s"), "the unwinder is linked in: {needed}");
}

#[test]
fn the_glibc_builds_linker_leaves_other_links_as_they_are() {
    let list = ["vault_env::main", "demo::first", "c_hot", "demo::second"];
    // another program (a build script, a test, the webhook); vault-env's with GNU ld, which gets
    // only the unwinder linked in
    for (name, lld) in [("build_script_build-0123", true), ("vault_env-0123", false)] {
        let dir = tempfile::tempdir().unwrap();
        let o = object(dir.path(), true);
        let (layout, sections, needed) = link_glibc(dir.path(), &o, name, lld, &list);
        assert_eq!(layout, ["demo::cold", "demo::second", "demo::first", "vault_env::main", "c_hot"], "{name}, lld: {lld}");
        assert!(!sections.contains(".relr.dyn"), "{name}, lld: {lld}: {sections}");
        assert_eq!(needed.contains("libgcc_s"), !name.starts_with("vault_env-"), "{name}, lld: {lld}: {needed}");
    }
}
