//! Absolute, normalised paths: `/`-separated, no `.`, `..`, empty or trailing
//! components.
use alloc::string::String;
use alloc::vec::Vec;

/// Joins `rel` onto absolute directory `base`, resolving `.` and `..`; `None` for
/// a path that climbs above `/`. An absolute `rel` ignores `base`.
pub fn normalize(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let full = if rel.starts_with('/') {
        [rel, ""]
    } else {
        [base, rel]
    };
    for piece in full.iter().flat_map(|s| s.split('/')) {
        match piece {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let mut out = String::new();
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// The parent directory of a normalised absolute path (`/` for top-level names
/// and for `/` itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_normalize() {
        assert_eq!(
            normalize("/var/task", "a/./b/../c").as_deref(),
            Some("/var/task/a/c")
        );
        assert_eq!(
            normalize("/var/task", "/etc//x/").as_deref(),
            Some("/etc/x")
        );
        assert_eq!(normalize("/", "..").as_deref(), None);
        assert_eq!(normalize("/var", "../..").as_deref(), None);
        assert_eq!(normalize("/var", "..").as_deref(), Some("/"));
        assert_eq!(normalize("/", "").as_deref(), Some("/"));
    }

    #[test]
    fn test_parent() {
        assert_eq!(parent("/var/task/a.py"), "/var/task");
        assert_eq!(parent("/tmp"), "/");
        assert_eq!(parent("/"), "/");
    }
}
