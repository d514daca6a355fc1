//! readdir over every set: each set's page in name order, merged; a name
//! on several sets (every directory; a file in the instant rebalance
//! finishes moving it) appears once, link files never.

use std::collections::BTreeMap;

use futures::future::join_all;
use proto::{DirEntry, DirPage, FileKind, FsResult, Gfid, Name};

use super::cache::Loc;
use super::{is_gone, Distribute};
use crate::layer::Layer;

impl Distribute {
    pub(crate) async fn merged_readdir(
        &self,
        dir: Gfid,
        mut after: Option<Name>,
        max: u32,
    ) -> FsResult<DirPage> {
        // A window holding only link files yields nothing: go on past it
        // rather than return an empty page that is not the end.
        loop {
            let (page, last_seen) = self.merge_once(dir, after.clone(), max).await?;
            if !page.entries.is_empty() || page.eof || last_seen.is_none() {
                return Ok(page);
            }
            after = last_seen;
        }
    }

    async fn merge_once(
        &self,
        dir: Gfid,
        after: Option<Name>,
        max: u32,
    ) -> FsResult<(DirPage, Option<Name>)> {
        let max = max.max(1);
        let pages = join_all(self.sets.iter().map(|s| {
            let after = after.clone();
            async move { s.readdir(dir, after, max).await }
        }))
        .await;
        // Names past the end of a set's page, when that set has more, may
        // sort after names that set has not sent yet: only names up to the
        // smallest such end are certain.
        let mut bound: Option<Vec<u8>> = None;
        let mut merged: BTreeMap<Vec<u8>, (usize, DirEntry)> = BTreeMap::new();
        let mut missing = 0;
        let mut first_error = None;
        for (set, page) in pages.into_iter().enumerate() {
            let page = match page {
                Ok(p) => p,
                Err(e) if is_gone(&e) => {
                    missing += 1;
                    first_error.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !page.eof {
                if let Some(last) = page.entries.last() {
                    let last = last.name.as_bytes().to_vec();
                    if bound.as_ref().is_none_or(|b| last < *b) {
                        bound = Some(last);
                    }
                }
            }
            for entry in page.entries {
                let key = entry.name.as_bytes().to_vec();
                if let Some((_, kept)) = merged.get(&key) {
                    // A directory's first set's copy stands for it; a real
                    // file beats anything that may be a link file.
                    if kept.attr.kind == FileKind::Dir || !self.maybe_link(&kept.attr) {
                        continue;
                    }
                }
                merged.insert(key, (set, entry));
            }
        }
        if missing == self.sets.len() {
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        let mut entries = Vec::new();
        let mut cut = false;
        let mut last_seen = None;
        for (key, (set, entry)) in merged {
            if bound.as_ref().is_some_and(|b| key > *b) || entries.len() >= max as usize {
                cut = true;
                break;
            }
            last_seen = Some(entry.name.clone());
            if self.maybe_link(&entry.attr) && self.linkto(set, &entry.attr).await?.is_some() {
                continue;
            }
            self.locations.put(
                entry.attr.gfid,
                if entry.attr.kind == FileKind::Dir {
                    Loc::Dir
                } else {
                    Loc::File(set)
                },
            );
            entries.push(entry);
        }
        let eof = !cut && bound.is_none();
        Ok((DirPage { entries, eof }, last_seen))
    }

    fn maybe_link(&self, attr: &proto::Attr) -> bool {
        attr.kind == FileKind::File && attr.perm & 0o7777 == super::layout::LINKTO_PERM
    }
}
