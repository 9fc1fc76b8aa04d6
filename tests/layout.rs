//! The source layout's one enforced rule: no import cycle between the files of one crate.
//!
//! A file's dependencies are the modules it names through `crate::` and `super::` paths
//! outside comments and its `#[cfg(test)] mod tests`; a path names the longest module
//! prefix that is a file. Edges between a module and its own ancestors or descendants do
//! not count: a parent declares its children and children use their parent's items, which
//! is what a module directory is for. Any other cycle (two sibling files, or three files
//! that import each other round) is a layering mistake: a data type living in a policy
//! file, a helper in the wrong place. The test names every cycle it finds.
//!
//! Needs no KVM: it reads the sources of every crate of the root workspace and the guest's.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

/// Every crate directory (one holding `src/`) directly under `root`.
fn crates(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir() && p.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    out
}

/// `src/a/b.rs` -> `[a, b]`; `src/a/mod.rs` -> `[a]`; `lib.rs`/`main.rs` -> `[]`.
fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // `src/bin/*` are separate crates.
            if path.file_name().is_some_and(|n| n != "bin") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its trailing test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `::`-separated identifiers starting at `s` (`a::b::c` -> `[a, b, c]`).
fn path_at(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        out.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(r) if r.starts_with(is_ident) => rest = r,
            _ => break,
        }
    }
    out
}

/// Module paths a file names: `crate::x::y`, `crate::{x, y::z}` and `super::...` chains.
fn named_paths(code: &str, me: &ModPath) -> Vec<ModPath> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word_start = |i: usize| i == 0 || !is_ident(bytes[i - 1] as char);
    for (i, _) in code.match_indices("crate::") {
        if !word_start(i) {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                out.push(path_at(part.trim()));
            }
        } else {
            out.push(path_at(rest));
        }
    }
    for (i, _) in code.match_indices("super::") {
        if !word_start(i) || code[..i].ends_with("super::") {
            continue;
        }
        let mut rest = &code[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        // `super` is the parent of the file's own module, for `a/b.rs` and `a/mod.rs` alike.
        let Some(keep) = me.len().checked_sub(ups) else {
            continue;
        };
        let mut path: ModPath = me[..keep].to_vec();
        path.extend(path_at(rest));
        out.push(path);
    }
    out
}

/// Cycles (strongly connected components of more than one file) of one crate.
fn cycles(crate_dir: &Path) -> Vec<Vec<String>> {
    let src = crate_dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .map(|f| (module_path(&src, f), f.clone()))
        .collect();
    let resolve = |path: &ModPath| -> Option<ModPath> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains_key(p))
    };
    let related = |a: &ModPath, b: &ModPath| a.starts_with(b) || b.starts_with(a);
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (me, file) in &modules {
        let text = fs::read_to_string(file).unwrap();
        let targets = named_paths(&code_of(&text), me)
            .iter()
            .filter_map(resolve)
            .filter(|t| !related(me, t))
            .collect();
        edges.insert(me.clone(), targets);
    }
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &ModPath| -> BTreeSet<ModPath> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for t in &edges[&m] {
                if seen.insert(t.clone()) {
                    stack.push(t.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&ModPath, BTreeSet<ModPath>> =
        modules.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in modules.keys() {
        if done.contains(m) || !reaches[m].contains(m) {
            continue;
        }
        let comp: Vec<&ModPath> = modules
            .keys()
            .filter(|o| reaches[m].contains(*o) && reaches[*o].contains(m))
            .collect();
        for c in &comp {
            done.insert((*c).clone());
        }
        out.push(comp.iter().map(|p| p.join("::")).collect());
    }
    out
}

#[test]
fn test_no_import_cycle_between_files_of_a_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = crates(&root);
    // The guest's own workspace sits inside the root (`guest/`, found above) with its
    // host half beside it (`guest/aot`).
    all.extend(crates(&root.join("guest")));
    assert!(
        all.len() >= 12,
        "found only {} crates under {}",
        all.len(),
        root.display()
    );
    let found: Vec<String> = all
        .iter()
        .flat_map(|c| {
            let name = c.file_name().unwrap().to_string_lossy().into_owned();
            cycles(c)
                .into_iter()
                .map(move |cycle| format!("{name}: {}", cycle.join(", ")))
        })
        .collect();
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn test_a_planted_cycle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("layer")).unwrap();
    fs::write(dir.path().join("Cargo.toml"), "").unwrap();
    fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod layer;\n").unwrap();
    fs::write(src.join("a.rs"), "use crate::b::Thing;\n").unwrap();
    fs::write(
        src.join("b.rs"),
        "// crate::layer is only a comment\nuse crate::{a::Other, layer};\n",
    )
    .unwrap();
    // Children naming their parent and each other one way: no cycle.
    fs::write(src.join("layer/mod.rs"), "mod x;\nmod y;\npub use x::X;\n").unwrap();
    fs::write(src.join("layer/x.rs"), "use super::y::Y;\n").unwrap();
    fs::write(src.join("layer/y.rs"), "use super::X;\n").unwrap();
    assert_eq!(
        cycles(dir.path()),
        vec![vec!["a".to_string(), "b".to_string()]]
    );

    // `super::super` from a nested file reaches the crate root's modules.
    fs::write(src.join("layer/y.rs"), "use super::super::a::Thing;\n").unwrap();
    fs::write(src.join("a.rs"), "use crate::layer::y::Y;\n").unwrap();
    fs::write(src.join("b.rs"), "").unwrap();
    assert_eq!(
        cycles(dir.path()),
        vec![vec!["a".to_string(), "layer::y".to_string()]]
    );
}
