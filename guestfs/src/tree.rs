//! The read-only tree: every file the VMM loaded (the function under `/var/task`,
//! the runtime under `/var/runtime`), indexed by full path, with each directory's
//! children precomputed.
//!
//! Directories are not stored in the archive; a directory exists because some
//! file lies below it. They get their own index rather than being inferred from
//! the sorted file list at lookup time: in byte order `attrs-23.1.0.dist-info/…`
//! and `attrs.py` sort between `attrs` and `attrs/__init__.py` (`-` and `.` sort
//! before `/`), so "is the next file below me?" misses the directories of almost
//! every package pip installs next to its `*.dist-info`.
//!
//! Building (`Tree::from_entries`):
//! 1. Normalise each name to an absolute path; skip names that are not UTF-8 or
//!    climb above `/`. A name ending in `/` declares an (empty) directory. A
//!    later entry for the same path replaces an earlier one.
//! 2. Every ancestor of every file is a directory; a path that is both a file and
//!    a directory is a directory (the file cannot be reached on a real FS either).
//! 3. Each directory's children, sorted by name, with whether each is a directory.
use crate::path::{normalize, parent};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A file and its bytes.
    File(&'a [u8]),
    /// A directory.
    Dir,
}

/// A directory's children: `(name, is_dir)`, sorted by name.
pub type Children = Vec<(String, bool)>;

/// The read-only tree.
#[derive(Debug, Default)]
pub struct Tree<'a> {
    files: BTreeMap<String, &'a [u8]>,
    dirs: BTreeMap<String, Children>,
}

impl<'a> Tree<'a> {
    /// Builds the tree from a `thaw_abi::files` archive; names are paths relative to `/`.
    pub fn from_archive(archive: &'a [u8]) -> Self {
        Self::from_entries(thaw_abi::files::entries(archive))
    }

    /// Builds the tree from `(name, data)` pairs (see the module doc).
    pub fn from_entries(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        // 1. Paths.
        let mut files: BTreeMap<String, &'a [u8]> = BTreeMap::new();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        dirs.insert(String::from("/"));
        for (name, data) in entries {
            let Ok(name) = core::str::from_utf8(name) else {
                continue;
            };
            let Some(path) = normalize("/", name) else {
                continue;
            };
            if path == "/" {
                continue;
            }
            if name.ends_with('/') {
                dirs.insert(path);
            } else {
                files.insert(path, data);
            }
        }
        // 2. Ancestors are directories; directories shadow files.
        let mut ancestors: Vec<String> = Vec::new();
        for path in files.keys().chain(dirs.iter()) {
            let mut p = parent(path);
            while p != "/" && !dirs.contains(p) {
                ancestors.push(String::from(p));
                p = parent(p);
            }
        }
        dirs.extend(ancestors);
        files.retain(|p, _| !dirs.contains(p));
        // 3. Children.
        let mut index: BTreeMap<String, Children> =
            dirs.iter().map(|d| (d.clone(), Vec::new())).collect();
        let named = files
            .keys()
            .map(|p| (p, false))
            .chain(dirs.iter().filter(|d| *d != "/").map(|d| (d, true)));
        for (path, is_dir) in named {
            let dir = parent(path);
            let name = &path[dir.len().max(1)..].trim_start_matches('/');
            if let Some(children) = index.get_mut(dir) {
                children.push((String::from(*name), is_dir));
            }
        }
        for children in index.values_mut() {
            children.sort();
        }
        Self { files, dirs: index }
    }

    /// What the absolute, normalised `path` names.
    pub fn lookup(&self, path: &str) -> Option<Entry<'a>> {
        if let Some(data) = self.files.get(path) {
            return Some(Entry::File(data));
        }
        self.dirs.contains_key(path).then_some(Entry::Dir)
    }

    /// Whether `path` is a directory of the tree.
    pub fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains_key(path)
    }

    /// The children of directory `dir` (`None` if it is not one).
    pub fn list(&self, dir: &str) -> Option<&[(String, bool)]> {
        self.dirs.get(dir).map(Vec::as_slice)
    }

    /// Number of files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    fn tree(names: &[&'static str]) -> Tree<'static> {
        Tree::from_entries(names.iter().map(|n| (n.as_bytes(), n.as_bytes())))
    }

    fn names(t: &Tree<'_>, dir: &str) -> Vec<(String, bool)> {
        t.list(dir).expect("a directory").to_vec()
    }

    #[test]
    fn test_package_next_to_its_dist_info_is_a_directory() {
        // The layout `pip install -t . attrs` writes.
        let t = tree(&[
            "var/task/attr/__init__.py",
            "var/task/attrs-23.1.0.dist-info/METADATA",
            "var/task/attrs-23.1.0.dist-info/RECORD",
            "var/task/attrs/__init__.py",
            "var/task/attrs/converters.py",
            "var/task/app.py",
        ]);
        assert_eq!(t.lookup("/var/task/attrs"), Some(Entry::Dir));
        assert_eq!(
            t.lookup("/var/task/attrs-23.1.0.dist-info"),
            Some(Entry::Dir)
        );
        assert_eq!(
            t.lookup("/var/task/attrs/converters.py"),
            Some(Entry::File(&b"var/task/attrs/converters.py"[..]))
        );
        assert_eq!(
            names(&t, "/var/task/attrs"),
            vec![
                (String::from("__init__.py"), false),
                (String::from("converters.py"), false)
            ]
        );
    }

    #[test]
    fn test_names_that_prefix_other_entries() {
        let t = tree(&[
            "foo/__init__.py",
            "foo.py",
            "foo-1.0.dist-info/RECORD",
            "foo_bar/__init__.py",
            "foo.bar/x",
            "foo!/y",
            "fo/z",
        ]);
        for d in [
            "/foo",
            "/foo-1.0.dist-info",
            "/foo_bar",
            "/foo.bar",
            "/foo!",
            "/fo",
        ] {
            assert_eq!(t.lookup(d), Some(Entry::Dir), "{d}");
        }
        assert!(matches!(t.lookup("/foo.py"), Some(Entry::File(_))));
        assert_eq!(t.lookup("/fo"), Some(Entry::Dir));
        assert_eq!(t.lookup("/f"), None);
        assert_eq!(t.lookup("/foo/"), None, "lookups take normalised paths");
        let root: Vec<String> = names(&t, "/").into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            root,
            [
                "fo",
                "foo",
                "foo!",
                "foo-1.0.dist-info",
                "foo.bar",
                "foo.py",
                "foo_bar"
            ]
        );
        assert_eq!(t.list("/foo.py"), None);
    }

    #[test]
    fn test_pip_layouts_data_bin_namespace_packages() {
        let t = tree(&[
            "bin/normalizer",
            "charset_normalizer-3.3.2.data/scripts/x",
            "google/protobuf/__init__.py",
            "google/api/http.py",
            "backports/zoneinfo/__init__.py",
        ]);
        assert_eq!(t.lookup("/google"), Some(Entry::Dir));
        assert_eq!(
            names(&t, "/google"),
            vec![
                (String::from("api"), true),
                (String::from("protobuf"), true)
            ]
        );
        assert_eq!(
            t.lookup("/charset_normalizer-3.3.2.data/scripts"),
            Some(Entry::Dir)
        );
        assert_eq!(t.lookup("/bin"), Some(Entry::Dir));
    }

    #[test]
    fn test_deep_and_large_trees() {
        let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
        for i in 0..12_000 {
            owned.push((
                format!("var/task/pkg{}/sub{}/m{i}.py", i % 37, i % 11),
                vec![1],
            ));
        }
        let deep: String = (0..200).map(|i| format!("d{i}/")).collect::<String>() + "leaf.py";
        owned.push((deep.clone(), vec![2]));
        let t = Tree::from_entries(owned.iter().map(|(n, d)| (n.as_bytes(), d.as_slice())));
        assert_eq!(t.file_count(), 12_001);
        assert_eq!(t.lookup("/var/task/pkg3/sub7"), Some(Entry::Dir));
        let total: usize = (0..37)
            .flat_map(|p| (0..11).map(move |s| (p, s)))
            .filter_map(|(p, s)| t.list(&format!("/var/task/pkg{p}/sub{s}")).map(<[_]>::len))
            .sum();
        assert_eq!(total, 12_000);
        assert_eq!(t.lookup(&format!("/{deep}")), Some(Entry::File(&[2][..])));
        assert_eq!(
            t.lookup(&format!("/{}", &deep[..deep.len() - 8])),
            Some(Entry::Dir)
        );
    }

    #[test]
    fn test_odd_names() {
        let t = Tree::from_entries([
            (&b"../escape"[..], &b""[..]),
            (&b"\xff\xfe"[..], &b""[..]),
            (&b"a/./b//c"[..], &b"1"[..]),
            (&b"a/b"[..], &b"shadowed by the directory"[..]),
            (&b"empty/"[..], &b""[..]),
            (&b"dup"[..], &b"old"[..]),
            (&b"dup"[..], &b"new"[..]),
        ]);
        assert_eq!(t.lookup("/escape"), None);
        assert_eq!(t.lookup("/a/b"), Some(Entry::Dir));
        assert_eq!(t.lookup("/a/b/c"), Some(Entry::File(&b"1"[..])));
        assert_eq!(t.lookup("/empty"), Some(Entry::Dir));
        assert_eq!(t.list("/empty"), Some(&[][..]));
        assert_eq!(t.lookup("/dup"), Some(Entry::File(&b"new"[..])));
    }

    #[test]
    fn test_from_archive() {
        let mut buf = Vec::new();
        thaw_abi::files::push(&mut buf, b"var/task/attrs-1.dist-info/RECORD", b"r");
        thaw_abi::files::push(&mut buf, b"var/task/attrs/__init__.py", b"i");
        let t = Tree::from_archive(&buf);
        assert_eq!(t.lookup("/var/task/attrs"), Some(Entry::Dir));
        assert_eq!(t.lookup("/var"), Some(Entry::Dir));
        assert_eq!(t.lookup("/"), Some(Entry::Dir));
    }
}
