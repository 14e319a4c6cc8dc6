//! `Templater::observe` does not allocate once the nodes of a path exist and its
//! parameters' value tables are full (the hot path: one call per API call).
//!
//! A counting global allocator wraps the system one, for this test binary only.

// GlobalAlloc is an unsafe trait; this wrapper only counts and forwards to System.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use apiscope_inventory::template::{TemplateConfig, Templater};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the only
// extra work is an atomic increment.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const H: &str = "api.example.com";

#[test]
fn observe_on_known_routes_does_not_allocate() {
    let mut t = Templater::new(TemplateConfig {
        max_tracked_values: 64,
        ..TemplateConfig::default()
    });
    // Warm up: create the routes and fill the value tables past their bound.
    let mut paths = Vec::new();
    for i in 0..200u32 {
        paths.push(format!("/users/{i}/orders/{}", i * 7));
        paths.push(format!("/users/{i}"));
        paths.push(format!("/people/n{}x/repos", i % 40));
        // A recurring static beside a learnt parameter: the periodic join checks scan it.
        paths.push("/people/lookout".to_owned());
        paths.push("/users/me".to_owned());
        paths.push(format!("/files/report-{i}.pdf"));
    }
    for p in &paths {
        t.observe(H, p);
    }
    t.drain_changes();
    // New values of known parameters and known literals: no allocation.
    let mut fresh = Vec::new();
    for i in 1000..3000u32 {
        fresh.push(format!("/users/{i}/orders/{}?page=2", i * 3));
        fresh.push(format!("/users/{i}/"));
        fresh.push(format!("/people/n{}x/repos", i % 40));
        fresh.push("/people/lookout".to_owned());
        fresh.push("/users/me".to_owned());
        fresh.push(format!("/files/report-{i}.pdf"));
    }
    let before = t.stats();
    COUNTING.store(true, Ordering::SeqCst);
    let mut sum = 0u64;
    for p in &fresh {
        sum += u64::from(t.observe(H, p).index());
        sum += t.lookup(H, p).map_or(0, |r| u64::from(r.index()));
    }
    COUNTING.store(false, Ordering::SeqCst);
    let n = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(sum > 0);
    let after = t.stats();
    assert_eq!(after.routes_created, before.routes_created, "no new routes");
    let id = t.lookup(H, "/people/lookout").expect("known");
    assert_eq!(t.template(id), "/people/lookout");
    let id = t.lookup(H, "/people/n3x/repos").expect("known");
    assert_eq!(t.template(id), "/people/{id}/repos");
    assert_eq!(n, 0, "observe/lookup allocated {n} times on known routes");
}
