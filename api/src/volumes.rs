//! One `subvolume::Manager` (a client stack of the volume) per volume,
//! opened on the first request that names it and kept: opening connects to
//! every brick, far too slow to do per request. Bounded: at most
//! `MAX_VOLUMES` are kept open.

use std::collections::HashMap;
use std::sync::Arc;

use subvolume::Manager;
use tokio::sync::Mutex;

use crate::ApiError;

const MAX_VOLUMES: usize = 64;

pub struct Volumes {
    store_url: String,
    open: Mutex<HashMap<String, Arc<Manager>>>,
}

impl Volumes {
    pub fn new(store_url: &str) -> Volumes {
        Volumes {
            store_url: store_url.to_string(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The manager of `volume`. Held under the lock while opening, so that
    /// many first requests at once open it once.
    pub async fn get(&self, volume: &str) -> Result<Arc<Manager>, ApiError> {
        let mut open = self.open.lock().await;
        if let Some(m) = open.get(volume) {
            return Ok(m.clone());
        }
        if open.len() >= MAX_VOLUMES {
            return Err(ApiError::UnknownVolume {
                volume: volume.to_string(),
                why: format!("this API serves at most {MAX_VOLUMES} volumes"),
            });
        }
        let m =
            Manager::open(&self.store_url, volume)
                .await
                .map_err(|e| ApiError::UnknownVolume {
                    volume: volume.to_string(),
                    why: e.to_string(),
                })?;
        tracing::info!(%volume, "volume opened");
        let m = Arc::new(m);
        open.insert(volume.to_string(), m.clone());
        Ok(m)
    }

    pub async fn close(&self) {
        let open = std::mem::take(&mut *self.open.lock().await);
        for (_, m) in open {
            if let Ok(m) = Arc::try_unwrap(m) {
                m.close().await;
            }
        }
    }
}
