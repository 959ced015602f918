//! Finds libpasha, or builds it from the sources in this crate:
//!
//! * with the `bundled` feature: always compiles the engine
//!   (`libpasha/src/*.cc`, `libpasha/include/pasha/*.h`) with the `cc`
//!   crate into a static library linked into the program;
//! * without it: pkg-config, the installed `pasha` package or the
//!   `pasha-uninstalled` package of a meson build directory (set
//!   `PKG_CONFIG_PATH=<build>/meson-uninstalled`), and links `libpasha.so`;
//!   when pkg-config finds neither, it builds the bundled engine as above
//!   (with a cargo warning saying so).
//!
//! It also passes on, as `links = "pasha"` metadata, the library and header
//! directories: crates that depend on `pasha-sys` directly read them in their
//! own build scripts as `DEP_PASHA_LIBDIR` (empty when bundled: nothing to
//! find at run time) and `DEP_PASHA_INCLUDE` (e.g. to put the library
//! directory into their binaries' rpath; see README.md). This crate's own
//! tests get the rpath here, and the header directories as the compile-time
//! variable `PASHA_INCLUDE_DIRS` (the layout test).
//!
//! On docs.rs (`DOCS_RS` set) nothing is probed, built or linked, so the
//! documentation still builds.
use std::env;
use std::path::{Path, PathBuf};

fn join(paths: &[PathBuf]) -> String {
    env::join_paths(paths).expect("a path contains ':'").into_string().expect("a UTF-8 path")
}

/// Compile the engine into a static library with `cc`; return the header
/// directory.
fn build_bundled() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("libpasha");
    let include = root.join("include");
    let src = root.join("src");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap_or_else(|e| panic!("the bundled sources {}: {e}", src.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cc"))
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no bundled sources in {}", src.display());
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", include.display());
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .files(&sources)
        .include(&include)
        .define("_GNU_SOURCE", None)
        // The version the library reports is the header's (pasha_version.h).
        .define("PASHA_VERSION", "PSH_VERSION_STRING")
        .flag_if_supported("-fvisibility=hidden")
        .warnings(false)
        .compile("pasha");
    // libstdc++ is linked by cc (cpp(true)); the engine also needs these.
    for lib in ["pthread", "rt", "m"] {
        println!("cargo:rustc-link-lib={lib}");
    }
    include
}

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    if env::var_os("DOCS_RS").is_some() {
        println!("cargo:rustc-env=PASHA_INCLUDE_DIRS=");
        return;
    }
    let probe = |name: &str| pkg_config::Config::new().atleast_version("0.1").probe(name);
    let found = if env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        None
    } else {
        match probe("pasha").or_else(|_| probe("pasha-uninstalled")) {
            Ok(lib) => Some(lib),
            Err(e) => {
                println!(
                    "cargo:warning=libpasha not found by pkg-config ({}); building the bundled engine \
                     (set PKG_CONFIG_PATH to the directory of pasha.pc to use an installed libpasha)",
                    e.to_string().lines().next().unwrap_or("")
                );
                None
            }
        }
    };
    match found {
        Some(lib) => {
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
        None => {
            let include = build_bundled();
            println!("cargo:libdir=");
            println!("cargo:include={}", include.display());
            println!("cargo:bundled=1");
            println!("cargo:rustc-env=PASHA_INCLUDE_DIRS={}", include.display());
        }
    }
}
