//! The lossless state form of a [`ParamSet`]: [`ParamSet::save`] and [`ParamSet::load`].
//!
//! The derived [`Serialize`](serde::Serialize) of `ParamSet` (the inventory's summary) holds
//! every count, but not the two per-parameter fields that tell which sample touched a
//! parameter last and how often it was sent in that sample; they decide `repeated` and
//! `present` during a sample and take part in `==`. The state is the summary's shape plus
//! those two fields (`last_sample`, `in_sample`) and a `version`, written and read by hand
//! like [`Schema`](crate::schema::Schema)'s state (see [`crate::schema::state`] for the shared
//! conventions and [`StateError`]):
//!
//! ```json
//! {"version": 1, "samples": 2, "truncated_samples": 1,
//!  "identifier_names": {"integer": 1}, "names_dropped": 3,
//!  "params": {"tag": {"present": 2, "occurrences": 3, "repeated": 1,
//!                     "kinds": {"string": 3}, "last_sample": 2, "in_sample": 1},
//!             "avatar": {"present": 1, "occurrences": 1, "files": 1,
//!                        "content_types": {"image/png": 1}, "last_sample": 1,
//!                        "in_sample": 1}}}
//! ```
//!
//! Zero counts and empty maps are left out; unknown keys are ignored.
//!
//! [`ParamSet::load`] fails with [`StateError`] (never panics) on wrong types, missing
//! `version`, `samples`, `present` or `occurrences`, counts beyond
//! [`MAX_STATE_COUNT`](crate::schema::state::MAX_STATE_COUNT), an empty parameter name or
//! media type, and counts that contradict each other: `present` above the set's `samples`
//! or the parameter's `occurrences`, `repeated` above `present`, `occurrences` other than
//! the sum of the kinds, `no_value`, `files` and `incomplete`, more media types counted
//! than `files`, `last_sample` after `samples`, `truncated_samples` above `samples`.
//!
//! A state beyond the *configured* bounds is accepted and cut down to them, counted as
//! observing would count it: names longer than `max_name_bytes` are dropped
//! (`names_too_long`), names beyond `max_names_per_set` (in name order, as
//! [`ParamSet::merge`] keeps them) are dropped (`names_limit`), both adding to the set's
//! `names_dropped`; media types beyond `max_content_types_per_param` are dropped
//! (`content_types_limit`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Param, ParamConfig, ParamSet, ParamStats};
use crate::schema::state::{check_version, count, entry, object, At, STATE_VERSION};
use crate::schema::{KindCounts, StateError};

/// Inserts `n` under `key` unless it is 0.
fn put_count(m: &mut Map<String, Value>, key: &str, n: u64) {
    if n != 0 {
        m.insert(key.to_owned(), n.into());
    }
}

impl Param {
    fn to_state(&self) -> Value {
        let mut m = Map::new();
        m.insert("present".into(), self.present.into());
        m.insert("occurrences".into(), self.occurrences.into());
        put_count(&mut m, "repeated", self.repeated);
        put_count(&mut m, "no_value", self.no_value);
        if !self.kinds.is_empty() {
            m.insert("kinds".into(), self.kinds.to_state());
        }
        put_count(&mut m, "files", self.files);
        if !self.content_types.is_empty() {
            let cts = self
                .content_types
                .iter()
                .map(|(ct, &n)| (ct.clone(), Value::from(n)))
                .collect();
            m.insert("content_types".into(), Value::Object(cts));
        }
        put_count(&mut m, "incomplete", self.incomplete);
        put_count(&mut m, "last_sample", self.last_sample);
        put_count(&mut m, "in_sample", u64::from(self.in_sample));
        Value::Object(m)
    }

    /// A parameter of a set with `samples` samples from its state.
    fn from_state(v: &Value, at: &At<'_>, samples: u64) -> Result<Param, StateError> {
        let m = object(v, at)?;
        let in_sample = count(m, "in_sample", at, false)?;
        let mut p = Param {
            present: count(m, "present", at, true)?,
            occurrences: count(m, "occurrences", at, true)?,
            repeated: count(m, "repeated", at, false)?,
            no_value: count(m, "no_value", at, false)?,
            kinds: match entry(m, "kinds") {
                Some(k) => KindCounts::from_state(k, &at.key("kinds"))?,
                None => KindCounts::default(),
            },
            files: count(m, "files", at, false)?,
            content_types: BTreeMap::new(),
            incomplete: count(m, "incomplete", at, false)?,
            last_sample: count(m, "last_sample", at, false)?,
            in_sample: u32::try_from(in_sample)
                .map_err(|_| at.key("in_sample").invalid("count too large"))?,
        };
        at.key("present").ensure(
            p.present <= samples,
            "present in more samples than the set has",
        )?;
        at.key("present").ensure(
            p.present <= p.occurrences,
            "present more often than it occurred",
        )?;
        at.key("repeated").ensure(
            p.repeated <= p.present,
            "repeated in more samples than present",
        )?;
        at.key("last_sample")
            .ensure(p.last_sample <= samples, "after the set's last sample")?;
        let parts = [p.kinds.total(), p.no_value, p.files, p.incomplete];
        let sum = parts.iter().try_fold(0u64, |a, &b| a.checked_add(b));
        at.key("occurrences").ensure(
            sum == Some(p.occurrences),
            "not the sum of kinds, no_value, files and incomplete",
        )?;
        if let Some(cts) = entry(m, "content_types") {
            let at = at.key("content_types");
            let mut total = 0u64;
            for (ct, n) in object(cts, &at)? {
                let at = at.name(ct);
                at.ensure(!ct.is_empty(), "an empty media type")?;
                let n = crate::schema::state::count_value(n, &at)?;
                total = crate::schema::state::add_counts(total, n, &at)?;
                at.ensure(total <= p.files, "more media types counted than files")?;
                p.content_types.insert(ct.clone(), n);
            }
        }
        Ok(p)
    }

    /// Drops the media types beyond `max_content_types_per_param` (the first ones in order
    /// are kept, as [`ParamSet::merge`] keeps them).
    fn cut_content_types(&mut self, cfg: &ParamConfig, stats: &mut ParamStats) {
        let keep = cfg.max_content_types_per_param;
        let len = self.content_types.len();
        if len > keep {
            let all = std::mem::take(&mut self.content_types);
            self.content_types = all.into_iter().take(keep).collect();
            stats.content_types_limit += (len - keep) as u64;
        }
    }
}

impl ParamSet {
    /// The lossless state of this set, to store and give to [`ParamSet::load`] at the next
    /// start. See [`state`](crate::params::state) for the format.
    pub fn save(&self) -> Value {
        let mut m = Map::new();
        m.insert("version".into(), STATE_VERSION.into());
        m.insert("samples".into(), self.samples.into());
        let params: Map<String, Value> = self
            .params
            .iter()
            .map(|(name, p)| (name.clone(), p.to_state()))
            .collect();
        if !params.is_empty() {
            m.insert("params".into(), Value::Object(params));
        }
        if !self.identifier_names.is_empty() {
            m.insert("identifier_names".into(), self.identifier_names.to_state());
        }
        put_count(&mut m, "names_dropped", self.names_dropped);
        put_count(&mut m, "truncated_samples", self.truncated_samples);
        Value::Object(m)
    }

    /// A set back from what [`ParamSet::save`] wrote, within the bounds of `cfg`: names and
    /// media types beyond them are dropped and counted in `stats` (`names_too_long`,
    /// `names_limit`, `content_types_limit`) and in the set's `names_dropped`. Unknown keys
    /// are ignored.
    ///
    /// # Errors
    ///
    /// [`StateError`] when `state` is not a parameter-set state this code could have
    /// written; never panics.
    pub fn load(
        state: &Value,
        cfg: &ParamConfig,
        stats: &mut ParamStats,
    ) -> Result<ParamSet, StateError> {
        let top = At::Top;
        let m = object(state, &top)?;
        check_version(m, &top)?;
        let samples = count(m, "samples", &top, true)?;
        let truncated_samples = count(m, "truncated_samples", &top, false)?;
        top.key("truncated_samples")
            .ensure(truncated_samples <= samples, "more than `samples`")?;
        let mut set = ParamSet {
            samples,
            params: BTreeMap::new(),
            identifier_names: match entry(m, "identifier_names") {
                Some(v) => KindCounts::from_state(v, &top.key("identifier_names"))?,
                None => KindCounts::default(),
            },
            names_dropped: count(m, "names_dropped", &top, false)?,
            truncated_samples,
        };
        let Some(params) = entry(m, "params") else {
            return Ok(set);
        };
        let at_params = top.key("params");
        let mut all = BTreeMap::new();
        for (name, v) in object(params, &at_params)? {
            let at = at_params.name(name);
            at.ensure(!name.is_empty(), "an empty parameter name")?;
            all.insert(name, Param::from_state(v, &at, samples)?);
        }
        for (name, p) in all {
            if name.len() > cfg.max_name_bytes {
                stats.names_too_long += 1;
                set.names_dropped = set.names_dropped.saturating_add(1);
            } else if set.params.len() >= cfg.max_names_per_set {
                stats.names_limit += 1;
                set.names_dropped = set.names_dropped.saturating_add(1);
            } else {
                let mut p = p;
                p.cut_content_types(cfg, stats);
                set.params.insert(name.clone(), p);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ContentType;
    use super::*;
    use serde_json::json;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len() as u64) as usize]
        }

        fn word(&mut self, items: &[&'static str]) -> &'static str {
            items[self.below(items.len() as u64) as usize]
        }
    }

    /// Raw (still encoded) names: arrays, indexes, encodings, identifiers, empty, long.
    const NAMES: [&str; 18] = [
        "id",
        "ids[0]",
        "ids[1]",
        "ids[]",
        "tag",
        "user[name]",
        "user[0][id]",
        "%20x",
        "a+b",
        "%C3%BCn%C3%AF",
        "%zz",
        "",
        "1699999999",
        "123e4567-e89b-12d3-a456-426614174000",
        "q",
        "sort",
        "x%3Dy",
        "a_very_long_parameter_name_that_goes_on_and_on_and_on",
    ];
    const VALUES: [&str; 12] = [
        "42",
        "-7",
        "3.14",
        "",
        "ACTIVE",
        "two+words",
        "2024-01-05",
        "a%40example.com",
        "true",
        "%FF",
        "123e4567-e89b-12d3-a456-426614174000",
        "x",
    ];
    const MEDIA: [&str; 6] = [
        "image/png",
        "Image/PNG; q=1",
        "application/pdf",
        "text/plain; charset=utf-8",
        "",
        "application/octet-stream",
    ];

    fn random_pairs(rng: &mut Rng) -> String {
        let n = rng.below(7);
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push_str(if rng.below(8) == 0 { "&&" } else { "&" });
            }
            out.push_str(rng.word(&NAMES));
            match rng.below(4) {
                0 => {}
                _ => {
                    out.push('=');
                    out.push_str(rng.word(&VALUES));
                }
            }
        }
        out
    }

    fn random_multipart(rng: &mut Rng) -> Vec<u8> {
        let mut body = Vec::new();
        if rng.below(8) == 0 {
            body.extend_from_slice(b"preamble\r\n");
        }
        for _ in 0..rng.below(5) {
            body.extend_from_slice(b"--XyZ\r\n");
            let name = percent_free(rng.word(&NAMES));
            if rng.below(10) == 0 {
                body.extend_from_slice(b"Content-Disposition: form-data\r\n\r\nx\r\n");
                continue;
            }
            if rng.below(3) == 0 {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"f.bin\"\r\n"
                    )
                    .as_bytes(),
                );
                if rng.below(4) != 0 {
                    body.extend_from_slice(
                        format!("Content-Type: {}\r\n", rng.word(&MEDIA)).as_bytes(),
                    );
                }
                body.extend_from_slice(b"\r\n\x89PNG\x00\xff\r\n");
            } else {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(rng.word(&VALUES).as_bytes());
                body.extend_from_slice(b"\r\n");
            }
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        if rng.below(4) == 0 {
            let end = rng.below(body.len() as u64) as usize;
            body.truncate(end);
        }
        body
    }

    fn percent_free(name: &str) -> String {
        name.replace('%', "")
    }

    /// One call's input.
    #[derive(Debug)]
    enum Input {
        Query(String),
        Form(Vec<u8>, bool),
        Multipart(Vec<u8>),
    }

    fn random_input(rng: &mut Rng) -> Input {
        match rng.below(3) {
            0 => Input::Query(random_pairs(rng)),
            1 => {
                let mut b = random_pairs(rng).into_bytes();
                let cut = rng.below(3) == 0;
                if cut && !b.is_empty() {
                    let end = rng.below(b.len() as u64) as usize;
                    b.truncate(end);
                }
                Input::Form(b, cut)
            }
            _ => Input::Multipart(random_multipart(rng)),
        }
    }

    fn observe(set: &mut ParamSet, input: &Input, cfg: &ParamConfig, stats: &mut ParamStats) {
        match input {
            Input::Query(q) => set.observe_query(q, cfg, stats),
            Input::Form(b, cut) => set.observe_form(b, *cut, cfg, stats),
            Input::Multipart(b) => {
                let ct = ContentType::parse("multipart/form-data; boundary=XyZ");
                set.observe_multipart(b, &ct.boundary().unwrap(), cfg, stats);
            }
        }
    }

    fn random_config(rng: &mut Rng) -> ParamConfig {
        if rng.below(2) == 0 {
            return ParamConfig::default();
        }
        ParamConfig {
            max_names_per_set: 1 + rng.below(5) as usize,
            max_name_bytes: 3 + rng.below(20) as usize,
            max_pairs_per_input: 1 + rng.below(5) as usize,
            max_parts_per_body: 1 + rng.below(3) as usize,
            max_content_types_per_param: 1 + rng.below(2) as usize,
        }
    }

    /// Save, through JSON text, load with the same configuration.
    fn round_trip(set: &ParamSet, cfg: &ParamConfig) -> ParamSet {
        let text = serde_json::to_string(&set.save()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let mut stats = ParamStats::default();
        let loaded = ParamSet::load(&v, cfg, &mut stats).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(stats, ParamStats::default(), "nothing cut within bounds");
        loaded
    }

    #[test]
    fn format_example() {
        let cfg = ParamConfig::default();
        let mut st = ParamStats::default();
        let mut s = ParamSet::new();
        s.observe_query("tag=a&tag=b&1699999999", &cfg, &mut st);
        s.observe_query("tag=c", &cfg, &mut st);
        assert_eq!(
            s.save(),
            json!({"version": 1, "samples": 2, "identifier_names": {"integer": 1},
                   "params": {"tag": {"present": 2, "occurrences": 3, "repeated": 1,
                                      "kinds": {"string": 3}, "last_sample": 2,
                                      "in_sample": 1}}})
        );
        assert_eq!(round_trip(&s, &cfg), s);
        assert_eq!(
            round_trip(&ParamSet::new(), &cfg),
            ParamSet::new(),
            "an empty set"
        );
    }

    #[test]
    fn round_trip_and_continue_on_random_inputs() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        // repeated, no_value, files, content types, incomplete, identifier names,
        // names dropped, truncated samples.
        let mut seen = [0u32; 8];
        for trial in 0..400 {
            let cfg = random_config(&mut rng);
            let first: Vec<Input> = (0..1 + rng.below(10))
                .map(|_| random_input(&mut rng))
                .collect();
            let then: Vec<Input> = (0..1 + rng.below(6))
                .map(|_| random_input(&mut rng))
                .collect();
            let mut original = ParamSet::new();
            let mut st = ParamStats::default();
            for i in &first {
                observe(&mut original, i, &cfg, &mut st);
            }
            if trial % 5 == 0 {
                let mut other = ParamSet::new();
                for _ in 0..3 {
                    observe(&mut other, &random_input(&mut rng), &cfg, &mut st);
                }
                original.merge(&other, &cfg, &mut st);
            }
            let ps: Vec<&Param> = original.params.values().collect();
            for (i, hit) in [
                ps.iter().any(|p| p.repeated > 0),
                ps.iter().any(|p| p.no_value > 0),
                ps.iter().any(|p| p.files > 0),
                ps.iter().any(|p| !p.content_types.is_empty()),
                ps.iter().any(|p| p.incomplete > 0),
                !original.identifier_names.is_empty(),
                original.names_dropped > 0,
                original.truncated_samples > 0,
            ]
            .into_iter()
            .enumerate()
            {
                seen[i] += u32::from(hit);
            }
            let mut loaded = round_trip(&original, &cfg);
            assert_eq!(loaded, original, "trial {trial}");
            assert_eq!(
                serde_json::to_value(&loaded).unwrap(),
                serde_json::to_value(&original).unwrap(),
                "the summary is unchanged"
            );
            let (mut st_a, mut st_b) = (ParamStats::default(), ParamStats::default());
            for i in &then {
                observe(&mut original, i, &cfg, &mut st_a);
                observe(&mut loaded, i, &cfg, &mut st_b);
            }
            assert_eq!(loaded, original, "trial {trial}: after more input");
            assert_eq!(st_a, st_b);
            assert_eq!(
                loaded.to_openapi_parameters("query"),
                original.to_openapi_parameters("query")
            );
            assert_eq!(loaded.to_body_schema(), original.to_body_schema());
        }
        assert!(seen.iter().all(|&n| n >= 10), "{seen:?}");
    }

    #[test]
    fn repeats_within_a_sample_continue_after_load() {
        // The per-sample counters are part of the state: a name sent twice in the first
        // sample after loading is `repeated` once, as without the reload.
        let cfg = ParamConfig::default();
        let mut st = ParamStats::default();
        let mut s = ParamSet::new();
        s.observe_query("a=1&a=2", &cfg, &mut st);
        let mut l = round_trip(&s, &cfg);
        for set in [&mut s, &mut l] {
            set.observe_query("a=3&a=4&a=5", &cfg, &mut st);
        }
        assert_eq!(l, s);
        assert_eq!(l.get("a").unwrap().repeated, 2);
        assert_eq!(l.get("a").unwrap().present, 2);
    }

    #[test]
    fn lower_bounds_cut_the_state() {
        let big = ParamConfig::default();
        let mut st = ParamStats::default();
        let mut s = ParamSet::new();
        s.observe_query("alpha=1&b=2&c=3&a_long_name=4", &big, &mut st);
        let body = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\
                     Content-Type: image/png\r\n\r\nx\r\n\
                     --B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"y\"\r\n\
                     Content-Type: application/pdf\r\n\r\nx\r\n--B--\r\n";
        s.observe_multipart(body, "B", &big, &mut st);
        let small = ParamConfig {
            max_names_per_set: 2,
            max_name_bytes: 5,
            max_content_types_per_param: 1,
            ..big.clone()
        };
        let mut stats = ParamStats::default();
        let l = ParamSet::load(&s.save(), &small, &mut stats).unwrap();
        let names: Vec<&str> = l.params().map(|(n, _)| n).collect();
        assert_eq!(names, ["alpha", "b"]);
        assert_eq!(stats.names_too_long, 1, "a_long_name");
        assert_eq!(stats.names_limit, 2, "c, f");
        assert_eq!(l.names_dropped(), 3);
        assert_eq!(stats.content_types_limit, 0, "f itself was dropped");
        let small = ParamConfig {
            max_content_types_per_param: 1,
            ..big.clone()
        };
        let mut stats = ParamStats::default();
        let l = ParamSet::load(&s.save(), &small, &mut stats).unwrap();
        let f = l.get("f").unwrap();
        assert_eq!(
            f.content_types.keys().collect::<Vec<_>>(),
            ["application/pdf"]
        );
        assert_eq!(f.files, 2);
        assert_eq!(stats.content_types_limit, 1);
        // Observing under the small bounds goes on from there.
        let mut l = l;
        l.observe_multipart(body, "B", &small, &mut stats);
        assert_eq!(l.get("f").unwrap().content_types.len(), 1);
    }

    fn sample_state() -> Value {
        let cfg = ParamConfig::default();
        let mut st = ParamStats::default();
        let mut s = ParamSet::new();
        s.observe_query("a=1&a=x&b&1699999999", &cfg, &mut st);
        s.observe_multipart(
            b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\
              Content-Type: image/png\r\n\r\nx\r\n--B--\r\n",
            "B",
            &cfg,
            &mut st,
        );
        s.save()
    }

    #[test]
    fn garbage_states_are_errors() {
        let good = sample_state();
        let cfg = ParamConfig::default();
        assert!(ParamSet::load(&good, &cfg, &mut ParamStats::default()).is_ok());
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        let remove = |key: &'static str| {
            edit(&move |v: &mut Value| {
                v["params"]["a"].as_object_mut().unwrap().remove(key);
            })
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!("state"), "`$`: expected an object"),
            (json!({"samples": 1}), "`$.version` is missing"),
            (edit(&|v| v["version"] = json!(7)), "version 7"),
            (
                edit(&|v| {
                    v.as_object_mut().unwrap().remove("samples");
                }),
                "`$.samples` is missing",
            ),
            (edit(&|v| v["samples"] = json!(-1)), "negative"),
            (
                edit(&|v| v["samples"] = json!(0)),
                "present in more samples",
            ),
            (
                edit(&|v| v["truncated_samples"] = json!(9)),
                "more than `samples`",
            ),
            (
                edit(&|v| v["params"] = json!([])),
                "`$.params`: expected an object",
            ),
            (
                edit(&|v| v["params"][""] = v["params"]["a"].clone()),
                "an empty parameter name",
            ),
            (
                edit(&|v| v["params"]["a"] = json!(3)),
                "`$.params[\"a\"]`: expected an object",
            ),
            (remove("present"), "present` is missing"),
            (remove("occurrences"), "occurrences` is missing"),
            (
                edit(&|v| v["params"]["a"]["present"] = json!(u64::MAX)),
                "too large",
            ),
            (
                edit(&|v| v["params"]["a"]["present"] = json!("1")),
                "expected a count",
            ),
            (
                edit(&|v| v["params"]["a"]["occurrences"] = json!(5)),
                "not the sum",
            ),
            (
                edit(&|v| v["params"]["a"]["occurrences"] = json!(0)),
                "present more often",
            ),
            (
                edit(&|v| v["params"]["a"]["repeated"] = json!(2)),
                "repeated in more samples",
            ),
            (
                edit(&|v| v["params"]["a"]["kinds"] = json!({"integer": 5})),
                "not the sum",
            ),
            (
                edit(&|v| v["params"]["a"]["kinds"] = json!({"nope": 1})),
                "unknown value kind",
            ),
            (
                edit(&|v| v["params"]["a"]["kinds"] = json!(["integer"])),
                "expected an object",
            ),
            (
                edit(&|v| v["params"]["a"]["last_sample"] = json!(3)),
                "after the set's last sample",
            ),
            (
                edit(&|v| v["params"]["a"]["in_sample"] = json!(1u64 << 40)),
                "too large",
            ),
            (
                edit(&|v| v["params"]["f"]["content_types"] = json!({"image/png": 2})),
                "more media types",
            ),
            (
                edit(&|v| v["params"]["f"]["content_types"] = json!({"": 1})),
                "an empty media type",
            ),
            (
                edit(&|v| v["params"]["f"]["content_types"] = json!({"image/png": true})),
                "expected a count",
            ),
            (
                edit(&|v| v["params"]["f"]["content_types"] = json!("image/png")),
                "expected an object",
            ),
            (
                edit(&|v| v["identifier_names"] = json!({"integer": -1})),
                "negative",
            ),
            (
                edit(&|v| v["identifier_names"] = json!({"integer": i64::MAX, "uuid": i64::MAX})),
                "add up to more",
            ),
        ];
        for (state, want) in cases {
            let e = match ParamSet::load(&state, &cfg, &mut ParamStats::default()) {
                Ok(s) => panic!("loaded {state}: {s:?}"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(want), "{state}\n  gave {e:?}\n  want {want:?}");
        }
    }

    #[test]
    fn huge_states_are_cut_to_the_bounds() {
        let mut params = Map::new();
        for i in 0..100_000 {
            params.insert(
                format!("p{i:06}"),
                json!({"present": 1, "occurrences": 1, "no_value": 1}),
            );
        }
        let state = json!({"version": 1, "samples": 1, "params": params});
        let mut stats = ParamStats::default();
        let s = ParamSet::load(&state, &ParamConfig::default(), &mut stats).unwrap();
        assert_eq!(s.params().count(), 100);
        assert_eq!(s.names_dropped(), 100_000 - 100);
        assert_eq!(stats.names_limit, 100_000 - 100);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut v = sample_state();
        v["future"] = json!([1]);
        v["params"]["a"]["future"] = json!({"x": 1});
        let cfg = ParamConfig::default();
        let a = ParamSet::load(&v, &cfg, &mut ParamStats::default()).unwrap();
        let b = ParamSet::load(&sample_state(), &cfg, &mut ParamStats::default()).unwrap();
        assert_eq!(a, b);
    }

    fn mutate(v: &mut Value, rng: &mut Rng) {
        let garbage = [
            json!(null),
            json!(-1),
            json!(0),
            json!(1),
            json!(2),
            json!(u64::MAX),
            json!(0.5),
            json!(""),
            json!("x"),
            json!(true),
            json!([]),
            json!({}),
            json!({"integer": 1}),
            json!({"present": 1, "occurrences": 1, "no_value": 1}),
        ];
        let stop = rng.below(3) == 0;
        match v {
            Value::Object(m) if !m.is_empty() && !stop => {
                let k = m
                    .keys()
                    .nth(rng.below(m.len() as u64) as usize)
                    .unwrap()
                    .clone();
                if rng.below(5) == 0 {
                    m.remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    mutate(child, rng);
                }
            }
            Value::Array(a) if !a.is_empty() && !stop => {
                let i = rng.below(a.len() as u64) as usize;
                mutate(&mut a[i], rng);
            }
            _ => *v = rng.pick(&garbage).clone(),
        }
    }

    #[test]
    fn no_panic_on_mutated_states() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let cfg = ParamConfig::default();
        let mut loaded_some = 0;
        for _ in 0..3000 {
            let mut s = ParamSet::new();
            let mut st = ParamStats::default();
            for _ in 0..3 {
                observe(&mut s, &random_input(&mut rng), &cfg, &mut st);
            }
            let mut state = s.save();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut state, &mut rng);
            }
            if let Ok(mut l) = ParamSet::load(&state, &cfg, &mut st) {
                loaded_some += 1;
                assert!(l.params().count() <= cfg.max_names_per_set);
                let _ = l.to_openapi_parameters("query");
                let _ = l.to_body_schema();
                let _ = serde_json::to_string(&l).unwrap();
                observe(&mut l, &random_input(&mut rng), &cfg, &mut st);
                let again = ParamSet::load(&l.save(), &cfg, &mut st).unwrap();
                assert_eq!(again, l);
            }
        }
        assert!(loaded_some > 30, "{loaded_some}");
    }
}
