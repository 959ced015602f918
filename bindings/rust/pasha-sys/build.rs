//! Finds libpasha with pkg-config: the installed `pasha` package, or the
//! `pasha-uninstalled` package of a meson build directory (set
//! `PKG_CONFIG_PATH=<build>/meson-uninstalled`), and tells cargo to link it.
//!
//! It also passes on, as `links = "pasha"` metadata, the library and header
//! directories: crates that depend on `pasha-sys` directly read them in their
//! own build scripts as `DEP_PASHA_LIBDIR` and `DEP_PASHA_INCLUDE` (e.g. to
//! put the library directory into their binaries' rpath; see README.md).
//! This crate's own tests get the rpath here, and the header directories as
//! the compile-time variable `PASHA_INCLUDE_DIRS` (the layout test).
//!
//! On docs.rs (`DOCS_RS` set) there is no libpasha: nothing is probed or
//! linked, so the documentation still builds.
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    if env::var_os("DOCS_RS").is_some() {
        println!("cargo:rustc-env=PASHA_INCLUDE_DIRS=");
        return;
    }
    let lib = pkg_config::Config::new()
        .atleast_version("0.1")
        .probe("pasha")
        .or_else(|_| pkg_config::Config::new().atleast_version("0.1").probe("pasha-uninstalled"))
        .unwrap_or_else(|e| {
            panic!(
                "libpasha not found by pkg-config ({e}); set PKG_CONFIG_PATH to the directory \
                 of pasha.pc, or to <meson build dir>/meson-uninstalled"
            )
        });
    let join = |paths: &[std::path::PathBuf]| {
        env::join_paths(paths).expect("a pkg-config path contains ':'").into_string().expect("a UTF-8 path")
    };
    // Metadata for direct dependents (DEP_PASHA_LIBDIR, DEP_PASHA_INCLUDE).
    println!("cargo:libdir={}", join(&lib.link_paths));
    println!("cargo:include={}", join(&lib.include_paths));
    println!("cargo:version={}", lib.version);
    // This crate's own tests: rpath, and where pasha.h is.
    for dir in &lib.link_paths {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    println!("cargo:rustc-env=PASHA_INCLUDE_DIRS={}", join(&lib.include_paths));
}
