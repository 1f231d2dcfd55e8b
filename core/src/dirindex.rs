//! The workspace directory's sorted index, kept on the workspace shard in
//! memory beside the handle directory (rebuilt at restore from the
//! directory and the snapshot's display names).
//!
//! Order: by sort key — the lower-cased display name, or the handle when
//! there is none — then user id. A prefix search matches the handle or the
//! display name: it merges two ordered streams, the sort-key entries that
//! start with the prefix and the handle entries that do (minus users
//! already in the first), so a page costs O(limit · log n) whatever the
//! workspace size, and the cursor is the `(key, user)` of the last entry.
//!
//! Memory per confirmed user: the `Person` (handle, display name, version)
//! and two ordered-set entries (sort key, handle), about 200 bytes plus
//! twice the names' bytes: ~25 MB for 100,000 users.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::profile::sort_key;
use crate::types::{DirectoryCursor, DirectoryEntry, UserId};

/// One user as the directory knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Person {
    /// The handle, once the user's creation is confirmed (listed only then).
    pub handle: Option<String>,
    /// Display name from the home shard (may be empty).
    pub display_name: String,
    /// The profile version the display name is from (0: none yet).
    pub version: u64,
}

/// The sorted directory of one workspace.
#[derive(Debug, Default)]
pub struct DirIndex {
    /// Every confirmed user, and users whose display name arrived first.
    people: BTreeMap<UserId, Person>,
    /// Listed users by (sort key, user).
    by_key: BTreeSet<(String, UserId)>,
    /// Listed users by (handle, user).
    by_handle: BTreeSet<(String, UserId)>,
}

impl DirIndex {
    fn unlist(&mut self, user: UserId) {
        if let Some(Person {
            handle: Some(h),
            display_name,
            ..
        }) = self.people.get(&user)
        {
            self.by_key.remove(&(sort_key(h, display_name), user));
            self.by_handle.remove(&(h.clone(), user));
        }
    }

    fn list(&mut self, user: UserId) {
        if let Some(Person {
            handle: Some(h),
            display_name,
            ..
        }) = self.people.get(&user)
        {
            self.by_key.insert((sort_key(h, display_name), user));
            self.by_handle.insert((h.clone(), user));
        }
    }

    /// The user's creation is confirmed: list them under `handle`.
    pub fn confirm(&mut self, user: UserId, handle: &str) {
        self.unlist(user);
        self.people.entry(user).or_default().handle = Some(handle.to_owned());
        self.list(user);
    }

    /// The version the directory holds for `user` (0: none).
    pub fn version(&self, user: UserId) -> u64 {
        self.people.get(&user).map_or(0, |p| p.version)
    }

    /// Records a display name at `version`; false (and nothing changes) if
    /// the directory holds that version or a later one.
    pub fn set_name(&mut self, user: UserId, display_name: &str, version: u64) -> bool {
        if version <= self.version(user) {
            return false;
        }
        self.unlist(user);
        let p = self.people.entry(user).or_default();
        p.display_name = display_name.to_owned();
        p.version = version;
        self.list(user);
        true
    }

    /// Display names held (for snapshots): (user, name, version), by user.
    pub fn names(&self) -> impl Iterator<Item = (UserId, &str, u64)> + '_ {
        self.people
            .iter()
            .filter(|(_, p)| p.version > 0)
            .map(|(u, p)| (*u, p.display_name.as_str(), p.version))
    }

    /// Listed users.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nobody is listed.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn entry(&self, user: UserId) -> Option<DirectoryEntry> {
        let p = self.people.get(&user)?;
        Some(DirectoryEntry {
            user,
            handle: p.handle.clone()?,
            display_name: p.display_name.clone(),
            version: p.version,
        })
    }

    /// A page: at most `limit` entries after `after` whose handle or
    /// display name starts with `prefix` (case-insensitive), and the cursor
    /// of the next page if there are more.
    pub fn page(
        &self,
        prefix: &str,
        after: Option<&DirectoryCursor>,
        limit: usize,
    ) -> (Vec<DirectoryEntry>, Option<DirectoryCursor>) {
        let prefix = prefix.to_lowercase();
        let from = (prefix.clone(), UserId(0));
        let start = match after {
            Some(c) if (c.key.as_str(), c.user) >= (prefix.as_str(), UserId(0)) => {
                Bound::Excluded((c.key.clone(), c.user))
            }
            _ => Bound::Included(from),
        };
        let in_prefix = |k: &&(String, UserId)| k.0.starts_with(&prefix);
        let mut a = self
            .by_key
            .range((start.clone(), Bound::Unbounded))
            .take_while(in_prefix)
            .peekable();
        // Handle matches whose sort key does not match (those are in `a`).
        let mut b = self
            .by_handle
            .range((start, Bound::Unbounded))
            .take_while(in_prefix)
            .filter(|(_, u)| {
                self.people.get(u).is_some_and(|p| {
                    let h = p.handle.as_deref().unwrap_or("");
                    !sort_key(h, &p.display_name).starts_with(&prefix)
                })
            })
            .peekable();
        let mut picked: Vec<&(String, UserId)> = Vec::with_capacity(limit + 1);
        while picked.len() <= limit {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if y < x => b.next(),
                (Some(_), _) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => None,
            };
            match next {
                Some(k) => picked.push(k),
                None => break,
            }
        }
        let more = picked.len() > limit;
        picked.truncate(limit);
        let next = match (more, picked.last()) {
            (true, Some((key, user))) => Some(DirectoryCursor {
                key: key.clone(),
                user: *user,
            }),
            _ => None,
        };
        let entries = picked.iter().filter_map(|(_, u)| self.entry(*u)).collect();
        (entries, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(people: &[(u64, &str, &str)]) -> DirIndex {
        let mut d = DirIndex::default();
        for (id, handle, name) in people {
            d.confirm(UserId(*id), handle);
            if !name.is_empty() {
                assert!(d.set_name(UserId(*id), name, 1));
            }
        }
        d
    }

    fn all(d: &DirIndex, prefix: &str, limit: usize) -> Vec<Vec<u64>> {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let (entries, next) = d.page(prefix, after.as_ref(), limit);
            pages.push(entries.iter().map(|e| e.user.0).collect());
            match next {
                Some(n) => after = Some(n),
                None => return pages,
            }
        }
    }

    #[test]
    fn sorted_by_display_name_then_handle_and_paged() {
        let d = index(&[
            (1, "zed", "Anna"),
            (2, "bob", ""),
            (3, "carl", "Zoe"),
            (4, "al", ""),
            (5, "ann", "anna"),
        ]);
        assert_eq!(all(&d, "", 10), vec![vec![4, 1, 5, 2, 3]]);
        assert_eq!(all(&d, "", 2), vec![vec![4, 1], vec![5, 2], vec![3]]);
        assert_eq!(all(&d, "", 5), vec![vec![4, 1, 5, 2, 3]]);
    }

    #[test]
    fn prefix_matches_handle_or_display_name_without_duplicates() {
        let d = index(&[
            (1, "zed", "Anna"),   // display name matches "an"
            (2, "andy", "Bert"),  // handle matches
            (3, "anne", ""),      // both (sort key is the handle)
            (4, "carl", "Carla"), // neither
            (5, "ant", "Ant"),    // both
        ]);
        // Merged by the matched name: "andy"(2), "anna"(1), "anne"(3), "ant"(5).
        assert_eq!(all(&d, "AN", 10), vec![vec![2, 1, 3, 5]]);
        assert_eq!(all(&d, "an", 1), vec![vec![2], vec![1], vec![3], vec![5]]);
        assert_eq!(all(&d, "car", 10), vec![vec![4]]);
        assert_eq!(all(&d, "x", 10), vec![Vec::<u64>::new()]);
    }

    #[test]
    fn renames_move_entries_and_old_versions_are_ignored() {
        let mut d = index(&[(1, "ann", ""), (2, "bob", "")]);
        assert!(d.set_name(UserId(2), "Aaron", 1));
        assert_eq!(all(&d, "", 10), vec![vec![2, 1]]);
        assert!(!d.set_name(UserId(2), "Zzz", 1));
        assert_eq!(d.version(UserId(2)), 1);
        // A name that arrives before the confirmation is listed with it.
        assert!(d.set_name(UserId(3), "Abe", 4));
        assert_eq!(d.len(), 2);
        d.confirm(UserId(3), "abe");
        assert_eq!(all(&d, "", 10), vec![vec![2, 3, 1]]);
        let names: Vec<_> = d.names().map(|(u, n, v)| (u.0, n.to_owned(), v)).collect();
        assert_eq!(names, vec![(2, "Aaron".into(), 1), (3, "Abe".into(), 4)]);
    }
}
