//! `volume heal NAME info --watch`: follows a heal (by `brickfs heald` or
//! another `volume heal`) until the heal indices are empty. Only reads.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::heal::Healer;

use super::human_bytes;
use crate::error::{Error, FsContext, Result};

/// How often the bytes left are re-estimated (each estimate stats up to
/// `BYTES_LIMIT` objects).
const BYTES_EVERY: Duration = Duration::from_secs(5);
const BYTES_LIMIT: usize = 2000;
/// Weight of the newest interval in the smoothed rate.
const RATE_ALPHA: f64 = 0.3;
/// Below this many entries per second there is no ETA.
const MIN_RATE: f64 = 0.01;
/// Longer ETAs are shown as `> 7 d`.
const ETA_MAX_SECS: f64 = 7.0 * 86400.0;

/// Entries healed per second, smoothed over the intervals seen.
#[derive(Default)]
struct Rate {
    last: Option<(Instant, u64)>,
    smoothed: Option<f64>,
}

impl Rate {
    fn update(&mut self, now: Instant, left: u64) {
        if let Some((at, before)) = self.last {
            let dt = now.duration_since(at).as_secs_f64();
            if dt > 0.0 {
                let r = before.saturating_sub(left) as f64 / dt;
                self.smoothed = Some(match self.smoothed {
                    None => r,
                    Some(s) => RATE_ALPHA * r + (1.0 - RATE_ALPHA) * s,
                });
            }
        }
        self.last = Some((now, left));
    }
}

/// `healers`: one per replica set, in volume order; the per-brick counts
/// of different sets are separated by `|`.
pub async fn run(healers: &[Arc<Healer>], interval: Duration) -> Result<ExitCode> {
    let started = Instant::now();
    let mut rate = Rate::default();
    let mut bytes: Option<(u64, bool)> = None;
    let mut bytes_at: Option<Instant> = None;
    let mut seen_work = false;
    loop {
        let mut sets = Vec::with_capacity(healers.len());
        for h in healers {
            sets.push(
                h.info()
                    .await
                    .fs_ctx(|| "reading the heal indices".into())?,
            );
        }
        if !sets.iter().flatten().any(|b| b.up) {
            return Err(Error::Msg("no brick of the volume is reachable".into()));
        }
        let left: u64 = sets.iter().flatten().map(|b| b.entries.len() as u64).sum();
        if left == 0 {
            if seen_work {
                println!("heal complete in {:.1} s", started.elapsed().as_secs_f64());
            } else {
                println!("nothing to heal");
            }
            return Ok(ExitCode::SUCCESS);
        }
        seen_work = true;
        let now = Instant::now();
        rate.update(now, left);
        if bytes_at.is_none_or(|at| now.duration_since(at) >= BYTES_EVERY) {
            // A failed estimate keeps the previous one.
            let mut total = Some((0, true));
            for h in healers {
                total = match (total, h.pending_bytes(BYTES_LIMIT).await) {
                    (Some((t, exact)), Ok((b, e))) => Some((t + b, exact && e)),
                    _ => None,
                };
            }
            if total.is_some() {
                bytes = total;
            }
            bytes_at = Some(now);
        }
        let mut per_brick: Vec<String> = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            if i > 0 {
                per_brick.push("|".into());
            }
            per_brick.extend(set.iter().map(|b| {
                if b.up {
                    b.entries.len().to_string()
                } else {
                    "down".into()
                }
            }));
        }
        println!(
            "{}",
            line(started.elapsed(), left, &per_brick, rate.smoothed, bytes)
        );
        tokio::time::sleep(interval).await;
    }
}

/// `  12.0 s  left 1834 [612 611 611]  rate 152.3/s  bytes left ≥78.2 MiB  ETA 12 s`
fn line(
    elapsed: Duration,
    left: u64,
    per_brick: &[String],
    rate: Option<f64>,
    bytes: Option<(u64, bool)>,
) -> String {
    let rate_text = rate.map_or("-".into(), |r| format!("{r:.1}/s"));
    let bytes_text = match bytes {
        Some((b, true)) => human_bytes(b),
        Some((b, false)) => format!("≥{}", human_bytes(b)),
        None => "?".into(),
    };
    let eta = match rate {
        // A rate decaying towards zero is no rate.
        Some(r) if r >= MIN_RATE => eta_text(left as f64 / r),
        _ => "-".into(),
    };
    format!(
        "{:>7.1} s  left {left} [{}]  rate {rate_text}  bytes left {bytes_text}  ETA {eta}",
        elapsed.as_secs_f64(),
        per_brick.join(" ")
    )
}

/// `42 s`, `3 min 20 s`, `2 h 05 min`, `> 7 d`.
fn eta_text(secs: f64) -> String {
    if !secs.is_finite() || secs > ETA_MAX_SECS {
        return "> 7 d".into();
    }
    let s = secs.round() as u64;
    match s {
        0..=99 => format!("{s} s"),
        100..=5999 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_smoothed_healed_per_second() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        r.update(t0, 1000);
        assert_eq!(r.smoothed, None);
        r.update(t0 + Duration::from_secs(2), 800);
        assert_eq!(r.smoothed, Some(100.0));
        // New blame (left grows) counts as no progress, not negative.
        r.update(t0 + Duration::from_secs(3), 900);
        let s = r.smoothed.unwrap_or(0.0);
        assert!((s - 70.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn line_format() {
        let per = ["612".to_string(), "611".into(), "down".into()];
        assert_eq!(
            line(
                Duration::from_secs(12),
                1223,
                &per,
                Some(100.0),
                Some((3 << 20, false))
            ),
            "   12.0 s  left 1223 [612 611 down]  rate 100.0/s  bytes left ≥3.0 MiB  ETA 12 s"
        );
        assert_eq!(
            line(Duration::ZERO, 5, &per[..1], None, None),
            "    0.0 s  left 5 [612]  rate -  bytes left ?  ETA -"
        );
        assert!(line(Duration::ZERO, 4, &per, Some(1e-300), None).ends_with("ETA -"));
        assert!(line(Duration::ZERO, 100_000, &per, Some(0.05), None).ends_with("ETA > 7 d"));
    }

    #[test]
    fn eta_units() {
        assert_eq!(eta_text(0.2), "0 s");
        assert_eq!(eta_text(42.4), "42 s");
        assert_eq!(eta_text(200.0), "3 min 20 s");
        assert_eq!(eta_text(7500.0), "2 h 05 min");
        assert_eq!(eta_text(1e30), "> 7 d");
    }
}
