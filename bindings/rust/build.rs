//! Finds libpasha with pkg-config: the installed `pasha` package, or the
//! `pasha-uninstalled` package of a meson build directory (set
//! `PKG_CONFIG_PATH=<build>/meson-uninstalled`). The library directories
//! are added to the rpath of tests, examples and binaries, so they run
//! without `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let lib = pkg_config::Config::new()
        .atleast_version("0.1")
        .probe("pasha")
        .or_else(|_| pkg_config::Config::new().probe("pasha-uninstalled"))
        .unwrap_or_else(|e| {
            panic!(
                "libpasha not found by pkg-config ({e}); set PKG_CONFIG_PATH to the directory \
                 of pasha.pc, or to <meson build dir>/meson-uninstalled"
            )
        });
    for dir in &lib.link_paths {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
