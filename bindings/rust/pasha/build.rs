//! Puts the directory of libpasha (found by `pasha-sys`'s build script, and
//! passed on as `DEP_PASHA_LIBDIR`) into the rpath of this crate's tests and
//! examples, so they run without `LD_LIBRARY_PATH`. (Cargo applies
//! `rustc-link-arg` only to the package's own targets: a consumer crate
//! needs its own rpath, ldconfig or LD_LIBRARY_PATH; see README.md.)
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_PASHA_LIBDIR");
    if let Some(dirs) = std::env::var_os("DEP_PASHA_LIBDIR") {
        for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}
