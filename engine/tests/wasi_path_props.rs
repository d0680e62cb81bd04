//! Property: no guest path leaves the preopen.
//!
//! Each case builds a random tree inside a temporary preopen `root/` that has a sibling
//! `outside/` (holding `secret`): directories, files and symlinks whose targets are relative
//! (through `..`, `.`, empty components and names), absolute inside the preopen, absolute to
//! `outside/` or `/`, or the link itself (a loop); links to links make longer chains and loops.
//! Then random guest paths, built from `..`, `.`, empty components, names (including
//! `outside` and the symlinks' names), optionally absolute and optionally with a trailing
//! slash, go through the engine's WASI path layer with assorted open flags (including
//! `O_CREAT` and `O_NOFOLLOW`). The property:
//!
//! * `open_beneath` either fails with an errno or returns an fd whose real path
//!   (`/proc/self/fd/N`) lies beneath the preopen;
//! * `parent_beneath` either fails or returns a parent directory beneath the preopen and a
//!   single last component, and a last component of `..` never names the preopen's parent;
//! * nothing outside the preopen is created or changed.
//!
//! The runner has a fixed seed and a fixed number of cases, so the test is deterministic and
//! takes a few seconds.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use wasce_engine::wasi::{open_beneath, parent_beneath};

const SEED: [u8; 32] = *b"wasce wasi path property tests!!";
const CASES: u32 = 1_500;
/// Names of tree entries and of guest path components. `outside` is also the sibling's name,
/// so `../outside` reaches it by name.
const NAMES: [&str; 6] = ["a", "b", "c", "l", "outside", "secret"];
/// What `outside/secret` holds; checked after every case.
const SECRET: &[u8] = b"must stay untouched";
/// WASI errno "not capable" (what leaving the preopen reports).
const NOTCAPABLE: u16 = 76;

#[derive(Clone, Copy, Debug)]
enum Comp {
    Parent,
    Current,
    Empty,
    Name(usize),
}

fn comp() -> impl Strategy<Value = Comp> {
    prop_oneof![
        2 => Just(Comp::Parent),
        1 => Just(Comp::Current),
        1 => Just(Comp::Empty),
        8 => (0..NAMES.len()).prop_map(Comp::Name),
    ]
}

fn join(comps: &[Comp]) -> String {
    let parts: Vec<&str> = comps
        .iter()
        .map(|c| match *c {
            Comp::Parent => "..",
            Comp::Current => ".",
            Comp::Empty => "",
            Comp::Name(i) => NAMES[i],
        })
        .collect();
    parts.join("/")
}

/// Where a symlink points.
#[derive(Clone, Debug)]
enum Target {
    Relative(Vec<Comp>),
    /// The preopen's absolute real path, then these components.
    AbsoluteInside(Vec<Comp>),
    AbsoluteOutside,
    AbsoluteRoot,
    /// The link's own name: a loop.
    Itself,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        5 => prop::collection::vec(comp(), 1..5).prop_map(Target::Relative),
        2 => prop::collection::vec(comp(), 0..3).prop_map(Target::AbsoluteInside),
        1 => Just(Target::AbsoluteOutside),
        1 => Just(Target::AbsoluteRoot),
        1 => Just(Target::Itself),
    ]
}

#[derive(Clone, Debug)]
enum Kind {
    Dir,
    File,
    Symlink(Target),
}

/// A tree entry: named `NAMES[name]` in the `parent % dirs`-th directory created so far.
#[derive(Clone, Debug)]
struct Entry {
    parent: usize,
    name: usize,
    kind: Kind,
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop_oneof![3 => Just(Kind::Dir), 2 => Just(Kind::File), 4 => target().prop_map(Kind::Symlink)];
    (0..8usize, 0..NAMES.len(), kind).prop_map(|(parent, name, kind)| Entry { parent, name, kind })
}

#[derive(Clone, Debug)]
struct GuestPath {
    absolute: bool,
    comps: Vec<Comp>,
    trailing_slash: bool,
}

impl GuestPath {
    fn render(&self) -> String {
        let mut s = join(&self.comps);
        if self.absolute {
            s.insert(0, '/');
        }
        if self.trailing_slash {
            s.push('/');
        }
        s
    }
}

fn guest_path() -> impl Strategy<Value = GuestPath> {
    (prop::bool::weighted(0.1), prop::collection::vec(comp(), 1..6), prop::bool::weighted(0.2))
        .prop_map(|(absolute, comps, trailing_slash)| GuestPath { absolute, comps, trailing_slash })
}

/// Open flags the WASI layer passes down: plain lookups, directories, no-follow, and creation.
const FLAGS: [i32; 6] = [
    libc::O_PATH,
    libc::O_RDONLY,
    libc::O_RDONLY | libc::O_DIRECTORY,
    libc::O_PATH | libc::O_NOFOLLOW,
    libc::O_WRONLY | libc::O_CREAT,
    libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
];

#[derive(Clone, Debug)]
struct Case {
    tree: Vec<Entry>,
    probes: Vec<(GuestPath, usize)>,
}

fn case() -> impl Strategy<Value = Case> {
    (prop::collection::vec(entry(), 0..20), prop::collection::vec((guest_path(), 0..FLAGS.len()), 1..12))
        .prop_map(|(tree, probes)| Case { tree, probes })
}

/// The temporary layout: `base/root` (the preopen) and `base/outside/secret`.
struct Layout {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let base = fs::canonicalize(tmp.path()).expect("canonical temporary path");
    let (root, outside) = (base.join("root"), base.join("outside"));
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), SECRET).unwrap();
    Layout { _tmp: tmp, base, root, outside }
}

fn build(layout: &Layout, tree: &[Entry]) {
    let mut dirs = vec![layout.root.clone()];
    for e in tree {
        let path = dirs[e.parent % dirs.len()].join(NAMES[e.name]);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        match &e.kind {
            Kind::Dir => {
                fs::create_dir(&path).unwrap();
                dirs.push(path);
            }
            Kind::File => fs::write(&path, b"inside").unwrap(),
            Kind::Symlink(target) => {
                let to = match target {
                    Target::Relative(comps) => join(comps),
                    Target::AbsoluteInside(comps) => format!("{}/{}", layout.root.display(), join(comps)),
                    Target::AbsoluteOutside => layout.outside.display().to_string(),
                    Target::AbsoluteRoot => "/".to_string(),
                    Target::Itself => NAMES[e.name].to_string(),
                };
                let to = if to.is_empty() { ".".to_string() } else { to };
                symlink(to, &path).unwrap();
            }
        }
    }
}

/// The real path of an open fd.
fn real_path(fd: &OwnedFd) -> PathBuf {
    fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink of an open fd")
}

fn beneath(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// Counters over the whole run, to show the property was not vacuous.
static OPENED: AtomicU64 = AtomicU64::new(0);
static NOT_CAPABLE: AtomicU64 = AtomicU64::new(0);
static PARENTS: AtomicU64 = AtomicU64::new(0);

fn check(case: &Case) -> Result<(), TestCaseError> {
    let layout = layout();
    build(&layout, &case.tree);
    let root = fs::File::open(&layout.root).unwrap();
    for (path, flags) in &case.probes {
        let guest = path.render();
        match open_beneath(root.as_raw_fd(), &guest, FLAGS[*flags], 0o644) {
            Ok(fd) => {
                OPENED.fetch_add(1, Ordering::Relaxed);
                let real = real_path(&fd);
                prop_assert!(beneath(&real, &layout.root), "open_beneath({guest:?}) opened {}", real.display());
            }
            Err(errno) => {
                if errno == NOTCAPABLE {
                    NOT_CAPABLE.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Ok(parent) = parent_beneath(root.as_raw_fd(), &guest) {
            PARENTS.fetch_add(1, Ordering::Relaxed);
            let real = real_path(&parent.dir);
            prop_assert!(beneath(&real, &layout.root), "parent_beneath({guest:?}) gave {}", real.display());
            let name = parent.name.to_str().unwrap();
            let bare = name.trim_end_matches('/');
            prop_assert!(!bare.contains('/'), "parent_beneath({guest:?}) left a path {name:?}");
            prop_assert!(
                bare != ".." || real != layout.root,
                "parent_beneath({guest:?}) names the preopen's parent"
            );
        }
    }
    // Nothing outside the preopen changed.
    let mut outside: Vec<_> = fs::read_dir(&layout.outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    outside.sort();
    prop_assert_eq!(outside, vec![std::ffi::OsString::from("secret")]);
    prop_assert_eq!(fs::read(layout.outside.join("secret")).unwrap(), SECRET);
    let mut base: Vec<_> = fs::read_dir(&layout.base).unwrap().map(|e| e.unwrap().file_name()).collect();
    base.sort();
    prop_assert_eq!(base, vec![std::ffi::OsString::from("outside"), std::ffi::OsString::from("root")]);
    Ok(())
}

#[test]
fn guest_paths_stay_beneath_the_preopen() {
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let result = runner.run(&case(), |case| check(&case));
    if let Err(e) = result {
        panic!("{e}");
    }
    let (opened, not_capable, parents) =
        (OPENED.load(Ordering::Relaxed), NOT_CAPABLE.load(Ordering::Relaxed), PARENTS.load(Ordering::Relaxed));
    println!("wasi_path_props: {CASES} trees, {opened} opens succeeded, {not_capable} refused as not capable, {parents} parents resolved");
    assert!(opened > 500 && not_capable > 1_000 && parents > 1_000, "the generated paths barely exercised the resolver");
}
