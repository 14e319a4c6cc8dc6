//! `rate_anomaly` (OWASP API4): calls per capture-time bucket, per endpoint and per client,
//! against a learnt baseline.
//!
//! Each tracked endpoint and client keeps an exponentially weighted moving average and
//! variance of its calls per bucket (`alpha`), a slowly decaying peak, and the count of the
//! bucket in progress. When a bucket closes (the next call or tick lands in a later bucket),
//! it is anomalous if the baseline has `min_history_buckets` buckets and the count is at
//! least `min_bucket_calls`, `factor` × the average, the average + `sigmas` standard
//! deviations, and `peak_factor` × the recent peak (or the bucket before was anomalous too,
//! so a sustained burst keeps updating its finding). Then the count joins the baseline, and
//! buckets without calls join it as zeros.

use std::net::IpAddr;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::RateConfig;
use crate::detector::Ctx;
use crate::finding::{owasp, Draft, EndpointRef, FindingKind, Severity, Update};
use crate::util::{round3, NS_PER_SEC};
use crate::Detector;

/// Zero buckets fed one by one into a baseline; beyond, the baseline is taken as empty.
const MAX_ZERO_STEPS: u64 = 512;

/// A baseline of calls per bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ewma {
    /// The bucket in progress and its calls.
    bucket: u64,
    count: u64,
    mean: f64,
    var: f64,
    /// Buckets in the baseline.
    history: u32,
    peak: f64,
    last_anomalous: bool,
    /// The latest bucket with a call.
    #[serde(default)]
    last_active: u64,
}

/// An anomalous bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    bucket: u64,
    calls: u64,
    mean: f64,
    std: f64,
    peak: f64,
}

impl Ewma {
    fn new(bucket: u64) -> Self {
        Ewma {
            bucket,
            count: 0,
            mean: 0.0,
            var: 0.0,
            history: 0,
            peak: 0.0,
            last_anomalous: false,
            last_active: bucket,
        }
    }

    /// Counts a call in the bucket in progress.
    fn hit(&mut self) {
        self.count += 1;
        self.last_active = self.bucket;
    }

    /// Whether the bucket in progress is anomalous against the baseline.
    fn judge(&self, cfg: &RateConfig) -> Option<Verdict> {
        let x = self.count as f64;
        let std = self.var.max(0.0).sqrt();
        let anomalous = self.history >= cfg.min_history_buckets
            && self.count >= cfg.min_bucket_calls
            && x >= cfg.factor * self.mean
            && x >= self.mean + cfg.sigmas * std
            && (x >= cfg.peak_factor * self.peak || self.last_anomalous);
        anomalous.then_some(Verdict {
            bucket: self.bucket,
            calls: self.count,
            mean: self.mean,
            std,
            peak: self.peak,
        })
    }

    fn feed(&mut self, x: f64, cfg: &RateConfig, decay: f64) {
        if self.history == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            self.mean += cfg.alpha * d;
            self.var = (1.0 - cfg.alpha) * (self.var + cfg.alpha * d * d);
        }
        self.peak = (self.peak * decay).max(x);
        self.history = self.history.saturating_add(1);
    }

    /// Closes the bucket in progress and the empty ones up to `to`, which becomes the bucket
    /// in progress; answers the closed bucket's verdict.
    fn roll(&mut self, to: u64, cfg: &RateConfig, decay: f64) -> Option<Verdict> {
        if to <= self.bucket {
            return None;
        }
        let v = self.judge(cfg);
        // An anomalous bucket joins the average clipped, so a burst does not at once become
        // the norm (a lasting change is still learnt within a few buckets).
        let x = self.count as f64;
        let fed = if v.is_some() {
            x.min(cfg.factor * self.mean.max(1.0))
        } else {
            x
        };
        self.feed(fed, cfg, decay);
        self.peak = self.peak.max(x);
        let gap = to - self.bucket - 1;
        for _ in 0..gap.min(MAX_ZERO_STEPS) {
            self.feed(0.0, cfg, decay);
        }
        if gap > MAX_ZERO_STEPS {
            let rest = gap - MAX_ZERO_STEPS;
            self.mean = 0.0;
            self.var = 0.0;
            self.peak *= decay.powf(rest as f64);
            self.history = self
                .history
                .saturating_add(u32::try_from(rest).unwrap_or(u32::MAX));
        }
        self.last_anomalous = v.is_some() && gap == 0;
        self.bucket = to;
        self.count = 0;
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndpointRate {
    endpoint: EndpointRef,
    rate: Ewma,
}

/// The baselines.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    endpoints: FxHashMap<u64, EndpointRate>,
    clients: FxHashMap<IpAddr, Ewma>,
    /// The latest bucket every baseline was rolled to.
    bucket: u64,
}

/// Who an anomaly is about.
#[derive(Debug, Clone)]
enum Subject {
    Endpoint(EndpointRef),
    Client(IpAddr),
}

impl Rates {
    pub fn save(&self) -> Value {
        let mut eps: Vec<(&u64, &EndpointRate)> = self.endpoints.iter().collect();
        eps.sort_unstable_by_key(|e| *e.0);
        let mut clients: Vec<(&IpAddr, &Ewma)> = self.clients.iter().collect();
        clients.sort_unstable_by_key(|e| *e.0);
        json!({
            "endpoints": eps.into_iter().map(|(k, e)| json!({"key": k, "endpoint": e.endpoint, "rate": e.rate})).collect::<Vec<_>>(),
            "clients": clients.into_iter().map(|(ip, r)| json!({"ip": ip, "rate": r})).collect::<Vec<_>>(),
        })
    }

    pub fn load(&mut self, v: &Value, cfg: &RateConfig) -> usize {
        if v.is_null() {
            return 0;
        }
        let mut skipped = 0;
        let list = |k: &str| v.get(k).and_then(Value::as_array).cloned();
        match list("endpoints") {
            Some(items) => {
                for item in items {
                    let key = item.get("key").and_then(Value::as_u64);
                    let e = serde_json::from_value::<EndpointRef>(
                        item.get("endpoint").cloned().unwrap_or(Value::Null),
                    );
                    let r = serde_json::from_value::<Ewma>(
                        item.get("rate").cloned().unwrap_or(Value::Null),
                    );
                    match (key, e, r) {
                        (Some(k), Ok(endpoint), Ok(rate))
                            if self.endpoints.len() < cfg.max_endpoints =>
                        {
                            self.endpoints.insert(k, EndpointRate { endpoint, rate });
                        }
                        _ => skipped += 1,
                    }
                }
            }
            None => skipped += 1,
        }
        match list("clients") {
            Some(items) => {
                for item in items {
                    let ip = item
                        .get("ip")
                        .and_then(|i| i.as_str()?.parse::<IpAddr>().ok());
                    let r = serde_json::from_value::<Ewma>(
                        item.get("rate").cloned().unwrap_or(Value::Null),
                    );
                    match (ip, r) {
                        (Some(ip), Ok(rate)) if self.clients.len() < cfg.max_clients => {
                            self.clients.insert(ip, rate);
                        }
                        _ => skipped += 1,
                    }
                }
            }
            None => skipped += 1,
        }
        skipped
    }
}

impl Detector {
    fn rate_bucket_ns(&self) -> u64 {
        self.cfg.rate_anomaly.bucket_secs.max(1) * NS_PER_SEC
    }

    fn peak_decay(&self) -> f64 {
        0.5f64.powf(1.0 / f64::from(self.cfg.rate_anomaly.peak_half_life_buckets.max(1)))
    }

    pub(crate) fn count_rates(&mut self, c: &Ctx<'_>) {
        let cfg = &self.cfg.rate_anomaly;
        if !cfg.enabled {
            return;
        }
        let b = c.f.ts.as_nanos() / self.rate_bucket_ns();
        let decay = self.peak_decay();
        let mut found: Vec<(Subject, Verdict)> = Vec::new();
        if let (true, Some(e)) = (cfg.endpoints, c.ep) {
            let rates = &mut self.rates.endpoints;
            if !rates.contains_key(&c.ep_key) && rates.len() >= cfg.max_endpoints {
                self.stats.rate_endpoints_dropped += 1;
            } else {
                let r = rates.entry(c.ep_key).or_insert_with(|| EndpointRate {
                    endpoint: EndpointRef {
                        host: e.host.clone(),
                        method: e.method.clone(),
                        path: e.path.clone(),
                    },
                    rate: Ewma::new(b),
                });
                if let Some(v) = r.rate.roll(b, cfg, decay) {
                    found.push((Subject::Endpoint(r.endpoint.clone()), v));
                }
                r.rate.hit();
            }
        }
        if cfg.clients {
            let rates = &mut self.rates.clients;
            if !rates.contains_key(&c.ip) && rates.len() >= cfg.max_clients {
                self.stats.rate_clients_dropped += 1;
            } else {
                let r = rates.entry(c.ip).or_insert_with(|| Ewma::new(b));
                if let Some(v) = r.roll(b, cfg, decay) {
                    found.push((Subject::Client(c.ip), v));
                }
                r.hit();
            }
        }
        for (s, v) in found {
            self.report_rate(s, v);
        }
    }

    /// Closes every baseline's bucket before the one of `now`, and forgets idle ones.
    pub(crate) fn roll_rates(&mut self, now: apiscope_capture::Timestamp) {
        let cfg = &self.cfg.rate_anomaly;
        if !cfg.enabled {
            return;
        }
        let b = now.as_nanos() / self.rate_bucket_ns();
        if b <= self.rates.bucket {
            return;
        }
        self.rates.bucket = b;
        let decay = self.peak_decay();
        let mut found: Vec<(Subject, Verdict)> = Vec::new();
        let before = self.rates.endpoints.len() + self.rates.clients.len();
        self.rates.endpoints.retain(|_, r| {
            if let Some(v) = r.rate.roll(b, cfg, decay) {
                found.push((Subject::Endpoint(r.endpoint.clone()), v));
            }
            b.saturating_sub(r.rate.last_active) <= cfg.endpoint_idle_evict_buckets
        });
        self.rates.clients.retain(|ip, r| {
            if let Some(v) = r.roll(b, cfg, decay) {
                found.push((Subject::Client(*ip), v));
            }
            b.saturating_sub(r.last_active) <= cfg.client_idle_evict_buckets
        });
        self.stats.rate_evicted +=
            (before - self.rates.endpoints.len() - self.rates.clients.len()) as u64;
        found.sort_by(|a, b| subject_order(&a.0, &b.0));
        for (s, v) in found {
            self.report_rate(s, v);
        }
    }

    /// End of input: judges the buckets in progress (without closing them).
    pub(crate) fn peek_rates(&mut self) {
        let cfg = &self.cfg.rate_anomaly;
        if !cfg.enabled {
            return;
        }
        let mut found: Vec<(Subject, Verdict)> = Vec::new();
        for r in self.rates.endpoints.values() {
            if let Some(v) = r.rate.judge(cfg) {
                found.push((Subject::Endpoint(r.endpoint.clone()), v));
            }
        }
        for (ip, r) in &self.rates.clients {
            if let Some(v) = r.judge(cfg) {
                found.push((Subject::Client(*ip), v));
            }
        }
        found.sort_by(|a, b| subject_order(&a.0, &b.0));
        for (s, v) in found {
            self.report_rate(s, v);
        }
    }

    fn report_rate(&mut self, s: Subject, v: Verdict) {
        let bucket_secs = self.cfg.rate_anomaly.bucket_secs.max(1);
        let bucket_ns = self.rate_bucket_ns();
        let ts = apiscope_capture::Timestamp::from_nanos(
            (v.bucket + 1).saturating_mul(bucket_ns).saturating_sub(1),
        );
        let (endpoint, client, detail, who) = match &s {
            Subject::Endpoint(e) => (
                Some((e.host.as_str(), e.method.as_str(), e.path.as_str())),
                None,
                "endpoint",
                format!("{} {} {}", e.method, e.host, e.path),
            ),
            Subject::Client(ip) => (None, Some(*ip), "client", format!("Client {ip}")),
        };
        let d = Draft {
            kind: FindingKind::RateAnomaly,
            endpoint,
            client,
            detail,
        };
        let ratio = if v.mean > 0.0 {
            v.calls as f64 / v.mean
        } else {
            f64::INFINITY
        };
        let severity = if ratio >= 20.0 {
            Severity::High
        } else {
            Severity::Medium
        };
        self.store.upsert(
            &d,
            Update {
                ts,
                add: 1,
                severity,
                owasp: Some(owasp::API4),
                shown_client: None,
            },
            || {
                let what = if client.is_some() { "made" } else { "got" };
                format!(
                    "{who} {what} {} calls in {bucket_secs} s against a usual {:.1}: check for \
                     abuse or a runaway client and rate-limit it.",
                    v.calls, v.mean
                )
            },
            |m| {
                m.insert("scope".into(), detail.into());
                m.insert("bucket_secs".into(), bucket_secs.into());
                m.insert("bucket_calls".into(), v.calls.into());
                m.insert("baseline_mean".into(), round3(v.mean).into());
                m.insert("baseline_std".into(), round3(v.std).into());
                m.insert("recent_peak".into(), round3(v.peak).into());
                let prev = m
                    .get("max_bucket_calls")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                m.insert("max_bucket_calls".into(), prev.max(v.calls).into());
            },
        );
    }
}

fn subject_order(a: &Subject, b: &Subject) -> std::cmp::Ordering {
    match (a, b) {
        (Subject::Endpoint(x), Subject::Endpoint(y)) => x.cmp(y),
        (Subject::Client(x), Subject::Client(y)) => x.cmp(y),
        (Subject::Endpoint(_), Subject::Client(_)) => std::cmp::Ordering::Less,
        (Subject::Client(_), Subject::Endpoint(_)) => std::cmp::Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_learnt_and_a_burst_stands_out() {
        let cfg = RateConfig::default();
        let mut r = Ewma::new(0);
        let mut verdicts = 0;
        for b in 0..30u64 {
            r.count = 40 + b % 5;
            verdicts += usize::from(r.roll(b + 1, &cfg, 0.9995).is_some());
        }
        assert_eq!(verdicts, 0, "steady");
        r.count = 400;
        let v = r.roll(31, &cfg, 0.9995).expect("a burst");
        assert_eq!(v.calls, 400);
        assert!((v.mean - 42.0).abs() < 2.0, "{v:?}");
        // Still high next bucket: the finding goes on.
        r.count = 400;
        assert!(r.roll(32, &cfg, 0.9995).is_some());
    }

    #[test]
    fn idle_buckets_decay_the_baseline() {
        let cfg = RateConfig::default();
        let mut r = Ewma::new(0);
        r.count = 100;
        r.roll(1, &cfg, 0.9995);
        r.roll(2000, &cfg, 0.9995);
        assert_eq!(r.mean, 0.0);
        assert!(r.history > 1000);
    }
}
