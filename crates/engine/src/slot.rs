//! A run-wide source that is still being read while the walk goes on (`nginx -t`, the kernel
//! log, the rulesets, the security state). Only the steps that judge it wait for it; the
//! first to wait drives the reading and the others share its result. A judge reads `get()`:
//! a source its gather did not wait for is "not read", never a default that passes.

use std::future::Future;
use std::pin::Pin;

type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub struct Slot<T> {
    cell: tokio::sync::OnceCell<T>,
    pending: std::sync::Mutex<Option<Pending<T>>>,
    /// What a waiter gets when the reading was lost: its first waiter was cancelled (the
    /// run's deadline), and the future with it.
    lost: fn() -> T,
}

impl<T: Send + Sync + 'static> Slot<T> {
    /// A value known already (tests, captured facts, a source the run does not need).
    pub fn ready(value: T) -> Slot<T> {
        Slot {
            cell: tokio::sync::OnceCell::new_with(Some(value)),
            pending: std::sync::Mutex::new(None),
            lost: || unreachable_lost(),
        }
    }

    /// A value that `work` computes (typically by awaiting a task already running).
    pub fn pending(work: impl Future<Output = T> + Send + 'static, lost: fn() -> T) -> Slot<T> {
        Slot {
            cell: tokio::sync::OnceCell::new(),
            pending: std::sync::Mutex::new(Some(Box::pin(work))),
            lost,
        }
    }

    /// The value, waiting for it if it is not in yet.
    pub async fn wait(&self) -> &T {
        self.cell
            .get_or_init(|| async {
                let work = match self.pending.lock() {
                    Ok(mut p) => p.take(),
                    Err(poisoned) => poisoned.into_inner().take(),
                };
                match work {
                    Some(w) => w.await,
                    None => (self.lost)(),
                }
            })
            .await
    }

    /// The value if it is in.
    pub fn get(&self) -> Option<&T> {
        self.cell.get()
    }
}

/// A ready slot's cell is always set, so its `lost` is never called.
fn unreachable_lost<T>() -> T {
    unreachable!("a ready slot always holds its value")
}
