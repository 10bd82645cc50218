//! The layering of ARCHITECTURE.md, checked on the sources: the top-level
//! module graph (from `crate::` paths outside tests) has no cycle, the core
//! imports neither the shell nor an I/O crate nor the clock, each outside
//! system has one owner (rdkafka: `source`; HTTP serving: `export`), `live`
//! is shared state only, `main.rs` is the one exit point and errors are
//! typed, not strings. `cargo test architecture -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure core: no I/O, no clock, nothing of the shell.
const CORE: [&str; 7] = [
    "util",
    "config",
    "decode",
    "aggregate",
    "kpi",
    "engine",
    "checkpoint",
];

/// Crates the core must not use (I/O, async runtime, HTTP, command line).
const NOT_IN_CORE: [&str; 12] = [
    "rdkafka",
    "tokio",
    "tokio_util",
    "axum",
    "hyper",
    "hyper_util",
    "tower",
    "tower_http",
    "clap",
    "ureq",
    "tracing_subscriber",
    "indicatif",
];

/// Outside systems and the one module allowed to touch each.
const OWNERS: [(&str, &str); 6] = [
    ("rdkafka", "source"),
    ("axum", "export"),
    ("hyper", "export"),
    ("hyper_util", "export"),
    ("tower", "export"),
    ("tower_http", "export"),
];

/// The clock, from std and from jiff (calendar windows: engine time is
/// given, the zone's rules are data).
const CLOCK_READS: [&str; 4] = [
    "SystemTime::now",
    "Instant::now",
    "Timestamp::now",
    "Zoned::now",
];

/// I/O of the standard library the core must not do either (files,
/// sockets, environment, processes, the terminal).
const STD_IO: [&str; 8] = [
    "std::fs",
    "std::net",
    "std::env",
    "std::process",
    "print!",
    "println!",
    "stdout()",
    "stdin()",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file that is compiled outside tests: comments dropped,
/// and nothing from the first `#[cfg(test)]` on (test modules close each
/// file). `None` for a file that is a test module itself (`tests.rs`,
/// `*_tests.rs`).
fn production_code(path: &Path, text: &str) -> Option<String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs")) {
        return None;
    }
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    Some(
        text[..end]
            .lines()
            .map(|l| match l.trim_start().starts_with("//") {
                true => "",
                false => l,
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn ident_at(s: &str) -> &str {
    let n = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..n]
}

/// Top-level modules named by `crate::x` and `crate::{x, y::..}` paths.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `funnelstream_crate::`
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.insert(ident_at(&group[j..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest).to_string());
        }
    }
    out
}

/// Whether `code` names crate `name` in a path (`name::` not preceded by
/// an identifier character or `::`).
fn uses_crate(code: &str, name: &str) -> bool {
    let pat = format!("{name}::");
    code.match_indices(&pat).any(|(i, _)| {
        !code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    })
}

struct Source {
    module: String,
    file: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let rel = p.strip_prefix(&root).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = Path::new(first.as_os_str())
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if ["lib", "main", "architecture"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read source");
        if let Some(code) = production_code(&p, &text) {
            out.push(Source {
                module,
                file: rel.display().to_string(),
                code,
            });
        }
    }
    out
}

/// Module -> the modules it uses.
fn graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<&str> = sources.iter().map(|s| s.module.as_str()).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let deps = g.entry(s.module.clone()).or_default();
        for m in crate_paths(&s.code) {
            if m != s.module && modules.contains(m.as_str()) {
                deps.insert(m);
            }
        }
    }
    g
}

/// The cycles of `g` (its strongly connected components of more than one
/// module), by Tarjan's algorithm.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[v].min(t.low[w]);
                t.low.insert(v, l);
            } else if t.on.contains(w) {
                let l = t.low[v].min(t.index[w]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn module_graph_has_no_cycle() {
    let g = graph(&sources());
    println!("module graph (module -> modules it uses):");
    for (m, deps) in &g {
        let core = if CORE.contains(&m.as_str()) {
            " [core]"
        } else {
            ""
        };
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("  {m}{core} -> {}", deps.join(", "));
    }
    let found = cycles(&g);
    assert!(found.is_empty(), "module cycles: {found:?}");
}

#[test]
fn core_imports_neither_the_shell_nor_io_nor_the_clock() {
    let mut bad = Vec::new();
    for s in sources()
        .iter()
        .filter(|s| CORE.contains(&s.module.as_str()))
    {
        for m in crate_paths(&s.code) {
            let known = sources().iter().any(|o| o.module == m);
            if known && !CORE.contains(&m.as_str()) {
                bad.push(format!("{} uses crate::{m}", s.file));
            }
        }
        for c in NOT_IN_CORE {
            if uses_crate(&s.code, c) {
                bad.push(format!("{} uses {c}", s.file));
            }
        }
        for c in CLOCK_READS {
            if s.code.contains(c) {
                bad.push(format!("{} reads the clock ({c})", s.file));
            }
        }
        for c in STD_IO {
            if s.code.contains(c) {
                bad.push(format!("{} does I/O ({c})", s.file));
            }
        }
    }
    assert!(bad.is_empty(), "core violations:\n{}", bad.join("\n"));
}

#[test]
fn one_owner_per_outside_system() {
    let mut importers: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut bad = Vec::new();
    for s in sources() {
        for (c, owner) in OWNERS {
            if uses_crate(&s.code, c) {
                importers.entry(c).or_default().insert(s.file.clone());
                if s.module != owner {
                    bad.push(format!("{} uses {c} (only {owner} may)", s.file));
                }
            }
        }
    }
    for (c, files) in &importers {
        println!(
            "{c}: {}",
            files.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn live_is_shared_state_only() {
    let all = sources();
    for s in all.iter().filter(|s| s.module == "live") {
        for m in crate_paths(&s.code) {
            let module = all.iter().any(|o| o.module == m);
            assert!(
                !module || CORE.contains(&m.as_str()) || m == "clock",
                "{} uses crate::{m}: live may use only the core and the clock",
                s.file
            );
        }
    }
}

/// `main.rs` is the one place that exits: commands return their error.
#[test]
fn one_exit_point() {
    let bad: Vec<String> = sources()
        .iter()
        .filter(|s| s.code.contains("process::exit"))
        .map(|s| s.file.clone())
        .collect();
    assert!(bad.is_empty(), "exit outside main.rs: {bad:?}");
}

/// How many times `code` makes a plain `String` an error: a `Result<..>`
/// whose last generic argument is `String` (`Result<T, String>`,
/// `Result<(), String>`, over several lines too), or `type Err = String`.
fn string_errors(code: &str) -> usize {
    let mut n = code.matches("type Err = String;").count();
    for (i, _) in code.match_indices("Result<") {
        if code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `TryResult<`
        }
        let rest = &code[i + "Result<".len()..];
        let (mut depth, mut args, mut start) = (0, Vec::new(), 0);
        let mut prev = ' ';
        for (j, c) in rest.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' if prev == '-' => {} // `fn() -> T` inside the arguments
                '>' | ')' | ']' if depth == 0 => {
                    args.push(&rest[start..j]);
                    break;
                }
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(&rest[start..j]);
                    start = j + 1;
                }
                _ => {}
            }
            prev = c;
        }
        let last = args.iter().rev().map(|a| a.trim()).find(|a| !a.is_empty());
        if args.len() > 1 && last == Some("String") {
            n += 1;
        }
    }
    n
}

/// Errors are typed: `thiserror` enums that say what failed, mapped to an
/// exit code in one place (`error.rs`), never bare strings.
#[test]
fn errors_are_typed_not_strings() {
    let mut bad = Vec::new();
    for s in sources() {
        let n = string_errors(&s.code);
        if n > 0 {
            bad.push(format!(
                "{}: {n} `Result<_, String>`: return a typed error",
                s.file
            ));
        }
    }
    assert!(bad.is_empty(), "string errors:\n{}", bad.join("\n"));
}

/// The checker itself: it must see the paths and the cycles it guards.
#[test]
fn checker_finds_paths_and_cycles() {
    let p =
        crate_paths("use crate::a::X;\nuse crate::{b::Y, c};\nlet x = crate::d::f(); my_crate::e;");
    assert_eq!(p, ["a", "b", "c", "d"].map(String::from).into());
    assert!(uses_crate("use rdkafka::config;", "rdkafka"));
    assert!(!uses_crate("use crate::x::rdkafka::y;", "rdkafka"));
    assert!(!uses_crate("use librdkafka::y;", "rdkafka"));
    assert_eq!(string_errors("fn f() -> Result<(), String> {"), 1);
    assert_eq!(
        string_errors("fn f() -> Result<\n    Vec<(i64, String)>,\n    String,\n> {"),
        1
    );
    assert_eq!(
        string_errors("type R = Option<Result<Box<dyn Fn() -> u8>, String>>;"),
        1
    );
    assert_eq!(
        string_errors("impl FromStr for X {\n    type Err = String;"),
        1
    );
    assert_eq!(string_errors("fn f() -> Result<String, Error> {"), 0);
    assert_eq!(string_errors("fn f() -> io::Result<String> {"), 0);
    assert_eq!(string_errors("fn f() -> Result<(String, u8), E> {"), 0);
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
}
