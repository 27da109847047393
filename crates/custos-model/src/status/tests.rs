use proptest::prelude::*;

use super::*;

const KNOWN: &[&str] = &["api", "ingestion", "delivery", "workers", "console"];

fn ts(s: &str) -> Timestamp {
    Timestamp::parse("t", s).unwrap()
}

fn observed(total: u64, failed: u64) -> Observation {
    Observation { total, failed, ..Observation::default() }
}

#[test]
fn status_follows_the_failure_ratio_with_enough_attempts() {
    let t = Thresholds::default();
    assert_eq!(derive_status(&observed(100, 1), &t), ComponentStatus::Operational);
    assert_eq!(derive_status(&observed(100, 2), &t), ComponentStatus::DegradedPerformance);
    assert_eq!(derive_status(&observed(100, 10), &t), ComponentStatus::PartialOutage);
    assert_eq!(derive_status(&observed(100, 50), &t), ComponentStatus::MajorOutage);
    assert_eq!(derive_status(&observed(9, 9), &t), ComponentStatus::Operational, "too few attempts to judge");
    assert_eq!(derive_status(&observed(0, 0), &t), ComponentStatus::Operational);
}

#[test]
fn latency_alone_degrades_and_never_worse() {
    let t = Thresholds { slow_p95_ms: Some(500.0), ..Thresholds::default() };
    let slow = Observation { total: 100, failed: 0, p95_ms: Some(900.0), ..Observation::default() };
    assert_eq!(derive_status(&slow, &t), ComponentStatus::DegradedPerformance);
    let fast = Observation { p95_ms: Some(100.0), ..slow };
    assert_eq!(derive_status(&fast, &t), ComponentStatus::Operational);
    let slow_and_failing = Observation { failed: 60, ..slow };
    assert_eq!(derive_status(&slow_and_failing, &t), ComponentStatus::MajorOutage);
}

#[test]
fn stale_parts_degrade_then_break_a_component() {
    let t = Thresholds::default();
    let parts = |down, of| Observation { parts_down: down, parts: of, ..Observation::default() };
    assert_eq!(derive_status(&parts(0, 40), &t), ComponentStatus::Operational);
    assert_eq!(derive_status(&parts(1, 40), &t), ComponentStatus::DegradedPerformance);
    assert_eq!(derive_status(&parts(4, 40), &t), ComponentStatus::PartialOutage);
    assert_eq!(derive_status(&parts(40, 40), &t), ComponentStatus::MajorOutage);
}

#[test]
fn the_indicator_is_the_worst_component_and_maintenance_only_when_nothing_fails() {
    use ComponentStatus::*;
    assert_eq!(Indicator::overall([Operational, Operational]), Indicator::None);
    assert_eq!(Indicator::overall([]), Indicator::None);
    assert_eq!(Indicator::overall([Operational, UnderMaintenance]), Indicator::Maintenance);
    assert_eq!(Indicator::overall([UnderMaintenance, DegradedPerformance]), Indicator::Minor);
    assert_eq!(Indicator::overall([PartialOutage, DegradedPerformance]), Indicator::Major);
    assert_eq!(Indicator::overall([PartialOutage, MajorOutage, Operational]), Indicator::Critical);
    assert_eq!(Indicator::Critical.description(), "Major System Outage");
}

#[test]
fn vocabulary_round_trips() {
    for status in ComponentStatus::ALL {
        assert_eq!(ComponentStatus::parse(status.as_str()), Some(status));
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
    for status in IncidentStatus::ALL {
        assert_eq!(IncidentStatus::parse(status.as_str()), Some(status));
    }
    for impact in Impact::ALL {
        assert_eq!(Impact::parse(impact.as_str()), Some(impact));
    }
}

#[test]
fn a_day_bar_weighs_partial_outages_and_leaves_maintenance_out() {
    let now = ts("2026-11-23T00:00:00Z");
    let intervals = [
        Interval {
            start: ts("2026-11-22T00:00:00Z"),
            end: ts("2026-11-22T12:00:00Z"),
            status: ComponentStatus::Operational,
        },
        Interval {
            start: ts("2026-11-22T12:00:00Z"),
            end: ts("2026-11-22T14:00:00Z"),
            status: ComponentStatus::UnderMaintenance,
        },
        Interval {
            start: ts("2026-11-22T14:00:00Z"),
            end: ts("2026-11-22T16:00:00Z"),
            status: ComponentStatus::PartialOutage,
        },
        Interval {
            start: ts("2026-11-22T16:00:00Z"),
            end: ts("2026-11-22T17:00:00Z"),
            status: ComponentStatus::MajorOutage,
        },
        Interval {
            start: ts("2026-11-22T17:00:00Z"),
            end: ts("2026-11-23T00:00:00Z"),
            status: ComponentStatus::Operational,
        },
    ];
    let bars = daily_bars(&intervals, now, 2);
    assert_eq!(bars.len(), 2);
    let day = &bars[0];
    assert_eq!(day.date, "2026-11-22");
    assert_eq!(day.under_maintenance_seconds, 7200);
    assert_eq!(day.partial_outage_seconds, 7200);
    assert_eq!(day.major_outage_seconds, 3600);
    assert_eq!(day.no_data_seconds, 0);
    // 22 h counted; down = 1 h + 0.3 × 2 h = 1.6 h.
    let expected = 1.0 - 1.6 / 22.0;
    assert!((day.uptime.unwrap() - expected).abs() < 1e-9, "{:?}", day.uptime);
    assert_eq!(day.worst, Some(ComponentStatus::MajorOutage));
    // Today has just begun at `now`: nothing observed, no uptime.
    assert_eq!((bars[1].date.as_str(), bars[1].uptime, bars[1].no_data_seconds), ("2026-11-23", None, 0));
}

#[test]
fn a_day_without_data_has_no_uptime_and_a_day_in_maintenance_only_has_none_either() {
    let now = ts("2026-11-23T06:00:00Z");
    let intervals = [Interval {
        start: ts("2026-11-23T00:00:00Z"),
        end: ts("2026-11-23T06:00:00Z"),
        status: ComponentStatus::UnderMaintenance,
    }];
    let bars = daily_bars(&intervals, now, 3);
    assert_eq!(bars[0].uptime, None);
    assert_eq!(bars[0].no_data_seconds, 86_400);
    assert_eq!(bars[2].uptime, None, "maintenance is not counted either way");
    assert_eq!(bars[2].worst, Some(ComponentStatus::UnderMaintenance));
    assert_eq!(overall_uptime(&bars), None);
}

proptest! {
    /// A group is never healthier than any member: on every day, the group's major
    /// outage seconds are at least each member's, and its intervals never overlap.
    #[test]
    fn a_group_is_as_bad_as_its_worst_member(
        members in proptest::collection::vec(
            proptest::collection::vec((0i64..2 * 86_400, 0usize..5), 1..12), 1..6),
    ) {
        let origin = ts("2026-11-20T00:00:00Z");
        let now = origin.saturating_add_micros(2 * 86_400 * MICROS);
        let members: Vec<Vec<(Timestamp, ComponentStatus)>> = members
            .into_iter()
            .map(|mut changes| {
                changes.sort();
                changes.dedup_by_key(|c| c.0);
                changes
                    .into_iter()
                    .map(|(s, status)| (origin.saturating_add_micros(s * MICROS), ComponentStatus::ALL[status]))
                    .collect()
            })
            .collect();
        let group = group_intervals(&members, now);
        for pair in group.windows(2) {
            prop_assert!(pair[0].end <= pair[1].start);
        }
        let group_bars = daily_bars(&group, now, 2);
        for member in &members {
            let bars = daily_bars(&intervals(member, now), now, 2);
            for (g, m) in group_bars.iter().zip(&bars) {
                prop_assert!(g.major_outage_seconds >= m.major_outage_seconds);
                prop_assert!(g.no_data_seconds <= m.no_data_seconds);
            }
        }
    }

    /// However the intervals fall, a bar's seconds add up to the part of its day that
    /// has passed, and uptime stays within [0, 1].
    #[test]
    fn day_bars_account_for_every_second(
        cuts in proptest::collection::vec((0i64..3 * 86_400, 0usize..5), 0..30),
        now_offset in 0i64..3 * 86_400,
    ) {
        let origin = ts("2026-11-20T00:00:00Z");
        let now = origin.saturating_add_micros((now_offset + 86_400) * MICROS);
        let mut points: Vec<(i64, usize)> = cuts;
        points.sort();
        let mut intervals = Vec::new();
        for pair in points.windows(2) {
            let (a, status) = pair[0];
            let (b, _) = pair[1];
            if b > a {
                intervals.push(Interval {
                    start: origin.saturating_add_micros(a * MICROS),
                    end: origin.saturating_add_micros(b * MICROS),
                    status: ComponentStatus::ALL[status],
                });
            }
        }
        let bars = daily_bars(&intervals, now, 4);
        let mut day_start_micros = day_start(now).saturating_add_micros(-3 * 86_400 * MICROS).as_micros();
        for bar in &bars {
            let day_end = (day_start_micros + 86_400 * MICROS).min(now.as_micros());
            let elapsed = ((day_end - day_start_micros) / MICROS).max(0);
            let total = bar.operational_seconds + bar.degraded_performance_seconds + bar.partial_outage_seconds
                + bar.major_outage_seconds + bar.under_maintenance_seconds + bar.no_data_seconds;
            prop_assert_eq!(total, elapsed);
            if let Some(uptime) = bar.uptime {
                prop_assert!((0.0..=1.0).contains(&uptime));
            }
            day_start_micros += 86_400 * MICROS;
        }
    }

    /// The detector never flaps: between an open and the next resolve there are at
    /// least `resolve_after` evaluations, and between a resolve and the next open at
    /// least `open_after`; and it never opens during maintenance.
    #[test]
    fn the_detector_does_not_flap(
        inputs in proptest::collection::vec((0u64..40, 0u64..40, any::<bool>(), proptest::bool::weighted(0.1)), 1..200),
    ) {
        let config = DetectorConfig::default();
        let mut state = DetectorState::default();
        let mut last_action: Option<(usize, DetectorAction)> = None;
        for (i, (total, failed, stale, maintenance)) in inputs.into_iter().enumerate() {
            let input = DetectorInput { total, failed: failed.min(total), stale, in_maintenance: maintenance };
            let (next, action) = detect(state, &input, &config);
            if let Some(action) = action {
                prop_assert!(!maintenance, "nothing happens during maintenance");
                if let Some((at, previous)) = last_action {
                    prop_assert_ne!(previous, action, "actions alternate");
                    let needed = match action {
                        DetectorAction::Open => config.open_after,
                        DetectorAction::Resolve => config.resolve_after,
                    } as usize;
                    prop_assert!(i - at >= needed, "{action:?} {} evaluations after {previous:?}", i - at);
                } else {
                    prop_assert_eq!(action, DetectorAction::Open, "the first action opens");
                }
                last_action = Some((i, action));
            }
            prop_assert_eq!(next.open, matches!(last_action, Some((_, DetectorAction::Open))));
            state = next;
        }
    }
}

#[test]
fn the_detector_opens_after_a_bad_streak_and_resolves_after_a_good_one() {
    let config = DetectorConfig::default();
    let bad = DetectorInput { total: 100, failed: 40, ..DetectorInput::default() };
    let between = DetectorInput { total: 100, failed: 10, ..DetectorInput::default() };
    let good = DetectorInput { total: 100, failed: 1, ..DetectorInput::default() };
    let mut state = DetectorState::default();
    let mut actions = Vec::new();
    for input in [bad, bad, between, bad, bad, between, good, good, good, good, between, good, good] {
        let (next, action) = detect(state, &input, &config);
        state = next;
        actions.push(action);
    }
    // Bad, bad, then a middling window: neither streak grows nor restarts, so the third
    // bad window opens; likewise the fifth good one resolves across a middling one.
    assert_eq!(actions.iter().filter(|a| **a == Some(DetectorAction::Open)).count(), 1);
    assert_eq!(actions.iter().position(|a| *a == Some(DetectorAction::Open)), Some(3));
    assert_eq!(actions.iter().position(|a| *a == Some(DetectorAction::Resolve)), Some(11));
    assert!(!state.open);
    // A stale connector is bad with no attempts at all.
    let stale = DetectorInput { stale: true, ..DetectorInput::default() };
    let mut state = DetectorState::default();
    for _ in 0..2 {
        state = detect(state, &stale, &config).0;
    }
    assert_eq!(detect(state, &stale, &config).1, Some(DetectorAction::Open));
}

#[test]
fn one_off_windows_are_half_open_and_bounded() {
    let window = MaintenanceInput {
        title: "database upgrade".into(),
        components: vec!["api".into()],
        starts_at: Some(ts("2026-11-23T02:00:00Z")),
        ends_at: Some(ts("2026-11-23T03:00:00Z")),
        cron: None,
        timezone: None,
        duration_minutes: None,
    }
    .validate(KNOWN)
    .unwrap();
    assert_eq!(window.active_at(ts("2026-11-23T01:59:59Z")), None);
    assert!(window.active_at(ts("2026-11-23T02:00:00Z")).is_some());
    assert_eq!(window.active_at(ts("2026-11-23T03:00:00Z")), None);
    assert!(window.covers("api") && !window.covers("ingestion"));
    assert!(window.is_over(ts("2026-11-23T03:00:00Z")));
    assert_eq!(window.next_after(ts("2026-11-23T00:00:00Z")).map(|w| w.0), Some(ts("2026-11-23T02:00:00Z")));
}

#[test]
fn recurring_windows_follow_their_cron_in_their_time_zone() {
    // Sundays 02:00 Paris time, two hours.
    let window = MaintenanceInput {
        title: "weekly patching".into(),
        components: vec![],
        starts_at: None,
        ends_at: None,
        cron: Some("0 2 * * SUN".into()),
        timezone: Some("Europe/Paris".into()),
        duration_minutes: Some(120),
    }
    .validate(KNOWN)
    .unwrap();
    // 2026-11-22 is a Sunday; Paris is UTC+1 in November: 01:00Z to 03:00Z.
    assert_eq!(window.active_at(ts("2026-11-22T00:59:59Z")), None);
    assert_eq!(
        window.active_at(ts("2026-11-22T01:00:00Z")),
        Some((ts("2026-11-22T01:00:00Z"), ts("2026-11-22T03:00:00Z")))
    );
    assert!(window.active_at(ts("2026-11-22T02:59:59Z")).is_some());
    assert_eq!(window.active_at(ts("2026-11-22T03:00:00Z")), None);
    assert_eq!(window.next_after(ts("2026-11-22T03:00:00Z")).map(|w| w.0), Some(ts("2026-11-29T01:00:00Z")));
    assert!(window.covers("anything"), "no components named: every component");
    assert!(!window.is_over(ts("2030-01-01T00:00:00Z")));
}

#[test]
fn bad_windows_name_the_field() {
    let base = MaintenanceInput {
        title: "x".into(),
        components: vec![],
        starts_at: Some(ts("2026-11-23T02:00:00Z")),
        ends_at: Some(ts("2026-11-23T01:00:00Z")),
        cron: None,
        timezone: None,
        duration_minutes: None,
    };
    let field = |input: MaintenanceInput| input.validate(KNOWN).unwrap_err().field;
    assert_eq!(field(base.clone()), "ends_at");
    assert_eq!(field(MaintenanceInput { ends_at: None, ..base.clone() }), "ends_at");
    assert_eq!(field(MaintenanceInput { starts_at: None, ends_at: None, ..base.clone() }), "starts_at");
    let recurring = MaintenanceInput {
        starts_at: None,
        ends_at: None,
        cron: Some("0 2 * * SUN".into()),
        duration_minutes: Some(60),
        ..base
    };
    assert_eq!(field(MaintenanceInput { cron: Some("every sunday".into()), ..recurring.clone() }), "cron");
    assert_eq!(field(MaintenanceInput { timezone: Some("Mars/Olympus".into()), ..recurring.clone() }), "timezone");
    assert_eq!(field(MaintenanceInput { duration_minutes: None, ..recurring.clone() }), "duration_minutes");
    assert_eq!(field(MaintenanceInput { duration_minutes: Some(20_000), ..recurring.clone() }), "duration_minutes");
    assert_eq!(field(MaintenanceInput { components: vec!["nope".into()], ..recurring.clone() }), "components[0]");
    assert_eq!(field(MaintenanceInput { title: String::new(), ..recurring }), "title");
}

#[test]
fn incidents_name_the_field_at_fault() {
    let input = IncidentInput {
        title: "Delayed ingestion".into(),
        status: None,
        impact: None,
        components: vec!["ingestion".into()],
        message: "We are looking into it.".into(),
    };
    assert!(input.validate(KNOWN).is_ok());
    let field = |input: IncidentInput| input.validate(KNOWN).unwrap_err().field;
    assert_eq!(field(IncidentInput { title: String::new(), ..input.clone() }), "title");
    assert_eq!(field(IncidentInput { message: String::new(), ..input.clone() }), "message");
    assert_eq!(field(IncidentInput { components: vec!["ingestion".into(), "db".into()], ..input }), "components[1]");
}

#[test]
fn group_status_is_the_worst_member_and_maintenance_only_when_all_are() {
    use ComponentStatus::*;
    assert_eq!(group_status([]), None);
    assert_eq!(group_status([Operational, PartialOutage, UnderMaintenance]), Some(PartialOutage));
    assert_eq!(group_status([UnderMaintenance, Operational]), Some(Operational));
    assert_eq!(group_status([UnderMaintenance, UnderMaintenance]), Some(UnderMaintenance));
}

#[test]
fn intervals_run_from_change_to_change_and_the_last_until_now() {
    let (a, b, now) = (ts("2026-11-20T00:00:00Z"), ts("2026-11-20T06:00:00Z"), ts("2026-11-20T08:00:00Z"));
    let out = intervals(&[(a, ComponentStatus::Operational), (b, ComponentStatus::MajorOutage)], now);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].end, out[1].start, out[1].end), (b, b, now));
}

#[test]
fn floors_raise_the_stretches_they_cover_and_nothing_else() {
    let t = |h: u32| ts(&format!("2026-11-20T{h:02}:00:00Z"));
    let changes = [
        (t(0), ComponentStatus::Operational),
        (t(6), ComponentStatus::MajorOutage),
        (t(7), ComponentStatus::Operational),
    ];
    let floors = [(t(2), t(4), ComponentStatus::PartialOutage), (t(5), t(8), ComponentStatus::DegradedPerformance)];
    let out = raised_intervals(&changes, &floors, t(10));
    let got: Vec<_> = out.iter().map(|i| (i.start, i.end, i.status)).collect();
    use ComponentStatus::*;
    assert_eq!(
        got,
        vec![
            (t(0), t(2), Operational),
            (t(2), t(4), PartialOutage),
            (t(4), t(5), Operational),
            (t(5), t(6), DegradedPerformance),
            (t(6), t(7), MajorOutage),
            (t(7), t(8), DegradedPerformance),
            (t(8), t(10), Operational),
        ]
    );
    assert_eq!(raised_intervals(&changes, &[], t(10)), intervals(&changes, t(10)));
    let before_any = raised_intervals(&[], &[(t(1), t(2), MajorOutage)], t(3));
    assert_eq!(before_any, vec![Interval { start: t(1), end: t(2), status: MajorOutage }]);
}
