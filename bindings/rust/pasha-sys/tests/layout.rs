//! The declarations of `pasha-sys` against `pasha.h`, in the manner of
//! git2-rs's systest:
//!
//! * a C program built from the header prints `sizeof`, `_Alignof` and
//!   `offsetof` of every struct and enum type and the value of every
//!   constant; they must equal `size_of`, `align_of`, `offset_of!` and the
//!   constants of this crate;
//! * the header is parsed: its structs (with every field), enum constants,
//!   enum types, prototypes and callback types must be exactly the ones
//!   declared here, with the same types (C types translated to Rust ones).
//!
//! `header_drift_is_caught` runs the same check on a doctored copy of the
//! header and asserts that each change is reported.
use pasha_sys as sys;
use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The declarations of this crate, one line per fact, as the C program prints them.
macro_rules! facts {
    (structs { $($s:ident { $($f:ident),* })* } enums { $($e:ident),* } consts { $($c:ident),* } strings { $($t:ident),* }) => {
        fn rust_facts() -> BTreeMap<String, String> {
            let mut m = BTreeMap::new();
            $(
                m.insert(format!("size {}", stringify!($s)), size_of::<sys::$s>().to_string());
                m.insert(format!("align {}", stringify!($s)), align_of::<sys::$s>().to_string());
                $( m.insert(format!("offset {}.{}", stringify!($s), stringify!($f)), offset_of!(sys::$s, $f).to_string()); )*
            )*
            $(
                m.insert(format!("size {}", stringify!($e)), size_of::<sys::$e>().to_string());
                m.insert(format!("align {}", stringify!($e)), align_of::<sys::$e>().to_string());
            )*
            $( m.insert(format!("const {}", stringify!($c)), (sys::$c as i128).to_string()); )*
            $( m.insert(format!("string {}", stringify!($t)), sys::$t.to_str().unwrap().to_string()); )*
            m
        }
        fn c_program() -> String {
            let mut p = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <pasha/pasha.h>\nint main(void) {\n");
            $(
                p += &format!("printf(\"size {0} %zu\\n\", sizeof({0}));\n", stringify!($s));
                p += &format!("printf(\"align {0} %zu\\n\", (size_t)_Alignof({0}));\n", stringify!($s));
                $( p += &format!("printf(\"offset {0}.{1} %zu\\n\", offsetof({0}, {1}));\n", stringify!($s), stringify!($f)); )*
            )*
            $(
                p += &format!("printf(\"size {0} %zu\\n\", sizeof({0}));\n", stringify!($e));
                p += &format!("printf(\"align {0} %zu\\n\", (size_t)_Alignof({0}));\n", stringify!($e));
            )*
            $( p += &format!("printf(\"const {0} %lld\\n\", (long long){0});\n", stringify!($c)); )*
            $( p += &format!("printf(\"string {0} %s\\n\", {0});\n", stringify!($t)); )*
            p + "return 0;\n}\n"
        }
        /// Struct names with their fields, enum type names, constant names.
        fn listed() -> (BTreeMap<String, Vec<String>>, Vec<String>, Vec<String>) {
            let mut s = BTreeMap::new();
            $( s.insert(stringify!($s).to_string(), vec![$(stringify!($f).to_string()),*]); )*
            (s, vec![$(stringify!($e).to_string()),*], vec![$(stringify!($c).to_string(),)* $(stringify!($t).to_string()),*])
        }
    };
}

facts! {
    structs {
        psh_context_options { struct_size, kind, num_workers, persistent, schedule, chunk, pin_cpus }
        psh_alloc_options { struct_size, order, fill, per_worker }
        psh_view { data, dtype, ndim, shape, strides }
        psh_functor_vtable { struct_size, length, get, worker_begin, worker_end }
        psh_map_options { struct_size, schedule, chunk, progress, progress_data, cancel, user_data_size }
    }
    enums { psh_kind, psh_schedule, psh_dtype, psh_order }
    consts {
        PSH_OK, PSH_EINVAL, PSH_ENOMEM, PSH_ESYS, PSH_EKERNEL, PSH_EWORKER, PSH_ECANCELED, PSH_ENOTSUP,
        PSH_SERIAL, PSH_THREADS, PSH_PROCESSES, PSH_MPI,
        PSH_SCHEDULE_CONTEXT, PSH_SCHEDULE_STATIC, PSH_SCHEDULE_DYNAMIC, PSH_SCHEDULE_GUIDED,
        PSH_INT8, PSH_UINT8, PSH_INT16, PSH_UINT16, PSH_INT32, PSH_UINT32, PSH_INT64, PSH_UINT64,
        PSH_FLOAT32, PSH_FLOAT64, PSH_COMPLEX64, PSH_COMPLEX128,
        PSH_ORDER_DEFAULT, PSH_ORDER_C, PSH_ORDER_F, PSH_PER_WORKER_PADDED,
        PSH_VERSION_MAJOR, PSH_VERSION_MINOR, PSH_VERSION_PATCH, PSH_VERSION_NUMBER
    }
    strings { PSH_VERSION_STRING }
}

/// The Rust declarations, as source text.
const SYS_SOURCE: &str = include_str!("../src/lib.rs");

fn include_dirs() -> Vec<PathBuf> {
    let dirs = env!("PASHA_INCLUDE_DIRS");
    assert!(!dirs.is_empty(), "build.rs found no include directories (DOCS_RS set?)");
    std::env::split_paths(dirs).collect()
}

/// The text of `pasha.h` and of the headers it includes with `#include "..."`.
fn header_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut all = text.clone();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("#include \"").and_then(|r| r.strip_suffix('"')) {
            all += "\n";
            all += &header_text(&path.parent().unwrap().join(name));
        }
    }
    all
}

fn header_path() -> PathBuf {
    include_dirs()
        .into_iter()
        .map(|d| d.join("pasha/pasha.h"))
        .find(|p| p.exists())
        .expect("pasha/pasha.h in one of the pkg-config include directories")
}

// ---------------------------------------------------------------- C side

/// Compile and run the C program with `dirs` first on the include path.
fn c_facts(dirs: &[PathBuf], tag: &str) -> BTreeMap<String, String> {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("layout-{tag}"));
    std::fs::create_dir_all(&tmp).unwrap();
    let src = tmp.join("layout.c");
    let exe = tmp.join("layout");
    std::fs::write(&src, c_program()).unwrap();
    // $CC may carry words of its own ("ccache gcc", "gcc -m64").
    let cc = std::env::var("CC").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| "cc".into());
    let mut words = cc.split_whitespace();
    let mut cmd = Command::new(words.next().unwrap());
    cmd.args(words);
    cmd.arg("-std=c11").arg("-Wall").arg("-o").arg(&exe).arg(&src);
    for d in dirs {
        cmd.arg("-I").arg(d);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run the C compiler {cc}: {e}"));
    assert!(out.status.success(), "{cc} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).output().expect("run the layout program");
    assert!(run.status.success());
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------- header parsing

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.map_or(true, |l| b < l) => {
                out += &rest[..b];
                let end = rest[b + 2..].find("*/").expect("closed comment") + b + 4;
                out.push(' ');
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out += &rest[..l];
                rest = &rest[l..];
                rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
            }
            _ => {
                out += rest;
                return out;
            }
        }
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A C type (with or without a name) in Rust's spelling; "" for a bare `void` return.
fn c_type_to_rust(decl: &str, ret: bool) -> String {
    let decl = decl.trim();
    if let Some(fp) = c_fn_pointer(decl) {
        return fp.1;
    }
    let spaced = decl.replace('*', " * ");
    let mut base_words: Vec<&str> = Vec::new();
    let mut base_const = false;
    let mut stars: Vec<bool> = Vec::new(); // per '*': whether that pointer itself is const
    for tok in spaced.split_whitespace() {
        match tok {
            "const" if stars.is_empty() => base_const = true,
            "const" => *stars.last_mut().unwrap() = true,
            "volatile" => {}
            "*" => stars.push(false),
            w if stars.is_empty() => base_words.push(w),
            _ => {} // the name after the stars
        }
    }
    if stars.is_empty() && base_words.len() >= 2 && !matches!(*base_words.last().unwrap(), "int" | "long" | "char" | "short") {
        base_words.pop(); // the parameter name
    }
    let base = match base_words.join(" ").as_str() {
        "void" if stars.is_empty() => return if ret { String::new() } else { "()".into() },
        "void" => "c_void".to_string(),
        "int" => "c_int".into(),
        "unsigned" | "unsigned int" => "c_uint".into(),
        "long" => "c_long".into(),
        "unsigned long" => "c_ulong".into(),
        "char" => "c_char".into(),
        "size_t" => "usize".into(),
        "ptrdiff_t" => "isize".into(),
        "double" => "f64".into(),
        "float" => "f32".into(),
        other => other.to_string(),
    };
    let mut t = base;
    let mut pointee_const = base_const;
    for c in stars {
        t = format!("*{} {}", if pointee_const { "const" } else { "mut" }, t);
        pointee_const = c;
    }
    t
}

fn split_top(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '(' | '<' => depth += 1,
            ')' | '>' if !cur.ends_with('-') => depth -= 1,
            ',' if depth == 0 => {
                parts.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

fn c_params(params: &str) -> Vec<String> {
    let p = params.trim();
    if p == "void" || p.is_empty() {
        return Vec::new();
    }
    split_top(p).iter().map(|a| c_type_to_rust(a, false)).collect()
}

/// `RET (*NAME)(PARAMS)` -> (NAME, Rust type of the function pointer).
fn c_fn_pointer(decl: &str) -> Option<(String, String)> {
    let open = decl.find("(*")?;
    let close = open + decl[open..].find(')')?;
    let name = decl[open + 2..close].trim().to_string();
    let rest = &decl[close + 1..];
    let p0 = rest.find('(')?;
    let p1 = rest.rfind(')')?;
    let ret = c_type_to_rust(&decl[..open], true);
    let args = c_params(&rest[p0 + 1..p1]).join(", ");
    let ret = if ret.is_empty() { String::new() } else { format!(" -> {ret}") };
    Some((name, format!("Option<unsafe extern \"C\" fn({args}){ret}>")))
}

#[derive(Default, Debug)]
struct Decls {
    /// struct name -> [(field, Rust type)]
    structs: BTreeMap<String, Vec<(String, String)>>,
    enums: Vec<String>,
    consts: Vec<String>,
    /// function name -> (parameter types, return type or "")
    functions: BTreeMap<String, (Vec<String>, String)>,
    /// callback typedef name -> Rust type
    callbacks: BTreeMap<String, String>,
}

fn body_after(s: &str, at: usize) -> (&str, usize) {
    let open = at + s[at..].find('{').unwrap();
    let close = open + s[open..].find('}').unwrap();
    (&s[open + 1..close], close + 1)
}

fn parse_header(text: &str) -> Decls {
    let s = strip_comments(text);
    let mut d = Decls::default();
    // Enums: constants, and the typedef name when there is one.
    let mut at = 0;
    while let Some(k) = s[at..].find("enum") {
        let pos = at + k;
        at = pos + 4;
        let before_ok = pos == 0 || !s[..pos].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !before_ok || !s[at..].trim_start().starts_with(|c: char| c == '{' || c.is_ascii_alphabetic()) {
            continue;
        }
        let (body, end) = body_after(&s, pos);
        for item in body.split(',') {
            let name = item.split('=').next().unwrap().trim();
            if !name.is_empty() {
                d.consts.push(name.to_string());
            }
        }
        if s[..pos].trim_end().ends_with("typedef") {
            let semi = end + s[end..].find(';').unwrap();
            d.enums.push(s[end..semi].trim().to_string());
        }
        at = end;
    }
    // Object-like macros with a value: #define PSH_NAME value.
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(_)) = (w.next(), w.next(), w.next()) {
            if name.starts_with("PSH_") && name != "PSH_API" && !name.contains('(') {
                d.consts.push(name.to_string());
            }
        }
    }
    // Structs with bodies.
    at = 0;
    while let Some(k) = s[at..].find("typedef struct") {
        let pos = at + k;
        at = pos + 14;
        let head_end = pos + s[pos..].find(['{', ';']).unwrap();
        if !s[head_end..].starts_with('{') {
            continue; // opaque
        }
        let name = s[pos + 14..head_end].trim().to_string();
        let (body, end) = body_after(&s, pos);
        let mut fields = Vec::new();
        for f in body.split(';').map(squash).filter(|f| !f.is_empty()) {
            if let Some((n, t)) = c_fn_pointer(&f) {
                fields.push((n, t));
            } else {
                let n = f.rsplit([' ', '*']).next().unwrap().to_string();
                fields.push((n, c_type_to_rust(&f, false)));
            }
        }
        d.structs.insert(name, fields);
        at = end;
    }
    // Callback typedefs: typedef RET (*NAME)(PARAMS);
    for stmt in s.split(';').map(squash) {
        if let Some(rest) = stmt.strip_prefix("typedef ") {
            if rest.contains("(*") && !rest.contains('{') {
                let (n, t) = c_fn_pointer(rest).unwrap();
                d.callbacks.insert(n, t);
            }
        }
        if let Some(rest) = stmt.find("PSH_API ").map(|i| &stmt[i + 8..]) {
            if rest.starts_with("__attribute__") || rest.contains("#define") {
                continue;
            }
            let p0 = rest.find('(').unwrap();
            let p1 = rest.rfind(')').unwrap();
            let head = &rest[..p0];
            let name = head.rsplit([' ', '*']).next().unwrap().to_string();
            let ret = c_type_to_rust(&head[..head.len() - name.len()], true);
            d.functions.insert(name, (c_params(&rest[p0 + 1..p1]), ret));
        }
    }
    d
}

fn parse_rust(src: &str) -> Decls {
    let s = strip_comments(src);
    let mut d = Decls::default();
    // pub struct NAME { pub field: Type, ... }
    let mut at = 0;
    while let Some(k) = s[at..].find("pub struct ") {
        let pos = at + k;
        let (body, end) = body_after(&s, pos);
        let name = squash(&s[pos + 11..pos + s[pos..].find('{').unwrap()]);
        let fields: Vec<(String, String)> = split_top(body)
            .iter()
            .filter_map(|f| f.trim().strip_prefix("pub ").map(|f| f.split_once(':').unwrap()))
            .map(|(n, t)| (n.trim().to_string(), squash(t)))
            .collect();
        if !fields.is_empty() {
            d.structs.insert(name, fields);
        }
        at = end;
    }
    for stmt in s.split(';').map(squash) {
        if let Some(rest) = stmt.strip_prefix("pub type ").or_else(|| stmt.find(" pub type ").map(|i| &stmt[i + 10..])) {
            let (n, t) = rest.split_once(" = ").unwrap();
            d.callbacks.insert(n.trim().to_string(), t.trim().to_string());
        }
        if let Some(rest) = stmt.find("pub fn ").map(|i| &stmt[i + 7..]) {
            let p0 = rest.find('(').unwrap();
            let name = rest[..p0].trim().to_string();
            let close = {
                let mut depth = 0;
                let mut c = 0;
                for (i, ch) in rest.char_indices().skip(p0) {
                    if ch == '(' {
                        depth += 1;
                    } else if ch == ')' {
                        depth -= 1;
                        if depth == 0 {
                            c = i;
                            break;
                        }
                    }
                }
                c
            };
            let args = split_top(&rest[p0 + 1..close])
                .iter()
                .map(|a| squash(a.split_once(':').unwrap().1))
                .collect();
            let ret = rest[close + 1..].trim().strip_prefix("->").map(squash).unwrap_or_default();
            d.functions.insert(name, (args, ret));
        }
    }
    d
}

/// Every difference between the header (text, compiled from `dirs`) and this crate.
fn mismatches(header: &str, dirs: &[PathBuf], tag: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let h = parse_header(header);
    let r = parse_rust(SYS_SOURCE);
    let (lstructs, lenums, lconsts) = listed();
    // Completeness of the numeric check's lists.
    for (name, fields) in &h.structs {
        let names: Vec<String> = fields.iter().map(|f| f.0.clone()).collect();
        if lstructs.get(name) != Some(&names) {
            bad.push(format!("struct {name}: header fields {names:?}, layout list {:?}", lstructs.get(name)));
        }
        match r.structs.get(name) {
            Some(rf) if rf == fields => {}
            rf => bad.push(format!("struct {name}: header {fields:?}, pasha-sys {rf:?}")),
        }
    }
    for name in lstructs.keys().filter(|n| !h.structs.contains_key(*n)) {
        bad.push(format!("struct {name} is listed but not in the header"));
    }
    let mut he = h.enums.clone();
    he.sort();
    let mut le = lenums.clone();
    le.sort();
    if he != le {
        bad.push(format!("enum types: header {he:?}, listed {le:?}"));
    }
    let mut hc = h.consts.clone();
    hc.sort();
    let mut lc = lconsts.clone();
    lc.sort();
    if hc != lc {
        bad.push(format!("constants: header {hc:?}, listed {lc:?}"));
    }
    // Prototypes and callback types.
    for (name, sig) in &h.functions {
        match r.functions.get(name) {
            Some(rs) if rs == sig => {}
            rs => bad.push(format!("fn {name}: header {sig:?}, pasha-sys {rs:?}")),
        }
    }
    for name in r.functions.keys().filter(|n| !h.functions.contains_key(*n)) {
        bad.push(format!("fn {name} is declared in pasha-sys but not in the header"));
    }
    for (name, t) in &h.callbacks {
        match r.callbacks.get(name) {
            Some(rt) if rt == t => {}
            rt => bad.push(format!("callback {name}: header {t:?}, pasha-sys {rt:?}")),
        }
    }
    // Sizes, alignments, offsets, values.
    let c = c_facts(dirs, tag);
    let rust = rust_facts();
    for (k, v) in &rust {
        if c.get(k) != Some(v) {
            bad.push(format!("{k}: C {:?}, Rust {v}", c.get(k)));
        }
    }
    bad
}

#[test]
fn declarations_match_the_header() {
    let header = header_text(&header_path());
    let h = parse_header(&header);
    // The parser saw the header (a parser that finds nothing would pass).
    assert!(h.functions.len() >= 41, "{} prototypes parsed", h.functions.len());
    assert_eq!(h.structs.len(), 5, "{:?}", h.structs.keys());
    assert!(h.consts.len() >= 31);
    assert!(h.callbacks.contains_key("psh_fork_hook"));
    assert!(h.functions.contains_key("psh_default_context_ref"));
    assert!(h.consts.iter().any(|c| c == "PSH_VERSION_STRING"), "pasha_version.h was read");
    let bad = mismatches(&header, &include_dirs(), "real");
    assert!(bad.is_empty(), "pasha-sys disagrees with pasha.h:\n{}", bad.join("\n"));
}

#[test]
fn header_drift_is_caught() {
    let real = header_path();
    let header = std::fs::read_to_string(&real).unwrap();
    let version_h = std::fs::read_to_string(real.with_file_name("pasha_version.h")).unwrap();
    // A doctored copy of the whole include/pasha directory, first on the path.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("layout-drift/include");
    let dir = tmp.join("pasha");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(real.parent().unwrap()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let edits = [
        ("PSH_ENOTSUP = -7", "PSH_ENOTSUP = -8", "const PSH_ENOTSUP"),
        ("    int per_worker;", "    int per_worker;\n    int extra;", "struct psh_alloc_options"),
        ("    psh_dtype dtype;", "    int before_dtype;\n    psh_dtype dtype;", "offset psh_view.dtype"),
        ("psh_functor_range(psh_functor **out, size_t n)", "psh_functor_range(psh_functor **out, int n)", "fn psh_functor_range"),
        ("PSH_API void psh_functor_destroy", "PSH_API int psh_functor_new_thing(void);\nPSH_API void psh_functor_destroy", "fn psh_functor_new_thing"),
        ("typedef void (*psh_fork_hook)(void *data);", "typedef int (*psh_fork_hook)(void *data);", "callback psh_fork_hook"),
    ];
    let mut doctored = header.clone();
    for (from, to, _) in &edits {
        assert!(doctored.contains(from), "the header no longer contains {from:?}: update this test");
        doctored = doctored.replacen(from, to, 1);
    }
    std::fs::write(dir.join("pasha.h"), &doctored).unwrap();
    // And one in the version header: a new minor version.
    let minor = format!("#define PSH_VERSION_MINOR {}", sys::PSH_VERSION_MINOR);
    assert!(version_h.contains(&minor), "pasha_version.h no longer contains {minor:?}: update this test");
    let version_h = version_h.replacen(&minor, &format!("#define PSH_VERSION_MINOR {}", sys::PSH_VERSION_MINOR + 1), 1);
    std::fs::write(dir.join("pasha_version.h"), version_h).unwrap();
    let mut dirs = vec![tmp.clone()];
    dirs.extend(include_dirs());
    let bad = mismatches(&header_text(&dir.join("pasha.h")), &dirs, "drift");
    for expect in ["const PSH_VERSION_MINOR", "const PSH_VERSION_NUMBER"] {
        assert!(bad.iter().any(|b| b.starts_with(expect)), "drift {expect:?} not reported; got:\n{}", bad.join("\n"));
    }
    for (_, _, expect) in &edits {
        assert!(bad.iter().any(|b| b.starts_with(expect)), "drift {expect:?} not reported; got:\n{}", bad.join("\n"));
    }
}
