//! The rpath recipe of bindings/rust/pasha/README.md: depend on `pasha-sys`
//! and put the directory it found libpasha in into this binary's rpath.
fn main() {
    if let Some(dirs) = std::env::var_os("DEP_PASHA_LIBDIR") {
        for dir in std::env::split_paths(&dirs) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}
