//! Raw declarations of the libpasha C API (`include/pasha/pasha.h`), one to
//! one: every function, struct, callback type and constant of the header,
//! generated from it by bindgen (`src/bindings.rs`, checked in, so that
//! building this crate needs no libclang; CI regenerates it with
//! `bindings/rust/bindgen` and fails when the text differs). The docs are
//! the header's comments. Everything here is `unsafe` to call; the safe API
//! is the `pasha` crate.
//!
//! The version constants (`PSH_VERSION_*`) are those of the header this
//! crate was generated from; `psh_version_number()` is the library's at run
//! time.
//!
//! The layout test (`tests/layout.rs`, after git2-rs's systest) compiles a
//! small C program that prints `sizeof`, `_Alignof` and `offsetof` of every
//! struct and the value of every constant, and compares them with
//! `size_of`, `align_of` and `offset_of!` here.
//!
//! Linking: `build.rs` finds libpasha with pkg-config, or compiles the
//! engine bundled in this crate (the `bundled` feature, or when pkg-config
//! finds nothing); see README.md.
#![no_std]
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]

// Enumerators and macros without a comment in the header have no doc.
#[allow(missing_docs)]
mod bindings {
    include!("bindings.rs");
}
pub use bindings::*;
