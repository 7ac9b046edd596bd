//! What a job's compute costs: Fargate's prices per region (one table, the
//! only place they are written), a task's size, and the [`Usage`] of an
//! attempt (task size times time) with its cost estimate.
//!
//! The prices are Fargate's Linux/x86 On-Demand prices per vCPU-hour and
//! per GB-hour of memory (<https://aws.amazon.com/fargate/pricing/>). The
//! us-east-1 figures are checked against AWS's published example (1 vCPU,
//! 2 GB for an hour: $0.04937, a unit test below); the other regions' are
//! estimates as of [`PRICES_READ`] to be checked against that page, and a
//! region not in the table is priced as [`FALLBACK_REGION`]. Fargate Spot prices move with spare capacity; the
//! table uses a fixed estimate instead, [`SPOT_FRACTION`] of On-Demand in
//! every region ("up to 70 % off"). Both can be overridden
//! ([`Prices::with_override`], the worker's `PLUS_FARGATE_PRICES`). Storage
//! within the 20 GiB Fargate includes, data transfer and the other AWS
//! services a job uses are not counted.

use plus_proto::Usage;

/// When the On-Demand prices below were read from AWS's pricing page.
pub const PRICES_READ: &str = "2025-06";

/// Fargate Spot as a fixed share of the On-Demand price (70 % off).
pub const SPOT_FRACTION: f64 = 0.30;

/// The region whose prices stand in for a region the table does not have.
pub const FALLBACK_REGION: &str = "us-east-1";

/// A price per vCPU-hour and per GB-hour, in US dollars.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// US dollars per vCPU per hour.
    pub vcpu_hour: f64,
    /// US dollars per GB of memory per hour (Fargate's GB is the GiB a
    /// task's memory is given in: 2048 MiB is 2 GB).
    pub gb_hour: f64,
}

impl Rate {
    /// What `vcpu_seconds` and `gib_seconds` cost at this rate.
    pub fn cost(self, vcpu_seconds: f64, gib_seconds: f64) -> f64 {
        (vcpu_seconds * self.vcpu_hour + gib_seconds * self.gb_hour) / 3600.0
    }

    fn times(self, factor: f64) -> Rate {
        Rate {
            vcpu_hour: self.vcpu_hour * factor,
            gb_hour: self.gb_hour * factor,
        }
    }
}

/// Linux/x86 On-Demand prices by region, read in [`PRICES_READ`].
const ON_DEMAND: &[(&str, f64, f64)] = &[
    ("us-east-1", 0.04048, 0.004445),
    ("us-east-2", 0.04048, 0.004445),
    ("us-west-1", 0.04656, 0.00511),
    ("us-west-2", 0.04048, 0.004445),
    ("eu-west-1", 0.04048, 0.004445),
    ("eu-west-2", 0.04656, 0.00511),
    ("eu-central-1", 0.04656, 0.00511),
    ("ap-south-1", 0.04256, 0.00467),
    ("ap-southeast-1", 0.05056, 0.00553),
    ("ap-southeast-2", 0.04856, 0.00532),
    ("ap-northeast-1", 0.05056, 0.00553),
];

/// The prices a job's cost is estimated with: On-Demand and Spot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prices {
    /// FARGATE.
    pub on_demand: Rate,
    /// FARGATE_SPOT.
    pub spot: Rate,
}

impl Prices {
    /// The table's prices for `region`, or `None` when the table does not
    /// have it.
    pub fn for_region(region: &str) -> Option<Prices> {
        ON_DEMAND
            .iter()
            .find(|(r, _, _)| *r == region)
            .map(|&(_, vcpu_hour, gb_hour)| {
                let on_demand = Rate { vcpu_hour, gb_hour };
                Prices {
                    on_demand,
                    spot: on_demand.times(SPOT_FRACTION),
                }
            })
    }

    /// The prices for `region`, or [`FALLBACK_REGION`]'s when the table
    /// does not have it (the second value says so).
    pub fn for_region_or_fallback(region: &str) -> (Prices, bool) {
        match Prices::for_region(region) {
            Some(p) => (p, false),
            None => (
                Prices::for_region(FALLBACK_REGION).expect("the fallback region is in the table"),
                true,
            ),
        }
    }

    /// These prices with an override read from `text`:
    /// `vcpu_hour=0.05,gb_hour=0.005` (On-Demand, US dollars), optionally
    /// with `spot_vcpu_hour=...,spot_gb_hour=...`. When only On-Demand
    /// prices are given, Spot is [`SPOT_FRACTION`] of them.
    ///
    /// # Errors
    /// A sentence saying what was expected, when `text` is not that.
    pub fn with_override(self, text: &str) -> Result<Prices, String> {
        let expected = "expected vcpu_hour=PRICE,gb_hour=PRICE (US dollars per vCPU-hour and per GB-hour), optionally with spot_vcpu_hour=PRICE,spot_gb_hour=PRICE";
        let (mut vcpu, mut gb, mut spot_vcpu, mut spot_gb) = (None, None, None, None);
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("{pair:?} has no '=': {expected}"));
            };
            let value = match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => return Err(format!("{pair:?} is not a price of 0 or more: {expected}")),
            };
            let slot = match key.trim() {
                "vcpu_hour" => &mut vcpu,
                "gb_hour" => &mut gb,
                "spot_vcpu_hour" => &mut spot_vcpu,
                "spot_gb_hour" => &mut spot_gb,
                other => return Err(format!("{other:?} is not a known price: {expected}")),
            };
            *slot = Some(value);
        }
        let on_demand = match (vcpu, gb) {
            (Some(vcpu_hour), Some(gb_hour)) => Rate { vcpu_hour, gb_hour },
            (None, None) => self.on_demand,
            _ => return Err(format!("give both vcpu_hour and gb_hour: {expected}")),
        };
        let spot = match (spot_vcpu, spot_gb) {
            (Some(vcpu_hour), Some(gb_hour)) => Rate { vcpu_hour, gb_hour },
            (None, None) if vcpu.is_some() => on_demand.times(SPOT_FRACTION),
            (None, None) => self.spot,
            _ => {
                return Err(format!(
                    "give both spot_vcpu_hour and spot_gb_hour: {expected}"
                ))
            }
        };
        Ok(Prices { on_demand, spot })
    }

    /// The rate of a task on FARGATE_SPOT (`spot`) or FARGATE.
    pub fn rate(&self, spot: bool) -> Rate {
        if spot {
            self.spot
        } else {
            self.on_demand
        }
    }
}

/// The size of a task: vCPUs and GiB of memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskSize {
    /// vCPUs (CPU units / 1024).
    pub vcpus: f64,
    /// GiB of memory (MiB / 1024).
    pub gib: f64,
}

impl TaskSize {
    /// The smallest Fargate task, assumed when nothing says otherwise.
    pub const SMALLEST: TaskSize = TaskSize {
        vcpus: 0.25,
        gib: 0.5,
    };

    /// The size of `cpu_units` (1024 per vCPU) and `memory_mib`.
    pub fn from_units(cpu_units: u32, memory_mib: u32) -> TaskSize {
        TaskSize {
            vcpus: f64::from(cpu_units) / 1024.0,
            gib: f64::from(memory_mib) / 1024.0,
        }
    }
}

/// Fargate bills a Linux task per second with a one-minute minimum.
pub const BILLED_MINIMUM_SECONDS: f64 = 60.0;

/// What a task of `size` used in `seconds`, and its cost at `rate` (0
/// without one: nothing is billed). The cost counts at least
/// [`BILLED_MINIMUM_SECONDS`], as Fargate bills; the seconds are the
/// attempt's own.
pub fn usage(size: TaskSize, seconds: f64, rate: Option<Rate>) -> Usage {
    let seconds = seconds.max(0.0);
    let used = rounded(Usage {
        vcpu_seconds: size.vcpus * seconds,
        gib_seconds: size.gib * seconds,
        cost_usd: 0.0,
    });
    let billed = rounded(Usage {
        vcpu_seconds: size.vcpus * seconds.max(BILLED_MINIMUM_SECONDS),
        gib_seconds: size.gib * seconds.max(BILLED_MINIMUM_SECONDS),
        cost_usd: 0.0,
    });
    rounded(Usage {
        cost_usd: rate.map_or(0.0, |r| r.cost(billed.vcpu_seconds, billed.gib_seconds)),
        ..used
    })
}

/// `a` and `b` added up (an absent one counts as nothing).
pub fn sum(a: Option<&Usage>, b: Option<&Usage>) -> Usage {
    let (a, b) = (
        a.copied().unwrap_or_default(),
        b.copied().unwrap_or_default(),
    );
    rounded(Usage {
        vcpu_seconds: a.vcpu_seconds + b.vcpu_seconds,
        gib_seconds: a.gib_seconds + b.gib_seconds,
        cost_usd: a.cost_usd + b.cost_usd,
    })
}

/// Seconds to the millisecond, dollars to the billionth: no float noise in
/// records (`0.30000000000000004`).
fn rounded(u: Usage) -> Usage {
    let round = |v: f64, scale: f64| {
        if v.is_finite() {
            (v * scale).round() / scale
        } else {
            0.0
        }
    };
    Usage {
        vcpu_seconds: round(u.vcpu_seconds, 1e3),
        gib_seconds: round(u.gib_seconds, 1e3),
        cost_usd: round(u.cost_usd, 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn one_vcpu_and_2_gb_for_an_hour_costs_what_aws_publishes_in_us_east_1() {
        let prices = Prices::for_region("us-east-1").unwrap();
        let hour = usage(
            TaskSize::from_units(1024, 2048),
            3600.0,
            Some(prices.rate(false)),
        );
        assert_eq!(hour.vcpu_seconds, 3600.0);
        assert_eq!(hour.gib_seconds, 7200.0);
        // 1 x $0.04048 + 2 x $0.004445
        assert!(close(hour.cost_usd, 0.04937), "{}", hour.cost_usd);

        // AWS's example shape: the same task for 10 minutes is a sixth.
        let ten = usage(
            TaskSize::from_units(1024, 2048),
            600.0,
            Some(prices.rate(false)),
        );
        assert!(close(ten.cost_usd, 0.008228333), "{}", ten.cost_usd);
    }

    #[test]
    fn spot_is_a_fixed_seventy_percent_off() {
        let prices = Prices::for_region("eu-west-1").unwrap();
        let spot = usage(
            TaskSize::from_units(1024, 2048),
            3600.0,
            Some(prices.rate(true)),
        );
        assert!(close(spot.cost_usd, 0.04937 * 0.3), "{}", spot.cost_usd);
    }

    #[test]
    fn the_local_backend_bills_nothing_but_counts_the_seconds() {
        let u = usage(TaskSize::SMALLEST, 10.0, None);
        assert_eq!((u.vcpu_seconds, u.gib_seconds, u.cost_usd), (2.5, 5.0, 0.0));
    }

    #[test]
    fn attempts_add_up_without_float_noise() {
        let a = usage(TaskSize::from_units(1024, 2048), 0.1, None);
        let b = usage(TaskSize::from_units(1024, 2048), 0.2, None);
        let total = sum(Some(&a), Some(&b));
        assert_eq!(total.vcpu_seconds, 0.3);
        assert_eq!(total.gib_seconds, 0.6);
        assert_eq!(sum(None, Some(&a)), a);
    }

    #[test]
    fn an_unknown_region_falls_back_and_says_so() {
        let (p, fell_back) = Prices::for_region_or_fallback("mars-north-1");
        assert!(fell_back);
        assert_eq!(p, Prices::for_region("us-east-1").unwrap());
        assert!(!Prices::for_region_or_fallback("eu-central-1").1);
    }

    #[test]
    fn overrides_replace_the_table() {
        let base = Prices::for_region("us-east-1").unwrap();
        let p = base.with_override("vcpu_hour=0.05, gb_hour=0.005").unwrap();
        assert_eq!(
            p.on_demand,
            Rate {
                vcpu_hour: 0.05,
                gb_hour: 0.005
            }
        );
        assert!(close(p.spot.vcpu_hour, 0.015));
        let p = base
            .with_override("spot_vcpu_hour=0.01,spot_gb_hour=0.001")
            .unwrap();
        assert_eq!(p.on_demand, base.on_demand);
        assert_eq!(p.spot.vcpu_hour, 0.01);
        for bad in [
            "vcpu_hour=0.05",
            "vcpu_hour=cheap,gb_hour=0.005",
            "cpu=1,gb_hour=0.005",
            "vcpu_hour=-1,gb_hour=0.005",
            "0.05",
        ] {
            let e = base.with_override(bad).unwrap_err();
            assert!(e.contains("expected vcpu_hour=PRICE,gb_hour=PRICE"), "{e}");
        }
    }
}
