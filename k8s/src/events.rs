//! Events on the objects the provisioner works on (events.k8s.io/v1, one
//! series per repeated reason). Publishing is best effort: a failure to
//! write an Event is logged, never the reason a reconcile fails.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// The Events API refuses notes over 1 kB.
const MAX_NOTE: usize = 1000;

pub async fn publish(
    recorder: &Recorder,
    on: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let mut note = note;
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, on).await {
        tracing::warn!(error = %e, reason, "writing an Event failed");
    }
}

pub async fn warn(
    recorder: &Recorder,
    on: &ObjectReference,
    reason: &str,
    action: &str,
    note: String,
) {
    tracing::warn!(reason, action, "{note}");
    publish(recorder, on, EventType::Warning, reason, action, note).await;
}

pub async fn normal(
    recorder: &Recorder,
    on: &ObjectReference,
    reason: &str,
    action: &str,
    note: String,
) {
    tracing::info!(reason, action, "{note}");
    publish(recorder, on, EventType::Normal, reason, action, note).await;
}
