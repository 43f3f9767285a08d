//! A value that undoes something when dropped: a lease revoked, a key
//! deleted, a subscription removed.

/// Runs its closure once, when dropped or when [`Guard::release`] is called.
#[must_use = "dropping a Guard undoes what it guards at once"]
pub struct Guard(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Guard {
    /// A guard that runs `undo` when dropped.
    pub fn new(undo: impl FnOnce() + Send + Sync + 'static) -> Self {
        Guard(Some(Box::new(undo)))
    }

    /// Undoes now.
    pub fn release(mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Guard(armed)" } else { "Guard(released)" })
    }
}
