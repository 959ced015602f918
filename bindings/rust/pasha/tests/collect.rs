//! map_collect, fold and reduce through real maps in every context kind
//! (forked children write their results and accumulators into shared
//! memory).
use pasha::{Context, ErrorKind, Kind, MapOptions, Schedule};
use std::convert::Infallible;

const KINDS: [Kind; 3] = [Kind::Serial, Kind::Threads, Kind::Processes];

fn schedules() -> [MapOptions<'static>; 3] {
    [
        MapOptions::new(),
        MapOptions::new().schedule(Schedule::Dynamic).chunk(7),
        MapOptions::new().schedule(Schedule::Guided),
    ]
}

#[test]
fn map_collect_returns_values_in_item_order() {
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        for opts in schedules() {
            let out: Vec<u64> =
                ctx.map_collect_with(opts, 0..10_007, |_w, i, v| Ok::<_, Infallible>((v * v + 3 * i) as u64)).unwrap();
            assert_eq!(out.len(), 10_007);
            for (i, x) in out.iter().enumerate() {
                assert_eq!(*x, (i * i + 3 * i) as u64, "{kind:?} {opts:?} index {i}");
            }
        }
    }
}

#[test]
fn map_collect_of_tuples_over_a_slice_comes_from_the_workers() {
    let input: Vec<f64> = (0..2000).map(|i| i as f64 * 0.5).collect();
    let parent = std::process::id();
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let out: Vec<(u32, f64, u32)> =
            ctx.map_collect(&input, |_w, i, x| Ok::<_, Infallible>((i as u32, x * 2.0 + 1.0, std::process::id())))
                .unwrap();
        for (i, (j, y, _)) in out.iter().enumerate() {
            assert_eq!((*j as usize, *y), (i, i as f64 + 1.0), "{kind:?}");
        }
        // Process workers are forked children: the pids in the results are
        // theirs, not the caller's (each computed its share).
        let foreign = out.iter().filter(|t| t.2 != parent).count();
        match kind {
            Kind::Processes => assert_eq!(foreign, out.len(), "every item computed in a child"),
            _ => assert_eq!(foreign, 0, "{kind:?} runs in the caller's process"),
        }
    }
}

#[test]
fn map_collect_empty_and_errors() {
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let out: Vec<i32> = ctx.map_collect(0..0, |_w, _i, _v| Ok::<_, Infallible>(1)).unwrap();
        assert!(out.is_empty());
        let err = ctx
            .map_collect(0..500, |_w, i, _v| if i == 321 { Err(format!("no value for {i}")) } else { Ok(i as i32) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}");
        assert!(err.message().contains("no value for 321"), "{kind:?}: {}", err.message());
        let err = ctx
            .map_collect(0..500, |_w, i, _v| {
                if i == 17 {
                    panic!("seventeen");
                }
                Ok::<_, Infallible>(i)
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}");
        assert!(err.message().contains("seventeen"), "{kind:?}: {}", err.message());
    }
}

/// (sum, count, min, max, accumulators started)
type Stats = (f64, u64, f64, f64, u32);

#[test]
fn fold_gives_sum_count_min_max_with_one_accumulator_per_worker() {
    let data: Vec<f64> = (0..5000).map(|i| ((i * 37) % 1001) as f64 - 500.0).collect();
    let sum: f64 = data.iter().sum();
    let min = data.iter().cloned().fold(f64::MAX, f64::min);
    let max = data.iter().cloned().fold(f64::MIN, f64::max);
    for kind in KINDS {
        let ctx = Context::new(kind, 4).unwrap();
        let nw = ctx.num_workers() as u32;
        for opts in schedules() {
            let r: Stats = ctx
                .fold_with(
                    opts,
                    &data,
                    || (0.0, 0, f64::MAX, f64::MIN, 1),
                    |(s, c, lo, hi, st), _w, _i, x| Ok::<_, Infallible>((s + x, c + 1, lo.min(*x), hi.max(*x), st)),
                    |a, b| (a.0 + b.0, a.1 + b.1, a.2.min(b.2), a.3.max(b.3), a.4 + b.4),
                )
                .unwrap();
            // Integers in f64: every order of additions is exact.
            assert_eq!((r.0, r.1, r.2, r.3), (sum, 5000, min, max), "{kind:?} {opts:?}");
            // identity() once per worker per map, however many chunks it took.
            if opts == MapOptions::new() {
                assert_eq!(r.4, nw, "{kind:?}: one accumulator per worker");
            } else {
                assert!(r.4 >= 1 && r.4 <= nw, "{kind:?} {opts:?}: {} accumulators for {nw} workers", r.4);
            }
        }
    }
}

/// (first index, last index, contiguous): associative, not commutative.
type Span = (i64, i64, bool);

#[test]
fn static_fold_combines_in_item_order() {
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        let r: Span = ctx
            .fold(
                0..1000,
                || (-1, -1, true),
                |(first, last, ok), _w, i, _v| {
                    let i = i as i64;
                    Ok::<_, Infallible>(if first < 0 { (i, i, ok) } else { (first, i, ok && i == last + 1) })
                },
                |a, b| match (a.0 < 0, b.0 < 0) {
                    (true, _) => b,
                    (_, true) => a,
                    _ => (a.0, b.1, a.2 && b.2 && b.0 == a.1 + 1),
                },
            )
            .unwrap();
        assert_eq!(r, (0, 999, true), "{kind:?}");
    }
}

#[test]
fn reduce_sums_in_every_kind() {
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        for opts in schedules() {
            let s = ctx.reduce_with(opts, 1..100_001, 0u64, |_w, _i, v| Ok::<_, Infallible>(v as u64), |a, b| a + b).unwrap();
            assert_eq!(s, 100_000 * 100_001 / 2, "{kind:?} {opts:?}");
            // Per-lane sums of an array accumulator.
            let lanes = ctx
                .reduce_with(
                    opts,
                    0..999,
                    [0u32; 3],
                    |_w, _i, v| {
                        let mut a = [0u32; 3];
                        a[v % 3] = v as u32;
                        Ok::<_, Infallible>(a)
                    },
                    |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]],
                )
                .unwrap();
            let want: Vec<u32> = (0..3).map(|l| (0..999u32).filter(|v| v % 3 == l).sum()).collect();
            assert_eq!(lanes.to_vec(), want, "{kind:?} {opts:?}");
        }
    }
}

#[test]
fn fold_and_reduce_of_nothing_is_the_identity_and_errors_are_err() {
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        assert_eq!(ctx.reduce(0..0, 42i32, |_w, _i, _v| Ok::<_, Infallible>(1), |a, b| a + b).unwrap(), 42);
        let f = ctx.fold(0..0, || 7u8, |a, _w, _i, _v| Ok::<_, Infallible>(a), |a, _| a).unwrap();
        assert_eq!(f, 7);
        let err = ctx
            .reduce(0..300, 0i64, |_w, i, _v| if i == 250 { Err("bad item") } else { Ok(1) }, |a, b| a + b)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}");
        assert!(err.message().contains("bad item"), "{kind:?}: {}", err.message());
    }
}
