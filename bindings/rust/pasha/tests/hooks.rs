//! MapOptions::worker_begin / worker_end (psh_map_options' hooks): once
//! per worker per map, in the worker itself, in every kind.
use pasha::{Context, ErrorKind, Kind, MapOptions, Schedule};
use std::convert::Infallible;

/// A pointer into a shared array that hooks (Fn + Sync) write through:
/// each worker writes only its own row, and no two workers share an id.
struct Rows(*mut u32);
unsafe impl Sync for Rows {}
impl Rows {
    fn at(&self, i: usize) -> *mut u32 {
        unsafe { self.0.add(i) }
    }
}

#[test]
fn hooks_run_once_per_worker_before_and_after_its_items() {
    for kind in [Kind::Serial, Kind::Threads, Kind::Processes] {
        let ctx = Context::new(kind, 3).unwrap();
        let nw = ctx.num_workers();
        for sched in [Schedule::Static, Schedule::Dynamic] {
            let mut counts = ctx.alloc::<u32>(&[nw, 2]).unwrap(); // [begins, ends] per worker
            let rows = Rows(counts.as_mut_ptr());
            let begin = |w: usize| -> Result<(), String> {
                unsafe { *rows.at(2 * w) += 1 };
                Ok(())
            };
            let end = |w: usize| -> Result<(), String> {
                unsafe { *rows.at(2 * w + 1) += 1 };
                Ok(())
            };
            let opts = MapOptions::new().schedule(sched).chunk(5).worker_begin(&begin).worker_end(&end);
            // Each item records how many begins and ends its worker had run.
            let seen: Vec<(u32, u32)> = ctx
                .map_collect_with(opts, 0..200, |w, _i, _v| {
                    Ok::<_, Infallible>(unsafe { (*rows.at(2 * w), *rows.at(2 * w + 1)) })
                })
                .unwrap();
            assert!(seen.iter().all(|s| *s == (1, 0)), "{kind:?} {sched:?}: begin once before the items, end after");
            for w in 0..nw {
                assert_eq!((counts[2 * w], counts[2 * w + 1]), (1, 1), "{kind:?} {sched:?} worker {w}");
            }
        }
    }
}

#[test]
fn a_failing_worker_begin_fails_the_map_naming_it() {
    for kind in [Kind::Serial, Kind::Threads, Kind::Processes] {
        let ctx = Context::new(kind, 2).unwrap();
        let last = ctx.num_workers() - 1;
        let begin = |w: usize| if w == last { Err(format!("no scratch for worker {w}")) } else { Ok(()) };
        let opts = MapOptions::new().worker_begin(&begin);
        let err = ctx.map_with(opts, 0..100, |_w, _i, _v| Ok::<(), Infallible>(())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}: {err}");
        assert_eq!(err.callback(), Some("worker_begin"), "{kind:?}: {err}");
        assert_eq!(err.worker_id(), Some(last), "{kind:?}: {err}");
        assert!(err.message().contains("no scratch for worker"), "{kind:?}: {err}");
    }
}
