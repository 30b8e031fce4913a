//! A model of a tree edited over several days of fake time, for the tests
//! of the past (`store_past.rs`, `mount_past.rs`): random edits made
//! through the store API with chosen clock readings, and the tree the model
//! says each edit left.
//!
//! Included with `#[path = "common/past_model.rs"] mod past_model;` next to
//! `common/store.rs` (as `store_common`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use globofs::ids::set_test_clock;
use globofs::store::Store;
use globofs::when::Moment;

use crate::store_common::{BS, data, put, vp};

/// 2026-11-28T00:00:00Z: day 0 of the fake history.
pub const DAY0: u64 = 1_795_824_000;
pub const HOUR: u64 = 3600;

/// What the model holds for a path: a directory, or a file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
}

pub type Tree = BTreeMap<String, Node>;

pub fn moment(secs: u64) -> Moment {
    Moment::at_instant(secs, 0)
}

/// Runs `edit` with the store's clock at `secs`.
pub fn at<T>(secs: u64, edit: impl FnOnce() -> T) -> T {
    set_test_clock(Some(Duration::from_secs(secs)));
    let out = edit();
    set_test_clock(None);
    out
}

/// Every directory above `path` in the model (as `put` makes them).
fn model_parents(model: &mut Tree, path: &str) {
    let mut prefix = String::new();
    let names: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for name in &names[..names.len() - 1] {
        prefix.push('/');
        prefix.push_str(name);
        model.insert(prefix.clone(), Node::Dir);
    }
}

fn model_remove_tree(model: &mut Tree, path: &str) {
    let below = format!("{path}/");
    model.retain(|p, _| p != path && !p.starts_with(&below));
}

/// Random edits over five days, one every few hours, with the model's tree
/// after each; returns (time, tree) per edit.
pub fn history(store: &Store, seed: u64) -> Vec<(u64, Tree)> {
    let mut rng = Rng(seed | 1);
    let mut model = Tree::new();
    let mut out = Vec::new();
    let mut now = DAY0;
    let names = ["a", "b", "c"];
    for step in 0..60u64 {
        now += HOUR * (1 + rng.below(5));
        let dir = names[rng.below(3) as usize];
        let sub = names[rng.below(3) as usize];
        let file = format!("/{dir}/{sub}/f{}", rng.below(3));
        match rng.below(10) {
            0..=4 => {
                // Write (create or overwrite) a file.
                let bytes = data(rng.below(3 * BS as u64) as usize + 1, step + seed);
                if model
                    .get(&format!("/{dir}"))
                    .is_some_and(|n| *n != Node::Dir)
                    || model
                        .get(&format!("/{dir}/{sub}"))
                        .is_some_and(|n| *n != Node::Dir)
                {
                    continue;
                }
                at(now, || put(store, &vp(&file), &bytes));
                model_parents(&mut model, &file);
                model.insert(file, Node::File(bytes));
            }
            5..=6 => {
                if model.remove(&file).is_some() {
                    at(now, || store.remove(&vp(&file)).unwrap());
                }
            }
            7 => {
                let path = format!("/{dir}");
                if model.contains_key(&path) {
                    at(now, || store.remove_tree(&vp(&path)).unwrap());
                    model_remove_tree(&mut model, &path);
                }
            }
            _ => {
                // Rename a directory to another top-level name.
                let (from, to) = (format!("/{dir}"), format!("/{sub}"));
                if from != to && model.contains_key(&from) && !model.contains_key(&to) {
                    at(now, || store.rename(&vp(&from), &vp(&to), true).unwrap());
                    let moved: Vec<(String, Node)> = model
                        .iter()
                        .filter(|(p, _)| **p == from || p.starts_with(&format!("{from}/")))
                        .map(|(p, n)| (format!("{to}{}", &p[from.len()..]), n.clone()))
                        .collect();
                    model_remove_tree(&mut model, &from);
                    model.extend(moved);
                }
            }
        }
        out.push((now, model.clone()));
    }
    out
}

pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
