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
    // Depth first with an explicit stack: (directory, its parent, its name).
    let mut stack = vec![(attr.gfid, parent, name.clone(), false)];
    while let Some((dir, up, dir_name, emptied)) = stack.pop() {
        if emptied {
            match layer.rmdir(up, &dir_name).await {
                Ok(()) | Err(FsError::NotFound) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        if stack.len() > DEPTH_MAX {
            return Err(FsError::Invalid("directory tree too deep to remove".into()));
        }
        stack.push((dir, up, dir_name, true));
        let mut after = None;
        loop {
            let page = layer.readdir(dir, after.clone(), PAGE).await?;
            for e in &page.entries {
                if e.attr.kind == FileKind::Dir {
                    stack.push((e.attr.gfid, dir, e.name.clone(), false));
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
