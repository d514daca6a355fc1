//! Removing a directory tree through the client stack (what `delete`
//! does to a sub-volume's data).

use std::sync::Arc;

use client::Layer;
use proto::{FileKind, FsError, FsResult, Gfid, Name};

/// Directories deeper than this are refused rather than recursed into.
const DEPTH_MAX: usize = 4096;
const PAGE: u32 = 512;

/// Removes `parent/name` and everything below it.
pub async fn remove(layer: &Arc<dyn Layer>, parent: Gfid, name: &Name) -> FsResult<()> {
    let attr = match layer.lookup(parent, name).await {
        Ok(a) => a,
        Err(FsError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if attr.kind != FileKind::Dir {
        layer.unlink(parent, name, false).await?;
        return Ok(());
    }
    // Depth first with an explicit stack of (directory, its parent, its
    // name, its depth, emptied already).
    let mut stack = vec![(attr.gfid, parent, name.clone(), 0usize, false)];
    while let Some((dir, up, dir_name, depth, emptied)) = stack.pop() {
        if emptied {
            match layer.rmdir(up, &dir_name).await {
                Ok(()) | Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if depth > DEPTH_MAX {
            return Err(FsError::Invalid("directory tree too deep to remove".into()));
        }
        stack.push((dir, up, dir_name, depth, true));
        let mut after = None;
        loop {
            let page = layer.readdir(dir, after.clone(), PAGE).await?;
            for e in &page.entries {
                if e.attr.kind == FileKind::Dir {
                    stack.push((e.attr.gfid, dir, e.name.clone(), depth + 1, false));
                } else {
                    match layer.unlink(dir, &e.name, false).await {
                        Ok(_) | Err(FsError::NotFound) => {}
                        Err(err) => return Err(err),
                    }
                }
            }
            if page.eof || page.entries.is_empty() {
                break;
            }
            after = page.entries.last().map(|e| e.name.clone());
        }
    }
    Ok(())
}
