//! A reference-model property test of the filesystem core: a small in-memory
//! model of a POSIX tree (directories, files with bytes, symlinks) and random
//! sequences of operations over a few names (so they collide: over, into and
//! below each other). Every step must give the same result or errno on the
//! model, on a `Vfs` over a real store (called as the kernel calls it, see
//! tests/common/vfs.rs) and on a plain local directory (which keeps the model
//! honest); at the end the three trees must be equal, and equal to what a
//! fresh `Vfs` on the same store (another process) and the store alone see.
//! Besides whole operations (mkdir, create+write+close, truncate, unlink,
//! rmdir, rename, readdir, read, symlink, lstat), a case keeps up to two
//! descriptors open across its steps (open, pwrite, read, close), so writes
//! meet renames and unlinks of the files they go to; the model therefore
//! knows files by inode, not by name. Places are picked against the tree as
//! it is at each step (an existing entry, a name in an existing directory,
//! or a short path of the few names), so most steps meet something.
//!
//! Deterministic: a fixed seed (`VFS_MODEL_SEED=<u64>` picks another), 64
//! cases of up to 40 steps (`PROPTEST_CASES=<n>` for more). A failure is
//! shrunk to a short sequence and printed as such.

// The test calls libc directly (system calls the standard library does not wrap).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

#[path = "common/store.rs"]
mod store_common;
#[path = "common/vfs.rs"]
mod vfs_common;

use std::collections::BTreeMap;
use std::fmt;
use std::process::Command;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use globofs::spec::Spec;
use globofs::store::Store;
use globofs::vfs::Vfs;
use store_common::{BS, Vol, data};
use vfs_common::{Core, DANGLING, Entry, Kind, Local, Posix, R, Tree, store_tree, tree};

/// The names paths are made of: few, so that operations meet each other,
/// and two of them the names the store keeps for itself on disk.
const NAMES: [&[u8]; 3] = [b"a", b"b", b"versions"];

/// A path as a step uses it: its names (empty: the root).
#[derive(Clone, PartialEq, Eq)]
struct P(Vec<Vec<u8>>);

impl P {
    fn names(&self) -> Vec<Vec<u8>> {
        self.0.clone()
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }
}

impl fmt::Debug for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.bytes().escape_ascii())
    }
}

/// Where a generated step acts, decided against the tree as it is when the
/// step runs, so that most steps meet something that exists.
#[derive(Clone, Debug)]
enum Where {
    /// These names (indexes into [`NAMES`]).
    Names(Vec<u8>),
    /// The k-th entry of the tree (modulo their number; a plain name when empty).
    Existing(u8),
    /// A name of [`NAMES`] in the k-th directory (the root is the first).
    Below(u8, u8),
}

#[derive(Clone, Debug)]
enum Op<T> {
    Mkdir(T),
    /// open(O_CREAT|O_WRONLY[|O_TRUNC]), pwrite `len` bytes (made from
    /// `seed`) at `offset`, close.
    Write {
        path: T,
        truncate: bool,
        offset: u32,
        len: u32,
        seed: u8,
    },
    Truncate(T, u32),
    Unlink(T),
    Rmdir(T),
    Rename(T, T, bool),
    Readdir(T),
    Read(T),
    Symlink(T),
    Stat(T),
    /// open(O_RDWR|O_CREAT[|O_TRUNC]) into descriptor slot `slot` (0 or 1),
    /// kept open across the steps that follow (skipped while the slot is taken).
    Open {
        slot: u8,
        path: T,
        truncate: bool,
    },
    /// pwrite through the slot's descriptor (skipped while the slot is free).
    WriteFd {
        slot: u8,
        offset: u32,
        len: u32,
        seed: u8,
    },
    /// Reads the whole file through the slot's descriptor.
    ReadFd(u8),
    /// close(2) of the slot's descriptor.
    Close(u8),
}

/// The descriptors a case keeps open across steps.
const SLOTS: usize = 2;

impl Op<Where> {
    /// The step with its places decided.
    fn place(&self, model: &Model) -> Op<P> {
        let at = |w: &Where| model.place(w);
        match self {
            Op::Mkdir(w) => Op::Mkdir(at(w)),
            Op::Write {
                path,
                truncate,
                offset,
                len,
                seed,
            } => Op::Write {
                path: at(path),
                truncate: *truncate,
                offset: *offset,
                len: *len,
                seed: *seed,
            },
            Op::Truncate(w, size) => Op::Truncate(at(w), *size),
            Op::Unlink(w) => Op::Unlink(at(w)),
            Op::Rmdir(w) => Op::Rmdir(at(w)),
            Op::Rename(from, to, noreplace) => Op::Rename(at(from), at(to), *noreplace),
            Op::Readdir(w) => Op::Readdir(at(w)),
            Op::Read(w) => Op::Read(at(w)),
            Op::Symlink(w) => Op::Symlink(at(w)),
            Op::Stat(w) => Op::Stat(at(w)),
            Op::Open {
                slot,
                path,
                truncate,
            } => Op::Open {
                slot: *slot,
                path: at(path),
                truncate: *truncate,
            },
            Op::WriteFd {
                slot,
                offset,
                len,
                seed,
            } => Op::WriteFd {
                slot: *slot,
                offset: *offset,
                len: *len,
                seed: *seed,
            },
            Op::ReadFd(slot) => Op::ReadFd(*slot),
            Op::Close(slot) => Op::Close(*slot),
        }
    }
}

/// What a step gave back.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Done,
    /// A descriptor step on a slot that is free (or, for Open, taken).
    Skipped,
    Bytes(Vec<u8>),
    Listing(Vec<(Vec<u8>, Kind)>),
    Stat(Kind, u64, u32),
}

/// A place: an existing entry, a name in an existing directory, or a short
/// path of the few names.
fn place() -> impl Strategy<Value = Where> {
    let name = || 0..NAMES.len() as u8;
    prop_oneof![
        3 => any::<u8>().prop_map(Where::Existing),
        3 => (any::<u8>(), name()).prop_map(|(k, n)| Where::Below(k, n)),
        1 => prop::collection::vec(name(), 1..=3).prop_map(Where::Names),
    ]
}

fn op() -> impl Strategy<Value = Op<Where>> {
    let size = 0..(3 * BS as u32 + 100);
    prop_oneof![
        4 => place().prop_map(Op::Mkdir),
        6 => (place(), any::<bool>(), size.clone(), 0..(2 * BS as u32 + 10), any::<u8>())
            .prop_map(|(path, truncate, offset, len, seed)| Op::Write {
                path,
                truncate,
                offset,
                len,
                seed,
            }),
        2 => (place(), size).prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => place().prop_map(Op::Unlink),
        2 => place().prop_map(Op::Rmdir),
        6 => (place(), place(), any::<bool>()).prop_map(|(a, b, n)| Op::Rename(a, b, n)),
        1 => Just(Op::Readdir(Where::Names(Vec::new()))),
        2 => place().prop_map(Op::Readdir),
        2 => place().prop_map(Op::Read),
        1 => place().prop_map(Op::Symlink),
        1 => place().prop_map(Op::Stat),
        3 => (0..SLOTS as u8, place(), any::<bool>())
            .prop_map(|(slot, path, truncate)| Op::Open { slot, path, truncate }),
        4 => (0..SLOTS as u8, 0..(3 * BS as u32), 0..(BS as u32 + 10), any::<u8>())
            .prop_map(|(slot, offset, len, seed)| Op::WriteFd { slot, offset, len, seed }),
        2 => (0..SLOTS as u8).prop_map(Op::ReadFd),
        2 => (0..SLOTS as u8).prop_map(Op::Close),
    ]
}

// ----- the model -----

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    /// A name of file `n` of [`Model::files`] (its inode: open descriptors
    /// keep it when the name goes).
    File(u32),
    Symlink,
}

/// A POSIX tree as Linux answers for it, for the calls above (modes: files
/// 0644, directories 0755 after the umask; every symlink dangles).
#[derive(Default)]
struct Model {
    nodes: BTreeMap<Vec<Vec<u8>>, Node>,
    files: BTreeMap<u32, Vec<u8>>,
    slots: [Option<u32>; SLOTS],
}

type Names = [Vec<u8>];

/// pwrite into a file's bytes.
fn write_at(bytes: &mut Vec<u8>, offset: usize, chunk: &[u8]) {
    if chunk.is_empty() {
        return;
    }
    if bytes.len() < offset + chunk.len() {
        bytes.resize(offset + chunk.len(), 0);
    }
    bytes[offset..offset + chunk.len()].copy_from_slice(chunk);
}

impl Model {
    fn place(&self, place: &Where) -> P {
        let name = |n: u8| NAMES[n as usize % NAMES.len()].to_vec();
        match place {
            Where::Names(names) => P(names.iter().map(|n| name(*n)).collect()),
            Where::Existing(k) if self.nodes.is_empty() => P(vec![name(*k)]),
            Where::Existing(k) => {
                let nth = *k as usize % self.nodes.len();
                P(self.nodes.keys().nth(nth).cloned().unwrap_or_default())
            }
            Where::Below(k, n) => {
                let dirs: Vec<&Vec<Vec<u8>>> = self
                    .nodes
                    .iter()
                    .filter(|(_, node)| **node == Node::Dir)
                    .map(|(p, _)| p)
                    .collect();
                let mut path = match *k as usize % (dirs.len() + 1) {
                    0 => Vec::new(),
                    i => dirs[i - 1].clone(),
                };
                path.push(name(*n));
                P(path)
            }
        }
    }

    /// Every directory above `path` must be one (a symlink there dangles).
    fn walk(&self, path: &Names) -> R<()> {
        for end in 1..path.len() {
            match self.nodes.get(&path[..end]) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => return Err(libc::ENOTDIR),
                Some(Node::Symlink) | None => return Err(libc::ENOENT),
            }
        }
        Ok(())
    }

    fn get(&self, path: &Names) -> Option<&Node> {
        self.nodes.get(path)
    }

    fn children(&self, dir: &Names) -> Vec<(Vec<u8>, Kind)> {
        self.nodes
            .iter()
            .filter(|(p, _)| p.len() == dir.len() + 1 && p.starts_with(dir))
            .map(|(p, node)| {
                let kind = match node {
                    Node::Dir => Kind::Dir,
                    Node::File(_) => Kind::File,
                    Node::Symlink => Kind::Symlink,
                };
                (p[dir.len()].clone(), kind)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn apply(&mut self, op: &Op<P>) -> R<Out> {
        match op {
            Op::Mkdir(p) | Op::Symlink(p) => {
                let p = p.names();
                self.walk(&p)?;
                if self.get(&p).is_some() {
                    return Err(libc::EEXIST);
                }
                let node = match op {
                    Op::Mkdir(_) => Node::Dir,
                    _ => Node::Symlink,
                };
                self.nodes.insert(p, node);
                Ok(Out::Done)
            }
            Op::Write {
                path,
                truncate,
                offset,
                len,
                seed,
            } => {
                let file = self.open(path, *truncate)?;
                let chunk = data(*len as usize, u64::from(*seed));
                write_at(self.bytes(file), *offset as usize, &chunk);
                Ok(Out::Done)
            }
            Op::Truncate(p, size) => {
                let p = p.names();
                self.walk(&p)?;
                match self.nodes.get(&p).cloned() {
                    None | Some(Node::Symlink) => Err(libc::ENOENT),
                    Some(Node::Dir) => Err(libc::EISDIR),
                    Some(Node::File(file)) => {
                        self.bytes(file).resize(*size as usize, 0);
                        Ok(Out::Done)
                    }
                }
            }
            Op::Unlink(p) => {
                let p = p.names();
                self.walk(&p)?;
                match self.get(&p) {
                    None => Err(libc::ENOENT),
                    Some(Node::Dir) => Err(libc::EISDIR),
                    Some(_) => {
                        self.nodes.remove(&p);
                        Ok(Out::Done)
                    }
                }
            }
            Op::Rmdir(p) => {
                let p = p.names();
                self.walk(&p)?;
                match self.get(&p) {
                    None => Err(libc::ENOENT),
                    Some(Node::Dir) if !self.children(&p).is_empty() => Err(libc::ENOTEMPTY),
                    Some(Node::Dir) => {
                        self.nodes.remove(&p);
                        Ok(Out::Done)
                    }
                    Some(_) => Err(libc::ENOTDIR),
                }
            }
            Op::Rename(from, to, noreplace) => {
                let (from, to) = (from.names(), to.names());
                self.rename(&from, &to, *noreplace).map(|()| Out::Done)
            }
            Op::Readdir(p) => {
                let p = p.names();
                if !p.is_empty() {
                    self.walk(&p)?;
                    match self.get(&p) {
                        None | Some(Node::Symlink) => return Err(libc::ENOENT),
                        Some(Node::File(_)) => return Err(libc::ENOTDIR),
                        Some(Node::Dir) => {}
                    }
                }
                Ok(Out::Listing(self.children(&p)))
            }
            Op::Read(p) => {
                let p = p.names();
                self.walk(&p)?;
                match self.get(&p) {
                    None => Err(libc::ENOENT),
                    Some(Node::Symlink) => Err(libc::ELOOP),
                    Some(Node::Dir) => Err(libc::EISDIR),
                    Some(Node::File(file)) => Ok(Out::Bytes(self.files[file].clone())),
                }
            }
            Op::Stat(p) => {
                let p = p.names();
                self.walk(&p)?;
                match self.get(&p) {
                    None => Err(libc::ENOENT),
                    Some(Node::Dir) => Ok(Out::Stat(Kind::Dir, 1, 0o755)),
                    Some(Node::File(file)) => {
                        let size = self.files[file].len() as u64;
                        Ok(Out::Stat(Kind::File, size, 0o644))
                    }
                    Some(Node::Symlink) => {
                        Ok(Out::Stat(Kind::Symlink, DANGLING.len() as u64, 0o777))
                    }
                }
            }
            Op::Open {
                slot,
                path,
                truncate,
            } => {
                if self.slots[*slot as usize].is_some() {
                    return Ok(Out::Skipped);
                }
                let file = self.open(path, *truncate)?;
                self.slots[*slot as usize] = Some(file);
                Ok(Out::Done)
            }
            Op::WriteFd {
                slot,
                offset,
                len,
                seed,
            } => {
                let Some(file) = self.slots[*slot as usize] else {
                    return Ok(Out::Skipped);
                };
                let chunk = data(*len as usize, u64::from(*seed));
                write_at(self.bytes(file), *offset as usize, &chunk);
                Ok(Out::Done)
            }
            Op::ReadFd(slot) => match self.slots[*slot as usize] {
                None => Ok(Out::Skipped),
                Some(file) => Ok(Out::Bytes(self.files[&file].clone())),
            },
            Op::Close(slot) => match self.slots[*slot as usize].take() {
                None => Ok(Out::Skipped),
                Some(_) => Ok(Out::Done),
            },
        }
    }

    /// open(O_CREAT|O_NOFOLLOW) for writing: the file's number.
    fn open(&mut self, path: &P, truncate: bool) -> R<u32> {
        let p = path.names();
        self.walk(&p)?;
        match self.get(&p) {
            Some(Node::Dir) => Err(libc::EISDIR),
            Some(Node::Symlink) => Err(libc::ELOOP),
            Some(Node::File(file)) => {
                let file = *file;
                if truncate {
                    self.bytes(file).clear();
                }
                Ok(file)
            }
            None => {
                let file = self.files.len() as u32;
                self.files.insert(file, Vec::new());
                self.nodes.insert(p, Node::File(file));
                Ok(file)
            }
        }
    }

    fn bytes(&mut self, file: u32) -> &mut Vec<u8> {
        self.files.get_mut(&file).expect("a file the model made")
    }

    /// rename(2) in Linux's order of checks (do_renameat2, vfs_rename).
    fn rename(&mut self, from: &Names, to: &Names, noreplace: bool) -> R<()> {
        self.walk(from)?;
        self.walk(to)?;
        let source = self.get(from).ok_or(libc::ENOENT)?.clone();
        let target = self.get(to).cloned();
        if noreplace && target.is_some() {
            return Err(libc::EEXIST);
        }
        let (from_dir, to_dir) = (&from[..from.len() - 1], &to[..to.len() - 1]);
        if from_dir != to_dir {
            if to_dir.starts_with(from) {
                return Err(libc::EINVAL);
            }
            if from_dir.starts_with(to) {
                return Err(libc::ENOTEMPTY);
            }
        }
        if from == to {
            return Ok(());
        }
        match (&source, &target) {
            (Node::Dir, Some(Node::File(_) | Node::Symlink)) => return Err(libc::ENOTDIR),
            (Node::File(_) | Node::Symlink, Some(Node::Dir)) => return Err(libc::EISDIR),
            (Node::Dir, Some(Node::Dir)) if !self.children(to).is_empty() => {
                return Err(libc::ENOTEMPTY);
            }
            _ => {}
        }
        self.nodes.remove(to);
        let moved: Vec<Vec<Vec<u8>>> = self
            .nodes
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for old in moved {
            let node = self.nodes.remove(&old).expect("listed just now");
            let mut new = to.to_vec();
            new.extend_from_slice(&old[from.len()..]);
            self.nodes.insert(new, node);
        }
        Ok(())
    }

    fn tree(&self) -> Tree {
        self.nodes
            .iter()
            .map(|(p, node)| {
                let entry = match node {
                    Node::Dir => Entry::Dir { perm: 0o755 },
                    Node::File(file) => Entry::File {
                        perm: 0o644,
                        data: self.files[file].clone(),
                    },
                    Node::Symlink => Entry::Symlink {
                        target: DANGLING.to_vec(),
                    },
                };
                (p.join(&b'/'), entry)
            })
            .collect()
    }
}

// ----- the same steps through the Posix calls -----

/// Runs one step; `slots` holds the descriptors kept open between steps.
fn run(fs: &mut dyn Posix, slots: &mut [Option<u64>; SLOTS], op: &Op<P>) -> R<Out> {
    match op {
        Op::Mkdir(p) => fs.mkdir(&p.bytes(), 0o755).map(|()| Out::Done),
        Op::Symlink(p) => fs.symlink(DANGLING, &p.bytes()).map(|()| Out::Done),
        Op::Write {
            path,
            truncate,
            offset,
            len,
            seed,
        } => {
            let mut flags = libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW;
            if *truncate {
                flags |= libc::O_TRUNC;
            }
            let fd = fs.open(&path.bytes(), flags, 0o644)?;
            let chunk = data(*len as usize, u64::from(*seed));
            let written = fs.write(fd, u64::from(*offset), &chunk);
            let closed = fs.close(fd);
            if written? != chunk.len() {
                return Err(libc::EIO);
            }
            closed.map(|()| Out::Done)
        }
        Op::Truncate(p, size) => fs
            .truncate(&p.bytes(), u64::from(*size))
            .map(|()| Out::Done),
        Op::Unlink(p) => fs.unlink(&p.bytes()).map(|()| Out::Done),
        Op::Rmdir(p) => fs.rmdir(&p.bytes()).map(|()| Out::Done),
        Op::Rename(from, to, noreplace) => fs
            .rename(&from.bytes(), &to.bytes(), *noreplace)
            .map(|()| Out::Done),
        Op::Readdir(p) => fs.readdir(&p.bytes()).map(Out::Listing),
        Op::Read(p) => fs.read_file(&p.bytes()).map(Out::Bytes),
        Op::Stat(p) => fs.lstat(&p.bytes()).map(|s| {
            let (kind, size, perm) = s.shape();
            Out::Stat(kind, size, perm)
        }),
        Op::Open {
            slot,
            path,
            truncate,
        } => {
            if slots[*slot as usize].is_some() {
                return Ok(Out::Skipped);
            }
            let mut flags = libc::O_CREAT | libc::O_RDWR | libc::O_NOFOLLOW;
            if *truncate {
                flags |= libc::O_TRUNC;
            }
            slots[*slot as usize] = Some(fs.open(&path.bytes(), flags, 0o644)?);
            Ok(Out::Done)
        }
        Op::WriteFd {
            slot,
            offset,
            len,
            seed,
        } => {
            let Some(fd) = slots[*slot as usize] else {
                return Ok(Out::Skipped);
            };
            let chunk = data(*len as usize, u64::from(*seed));
            if fs.write(fd, u64::from(*offset), &chunk)? != chunk.len() {
                return Err(libc::EIO);
            }
            Ok(Out::Done)
        }
        Op::ReadFd(slot) => match slots[*slot as usize] {
            None => Ok(Out::Skipped),
            Some(fd) => fs.read_to_end(fd).map(Out::Bytes),
        },
        Op::Close(slot) => match slots[*slot as usize].take() {
            None => Ok(Out::Skipped),
            Some(fd) => fs.close(fd).map(|()| Out::Done),
        },
    }
}

/// Short for messages: a long byte string as its length and first bytes.
fn brief(out: &R<Out>) -> String {
    match out {
        Ok(Out::Bytes(b)) if b.len() > 16 => {
            format!("Ok(Bytes(len {}, {:?}..))", b.len(), &b[..16])
        }
        other => format!("{other:?}"),
    }
}

/// A fresh store for one case: a byte copy of a volume that `globofs init`
/// and `reconcile` made once (making one per case takes most of a second).
struct Case {
    dir: tempfile::TempDir,
    spec: Spec,
}

impl Case {
    fn new(template: &Vol) -> Case {
        let dir = tempfile::tempdir().expect("temp dir");
        let volume = dir.path().join("vol");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&template.spec.volume)
            .arg(&volume)
            .status()
            .expect("run cp");
        assert!(status.success(), "copying the template volume failed");
        let mut spec = template.spec.clone();
        spec.volume = volume;
        Case { dir, spec }
    }

    fn store(&self) -> Store {
        Store::open_spec(&self.spec).expect("open the store")
    }
}

/// The paths where two trees differ, each entry in short.
fn tree_diff(seen: &Tree, expected: &Tree) -> String {
    let short = |e: Option<&Entry>| match e {
        Some(Entry::File { perm, data }) if data.len() > 16 => {
            format!(
                "File {{ perm: {perm:o}, len {}, {:?}.. }}",
                data.len(),
                &data[..16]
            )
        }
        other => format!("{other:?}"),
    };
    let paths: std::collections::BTreeSet<&Vec<u8>> = seen.keys().chain(expected.keys()).collect();
    let mut out = String::new();
    for path in paths {
        let (a, b) = (seen.get(path), expected.get(path));
        if a != b {
            out.push_str(&format!(
                "\n  {}: {} (model: {})",
                vfs_common::show(path),
                short(a),
                short(b)
            ));
        }
    }
    out
}

/// One case; `name_checks`: the core is called with the kernel's own checks
/// of the names it caches too ([`Core::name_checks`]).
fn check(template: &Vol, ops: &[Op<Where>], name_checks: bool) -> Result<(), TestCaseError> {
    let case = Case::new(template);
    let mut local = Local::new(case.dir.path().join("local"));
    let mut core = Core::new(Arc::new(Vfs::new(Arc::new(case.store()))));
    core.name_checks = name_checks;
    let mut model = Model::default();
    let (mut local_fds, mut core_fds) = ([None; SLOTS], [None; SLOTS]);
    let mut steps = String::new();
    // The case's steps, then the close of every descriptor still open.
    let closes = (0..SLOTS as u8).map(Op::Close);
    for (step, op) in ops.iter().cloned().chain(closes).enumerate() {
        let op = &op.place(&model);
        steps.push_str(&format!("\n  {step}: {op:?}"));
        let expected = model.apply(op);
        let on_disk = run(&mut local, &mut local_fds, op);
        prop_assert!(
            on_disk == expected,
            "step {step} {op:?}: the model says {} but a local directory {} (the model is wrong); steps:{steps}",
            brief(&expected),
            brief(&on_disk)
        );
        let got = run(&mut core, &mut core_fds, op);
        prop_assert!(
            got == expected,
            "step {step} {op:?}: the core gave {}, a local directory {}; steps:{steps}",
            brief(&got),
            brief(&expected)
        );
    }
    let expected = model.tree();
    let trees: [(&str, R<Tree>); 4] = [
        ("a local directory", tree(&mut local)),
        ("the core", tree(&mut core)),
        (
            "a fresh Vfs on the same store",
            tree(&mut Core::new(Arc::new(Vfs::new(Arc::new(case.store()))))),
        ),
        ("the store alone", Ok(store_tree(&case.store()))),
    ];
    for (who, seen) in trees {
        let seen =
            seen.map_err(|e| TestCaseError::fail(format!("{who}: errno {e}; steps:{steps}")))?;
        prop_assert!(
            seen == expected,
            "at the end {who} differs from the model:{}\nsteps:{steps}",
            tree_diff(&seen, &expected)
        );
    }
    prop_assert_eq!(core.vfs.open_handle_count(), 0);
    Ok(())
}

/// Runs the cases; the seed is fixed unless `VFS_MODEL_SEED` gives one.
fn run_cases(name_checks: bool) {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config.failure_persistence = None;
    config.max_shrink_iters = 4096;
    let seed: u64 = std::env::var("VFS_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x676c_6f62_6f66_7331);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(config.clone(), rng);
    let ops = prop::collection::vec(op(), 1..=40);
    let template = Vol::new();
    if let Err(err) = runner.run(&ops, |ops| check(&template, &ops, name_checks)) {
        panic!("{err}\n(VFS_MODEL_SEED={seed}, {} cases)", config.cases);
    }
}

/// As through a mount: the kernel answers some errors from its own cache of
/// names before it asks the core.
#[test]
fn the_core_behaves_like_a_model_posix_tree() {
    run_cases(true);
}

/// The core asked for every answer itself (as when the kernel's entry for a
/// name expired). It found: mkdir, symlink and rename of a directory taking
/// the name of a file created and still open, rmdir of it ENOENT, and
/// rename(b, b) of such a file losing its later writes (tests/vfs_protocol.rs,
/// the_core_refuses_names_created_and_still_open and
/// a_rename_onto_its_own_name_keeps_the_writes_of_a_file_still_open).
#[test]
fn the_core_alone_behaves_like_a_model_posix_tree() {
    run_cases(false);
}
