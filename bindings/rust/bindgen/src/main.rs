//! Generates `bindings/rust/pasha-sys/src/bindings.rs` from the public C
//! header `include/pasha/pasha.h` (and the `pasha_version.h` it includes):
//! every `psh_*` function, struct, callback type and every `PSH_*` constant,
//! with the header's `/** */` comments as their docs.
//!
//! `--check` writes nothing: it fails, naming the first differing line,
//! when the checked-in file is not what the header gives (CI runs it, so a
//! header change that is not regenerated fails there).
//!
//! libclang is loaded at run time (Debian: libclang-dev, or libclang1-N
//! with LIBCLANG_PATH set to its directory).
use std::path::PathBuf;
use std::process::ExitCode;

const NOTICE: &str = "// Generated from include/pasha/pasha.h by bindings/rust/bindgen \
(`cargo run --manifest-path bindings/rust/bindgen/Cargo.toml`): do not edit.";

fn generate(root: &std::path::Path) -> String {
    let include = root.join("include");
    let header = include.join("pasha/pasha.h");
    let bindings = bindgen::Builder::default()
        .header(header.to_str().expect("a UTF-8 path"))
        .clang_arg(format!("-I{}", include.display()))
        // Only what the header declares, not what it includes from libc.
        .allowlist_function("psh_.*")
        .allowlist_type("psh_.*")
        .allowlist_var("PSH_.*")
        // `typedef enum { ... } psh_kind;` becomes `pub type psh_kind = ...;`
        // and one constant per enumerator, as C sees them.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .use_core()
        .ctypes_prefix("::core::ffi")
        .layout_tests(false) // tests/layout.rs compiles C instead, on every target
        .derive_debug(true)
        .derive_copy(true)
        .derive_default(false)
        .generate_comments(true)
        .merge_extern_blocks(true)
        .sort_semantically(false)
        .formatter(bindgen::Formatter::Prettyplease)
        .rust_target(bindgen::RustTarget::stable(77, 0).expect("a Rust version bindgen knows"))
        .generate_cstr(true)
        .parse_callbacks(Box::new(Comments))
        .raw_line(NOTICE)
        .generate()
        .expect("bindgen could not read include/pasha/pasha.h");
    let text = bindings.to_string();
    // An anonymous enum (`enum { PSH_OK = 0, ... }`) gets a made-up type
    // name; its constants are plain C ints (as every enumerator is in C).
    let mut out = text;
    for name in anon_types(&out) {
        let alias = format!("pub type {name} = ");
        while let Some(at) = out.find(&alias) {
            let end = at + out[at..].find('\n').expect("a line end") + 1;
            out.replace_range(at..end, "");
        }
        out = out.replace(&name, "::core::ffi::c_int");
    }
    opaque_docs(&out)
}

/// bindgen gives an opaque struct (`typedef struct psh_context
/// psh_context;`) no doc, or the doc of a neighbouring declaration: replace
/// it with a pointer to the typedef's.
fn opaque_docs(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let src: Vec<&str> = text.lines().collect();
    for (i, line) in src.iter().enumerate() {
        let opaque = line.starts_with("pub struct psh_")
            && line.ends_with(" {")
            && src.get(i + 1).is_some_and(|l| l.trim() == "_unused: [u8; 0],");
        if opaque {
            // Drop the attributes and doc lines above, then write them again.
            let mut attrs = Vec::new();
            while let Some(prev) = lines.last() {
                if prev.starts_with("#[") {
                    attrs.push(lines.pop().expect("a line"));
                } else if prev.starts_with("///") {
                    lines.pop();
                } else if prev.ends_with("*/") {
                    while let Some(l) = lines.pop() {
                        if l.starts_with("/**") {
                            break;
                        }
                    }
                } else {
                    break;
                }
            }
            let name = &line["pub struct ".len()..line.len() - 2];
            lines.push(format!("/// The opaque `{name}` (see its typedef in pasha.h); used through pointers only."));
            lines.extend(attrs.into_iter().rev());
        }
        lines.push(line.to_string());
    }
    lines.join("\n") + "\n"
}

/// The header's trailing comments (`/**< ... */`) keep their `<` in
/// bindgen; and the comments are read as Markdown by rustdoc.
#[derive(Debug)]
struct Comments;

impl bindgen::callbacks::ParseCallbacks for Comments {
    fn process_comment(&self, comment: &str) -> Option<String> {
        let c = comment.trim_start();
        let text = match c.strip_prefix('<') {
            Some(rest) => format!(" {}", rest.trim_start()),
            None => comment.to_string(),
        };
        // C comments are not Markdown: `strides[0]` and `[begin, end)` are
        // no links, `<stdio.h>` no HTML.
        Some(text.replace('[', "\\[").replace(']', "\\]").replace('<', "&lt;").replace('>', "&gt;"))
    }
}

/// The names bindgen made up for anonymous enums (`_bindgen_ty_N`).
fn anon_types(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .match_indices("_bindgen_ty_")
        .map(|(at, _)| {
            let digits: String = text[at + 12..].chars().take_while(|c| c.is_ascii_digit()).collect();
            format!("_bindgen_ty_{digits}")
        })
        .collect();
    names.sort();
    names.dedup();
    // Longest first, so that _bindgen_ty_1 does not eat into _bindgen_ty_10.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names
}

/// The `facts! { ... }` list of `tests/layout.rs`: every struct of the
/// bindings with its fields, every enum type, every constant.
fn layout_facts(bindings: &str) -> String {
    let mut structs: Vec<(String, Vec<String>)> = Vec::new();
    let (mut enums, mut consts, mut strings) = (Vec::new(), Vec::new(), Vec::new());
    let mut lines = bindings.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("pub struct ").and_then(|r| r.strip_suffix(" {")) {
            let mut fields = Vec::new();
            for l in lines.by_ref() {
                if l == "}" {
                    break;
                }
                if let Some(f) = l.trim_start().strip_prefix("pub ").and_then(|r| r.split(':').next()) {
                    if l.starts_with("    pub ") {
                        fields.push(f.to_string());
                    }
                }
            }
            if !fields.is_empty() {
                structs.push((name.to_string(), fields));
            }
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            let (name, ty) = rest.split_once(": ").expect("pub const NAME: TYPE");
            if ty.starts_with("&::core::ffi::CStr") {
                strings.push(name.to_string());
            } else {
                consts.push(name.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("pub type ") {
            let (name, ty) = rest.split_once(" = ").expect("pub type NAME = TYPE");
            if ty.starts_with("::core::ffi::c_") {
                enums.push(name.to_string());
            }
        }
    }
    let mut out = String::from("// Generated with src/bindings.rs by bindings/rust/bindgen: do not edit.\nfacts! {\n    structs {\n");
    for (name, fields) in &structs {
        out += &format!("        {name} {{ {} }}\n", fields.join(", "));
    }
    out += &format!("    }}\n    enums {{ {} }}\n", enums.join(", "));
    out += &format!("    consts {{ {} }}\n", consts.join(", "));
    out += &format!("    strings {{ {} }}\n}}\n", strings.join(", "));
    out
}

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().expect("the repository root");
    let text = generate(&root);
    let facts = layout_facts(&text);
    let mut stale = false;
    for (file, text) in [("src/bindings.rs", &text), ("tests/layout/facts.rs", &facts)] {
        let target = root.join("bindings/rust/pasha-sys").join(file);
        if !check {
            std::fs::write(&target, text).unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
            println!("wrote {}", target.display());
        } else if !same(&target, text) {
            stale = true;
        }
    }
    if stale {
        return ExitCode::FAILURE;
    }
    if check {
        println!("pasha-sys/src/bindings.rs and tests/layout/facts.rs are what include/pasha/pasha.h gives");
    }
    ExitCode::SUCCESS
}

/// Whether the checked-in `target` is `text`; if not, say where they differ.
fn same(target: &std::path::Path, text: &str) -> bool {
    let old = std::fs::read_to_string(target).unwrap_or_default();
    if old == text {
        return true;
    }
    let (n, (a, b)) = old
        .lines()
        .chain(std::iter::repeat(""))
        .zip(text.lines().chain(std::iter::repeat("")))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((0, ("", "")));
    eprintln!(
        "{} is stale: line {}: checked in {:?}, the header gives {:?}\n\
         regenerate it: cargo run --manifest-path bindings/rust/bindgen/Cargo.toml",
        target.display(),
        n + 1,
        a,
        b
    );
    false
}
