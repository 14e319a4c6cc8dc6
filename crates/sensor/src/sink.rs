//! The end of the pipeline, on its own thread: calls arrive in request-time order from the
//! [`Merger`](crate::calls::Merger); each is counted in the inventory, written as a JSON line
//! with the endpoint it was counted under, and the state directory gets the changed
//! endpoints every `state.flush_interval_secs` of capture time and at the end.

use std::io::Write;

use anyhow::Context as _;
use apiscope_capture::{Duration, Timestamp};
use apiscope_inventory::inventory::{CallFacts, Inventory};
use apiscope_inventory::store::Store;

use crate::calls::{self, Released};

/// What the inventory needs of a call, extracted on the worker.
pub type Facts = CallFacts;

/// See the module overview.
pub struct Sink {
    out: Option<Box<dyn Write + Send>>,
    buf: Vec<u8>,
    pub inventory: Option<Inventory>,
    store: Option<Store>,
    flush_every: Duration,
    next_flush: Option<Timestamp>,
    last_ts: Timestamp,
    pub flushes: u64,
}

impl Sink {
    pub fn new(
        out: Option<Box<dyn Write + Send>>,
        inventory: Option<Inventory>,
        store: Option<Store>,
        flush_every: Duration,
    ) -> Self {
        Sink {
            out,
            buf: Vec::with_capacity(1 << 17),
            inventory,
            store,
            flush_every,
            next_flush: None,
            last_ts: Timestamp::ZERO,
            flushes: 0,
        }
    }

    pub fn call(&mut self, r: Released<'_, Facts>) -> anyhow::Result<()> {
        let ts = r.key.0;
        self.last_ts = self.last_ts.max(ts);
        let label = match (self.inventory.as_mut(), r.facts) {
            (Some(inv), Some(mut f)) => inv.observe(&mut f),
            _ => None,
        };
        if let Some(out) = self.out.as_mut() {
            self.buf.extend_from_slice(r.head);
            calls::json_opt_str(&mut self.buf, label);
            self.buf.extend_from_slice(r.tail);
            if self.buf.len() >= 1 << 16 {
                out.write_all(&self.buf).context("writing calls")?;
                self.buf.clear();
            }
        }
        if self.store.is_some() {
            let due = *self
                .next_flush
                .get_or_insert_with(|| ts.saturating_add(self.flush_every));
            if ts >= due {
                self.flush()?;
                self.next_flush = Some(ts.saturating_add(self.flush_every));
            }
        }
        Ok(())
    }

    /// Writes the endpoints changed since the last flush to the state store, as one
    /// transaction stamped with the latest capture time seen.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let (Some(store), Some(inv)) = (self.store.as_mut(), self.inventory.as_mut()) else {
            return Ok(());
        };
        let (records, removed) = inv.take_changed();
        store
            .flush(self.last_ts.as_nanos(), &records, &removed)
            .context("writing the state store")?;
        self.flushes += 1;
        Ok(())
    }

    /// Flushes the calls output and the state; returns the inventory.
    pub fn finish(mut self) -> anyhow::Result<Option<Inventory>> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(&self.buf).context("writing calls")?;
            out.flush().context("writing calls")?;
        }
        self.flush()?;
        if let Some(store) = self.store.take() {
            store.close().context("closing the state store")?;
        }
        Ok(self.inventory)
    }
}
