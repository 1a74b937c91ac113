//! The machinery every section's checks share: the [`Checker`] that collects
//! faults, and helpers for fields and lists.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::context::ValidationContext;
use super::errors::{FieldError, ValidationErrors};
use super::host_paths::{self, AgentDir};
use crate::limits::{MAX_ERRORS, MAX_STRING_BYTES};
use crate::types::{AbsPath, nets_overlap, parse_network, zos_reserved};

/// Collects faults while the sections are checked.
pub(super) struct Checker<'a> {
    pub(super) ctx: &'a ValidationContext,
    pub(super) errors: Vec<FieldError>,
    dropped: usize,
}

/// Items of a list, `None` where an item was refused; `complete` is false
/// when the list as a whole was refused.
pub(super) struct Items<T> {
    pub(super) items: Vec<Option<T>>,
    pub(super) complete: bool,
}

impl<T> Items<T> {
    pub(super) fn refused() -> Self {
        Self {
            items: Vec::new(),
            complete: false,
        }
    }

    /// The accepted items with their indices.
    pub(super) fn valid(&self) -> impl Iterator<Item = (usize, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| item.as_ref().map(|item| (i, item)))
    }

    pub(super) fn all_valid(&self) -> bool {
        self.complete && self.items.iter().all(Option::is_some)
    }

    pub(super) fn build(self) -> Option<Vec<T>> {
        if self.complete {
            self.items.into_iter().collect()
        } else {
            None
        }
    }
}

/// Records `key` as seen at `index`; returns where it was seen first if it
/// is a duplicate.
pub(super) fn first_seen<K: Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    index: usize,
) -> Option<usize> {
    match seen.entry(key) {
        Entry::Occupied(entry) => Some(*entry.get()),
        Entry::Vacant(entry) => {
            entry.insert(index);
            None
        }
    }
}

impl<'a> Checker<'a> {
    pub(super) fn new(ctx: &'a ValidationContext) -> Self {
        Self {
            ctx,
            errors: Vec::new(),
            dropped: 0,
        }
    }

    pub(super) fn fail(&mut self, path: impl Into<String>, message: impl fmt::Display) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(FieldError {
                path: path.into(),
                message: message.to_string(),
            });
        } else {
            self.dropped += 1;
        }
    }

    pub(super) fn finish(mut self) -> ValidationErrors {
        if self.dropped > 0 {
            self.errors.push(FieldError {
                path: String::new(),
                message: format!("… and {} more errors", self.dropped),
            });
        }
        if self.errors.is_empty() {
            // Unreachable by construction: a part is missing only after a fault.
            self.errors.push(FieldError {
                path: String::new(),
                message: "invalid spec".to_owned(),
            });
        }
        ValidationErrors {
            errors: self.errors,
        }
    }

    pub(super) fn fits(&mut self, path: &str, text: &str) -> bool {
        if text.len() > MAX_STRING_BYTES {
            self.fail(path, format!("longer than {MAX_STRING_BYTES} bytes"));
            return false;
        }
        true
    }

    /// A list's length against its limit.
    pub(super) fn list_fits(&mut self, path: &str, len: usize, max: usize) -> bool {
        if len > max {
            self.fail(path, format!("at most {max} entries, not {len}"));
            return false;
        }
        true
    }

    pub(super) fn parse<T>(&mut self, path: &str, text: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        if !self.fits(path, text) {
            return None;
        }
        match text.parse() {
            Ok(value) => Some(value),
            Err(err) => {
                self.fail(path, err);
                None
            }
        }
    }

    /// Like [`parse`](Self::parse), with `default` standing in for an empty value.
    pub(super) fn parse_or<T>(&mut self, path: &str, text: &str, default: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parse(path, if text.is_empty() { default } else { text })
    }

    pub(super) fn ip(&mut self, path: &str, text: &str) -> Option<IpAddr> {
        if text.is_empty() {
            self.fail(path, "required");
            return None;
        }
        if !self.fits(path, text) {
            return None;
        }
        match text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let hint = if text.contains('/') {
                    " (without a prefix length)"
                } else {
                    ""
                };
                self.fail(path, format!("not an IP address{hint}"));
                None
            }
        }
    }

    pub(super) fn network(&mut self, path: &str, text: &str) -> Option<IpNet> {
        if !self.fits(path, text) {
            return None;
        }
        match parse_network(text) {
            Ok(net) => Some(net),
            Err(err) => {
                self.fail(path, err);
                None
            }
        }
    }

    pub(super) fn not_reserved(&mut self, path: &str, net: &IpNet) -> bool {
        let mut ok = true;
        for reserved in zos_reserved() {
            if nets_overlap(net, &reserved) {
                self.fail(
                    path,
                    format!("overlaps {reserved}, which zOS uses for its own networks"),
                );
                ok = false;
            }
        }
        ok
    }

    /// A directory the agent mounts or hands to an add-on: not `/`, not in
    /// a system tree outside the allow-list, not the agent's own state or
    /// run dir (nor an ancestor or a descendant of one), not through a
    /// symlink the host reported (see [`host_paths`]).
    pub(super) fn data_dir(&mut self, path: &str, text: &str, default: &str) -> Option<AbsPath> {
        let dir: AbsPath = self.parse_or(path, text, default)?;
        let state_dir = self.ctx.state_dir_or_default();
        let run_dir = self.ctx.run_dir_or_default();
        let agent_dirs = [
            AgentDir {
                what: "own state dir",
                path: &state_dir,
            },
            AgentDir {
                what: "run dir",
                path: &run_dir,
            },
        ];
        let services = self.ctx.service_dirs.clone();
        let extra: Vec<&AbsPath> = services
            .iter()
            .flat_map(|d| [&d.k3s_data_dir, &d.kubelet_dir, &d.containerd_root])
            .collect();
        if let Some(why) = host_paths::refusal(&dir, &agent_dirs, &extra) {
            self.fail(path, why);
            return None;
        }
        if let Some(link) = self.ctx.symlinked_paths.get(dir.as_str()) {
            self.fail(
                path,
                format!(
                    "{link} is a symlink on this host; tfagent mounts only on real directories \
                     (a mount there would land on the link's target)"
                ),
            );
            return None;
        }
        Some(dir)
    }
}
