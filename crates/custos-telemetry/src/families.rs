//! Metric families computed at scrape time from data held elsewhere (the store's
//! rollups), encoded with the same prometheus-client encoder as the live registry so
//! both formats, the namespace prefix and escaping behave identically.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    Counter(f64),
    Gauge(f64),
    /// Non-cumulative bucket counts by upper bound, ending with `+Inf`.
    Histogram {
        sum: f64,
        count: u64,
        buckets: Vec<(f64, u64)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: SampleValue,
}

/// One family: its name without the namespace (and without `_total` for counters),
/// help text, type and samples. Samples of one family must all have its type.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: FamilyKind,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

impl ConstFamily {
    pub fn new(name: &'static str, help: &'static str, kind: FamilyKind) -> Self {
        Self { name, help, kind, samples: Vec::new() }
    }

    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: SampleValue) {
        self.samples.push(Sample { labels, value });
    }
}

/// A set of families, encodable by a prometheus-client registry.
#[derive(Debug, Default, Clone)]
pub struct ConstFamilies(pub Vec<ConstFamily>);

impl Collector for ConstFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            let metric_type = match family.kind {
                FamilyKind::Counter => MetricType::Counter,
                FamilyKind::Gauge => MetricType::Gauge,
                FamilyKind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for sample in &family.samples {
                let mut encoder = metric.encode_family(&sample.labels)?;
                match &sample.value {
                    SampleValue::Counter(v) => encoder.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    SampleValue::Gauge(v) => encoder.encode_gauge(v)?,
                    SampleValue::Histogram { sum, count, buckets } => {
                        encoder.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}
