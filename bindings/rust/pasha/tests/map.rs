//! Real maps through libpasha in every context kind.
use pasha::{Context, ErrorKind, Kind, Order};
use std::convert::Infallible;

const KINDS: [Kind; 3] = [Kind::Serial, Kind::Threads, Kind::Processes];

fn ok() -> Result<(), Infallible> {
    Ok(())
}

#[test]
fn map_into_range_writes_every_square() {
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        let mut out = ctx.alloc::<f64>(&[1000]).unwrap();
        ctx.map_into(5..1005, &mut out, |_w, i, v, slot| {
            assert_eq!(v, i + 5);
            *slot = (v * v) as f64;
            ok()
        })
        .unwrap();
        for (i, x) in out.iter().enumerate() {
            assert_eq!(*x, ((i + 5) * (i + 5)) as f64, "{kind:?} index {i}");
        }
    }
}

#[test]
fn map_over_slice_sees_caller_data() {
    let input: Vec<i64> = (0..500).map(|i| 3 * i - 7).collect();
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let mut out = ctx.alloc::<i64>(&[input.len()]).unwrap();
        ctx.map_into(&input, &mut out, |_w, _i, v, slot| {
            *slot = 2 * *v;
            ok()
        })
        .unwrap();
        assert!(out.iter().zip(&input).all(|(o, i)| *o == 2 * i), "{kind:?}");
    }
}

#[test]
fn per_worker_sums_add_up() {
    for kind in KINDS {
        let ctx = Context::new(kind, 4).unwrap();
        let mut acc = ctx.alloc_per_worker::<u64>(&[2]).unwrap();
        let nw = ctx.num_workers();
        assert_eq!(nw, if kind == Kind::Serial { 1 } else { 4 });
        assert_eq!(acc.shape(), &[nw, 2]);
        ctx.map_per_worker(0..10_000, &mut acc, |w, _i, v, row| {
            assert!(w < nw);
            row[0] += v as u64;
            row[1] += 1;
            ok()
        })
        .unwrap();
        let total: u64 = (0..nw).map(|w| acc[w * 2]).sum();
        let count: u64 = (0..nw).map(|w| acc[w * 2 + 1]).sum();
        assert_eq!(total, 9999 * 10_000 / 2, "{kind:?}");
        assert_eq!(count, 10_000);
    }
}

#[test]
fn map_along_rows_of_a_shared_array() {
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let mut img = ctx.alloc::<f32>(&[6, 4]).unwrap();
        for (k, x) in img.iter_mut().enumerate() {
            *x = k as f32;
        }
        assert_eq!(img.element_strides(), vec![4, 1]);
        let mut sums = ctx.alloc::<f32>(&[6]).unwrap();
        ctx.map_into(img.along(0).unwrap(), &mut sums, |_w, _i, row, slot| {
            assert_eq!(row.shape(), &[4]);
            *slot = row.to_vec().iter().sum();
            ok()
        })
        .unwrap();
        for r in 0..6 {
            let expect: f32 = (0..4).map(|c| (r * 4 + c) as f32).sum();
            assert_eq!(sums[r], expect, "{kind:?} row {r}");
        }
        // Columns: axis 1, strided views.
        let mut cols = ctx.alloc::<f32>(&[4]).unwrap();
        ctx.map_into(img.along(-1).unwrap(), &mut cols, |_w, i, col, slot| {
            assert_eq!(col.get(&[2]), Some((2 * 4 + i) as f32));
            *slot = col.to_vec().iter().sum();
            ok()
        })
        .unwrap();
        assert_eq!(cols[3], (0..6).map(|r| (r * 4 + 3) as f32).sum::<f32>());
    }
}

#[test]
fn fortran_order_and_fill() {
    let ctx = Context::new(Kind::Serial, 1).unwrap();
    let a = ctx.alloc_with::<i32>(&[3, 5], Order::F, 7).unwrap();
    assert_eq!(a.order(), Order::F);
    assert_eq!(a.element_strides(), vec![1, 3]);
    assert!(a.iter().all(|x| *x == 7));
    assert_eq!(a.get(&[2, 4]), Some(&7));
    assert_eq!(a.get(&[3, 0]), None);
}

#[test]
fn kernel_error_comes_back_as_err() {
    // See also closure_error_text_reaches_the_caller_from_every_kind.
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let err = ctx
            .map(0..100, |_w, i, _v| if i == 42 { Err(format!("bad item {i}")) } else { Ok(()) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}: {err}");
        assert_eq!(err.code(), pasha::sys::PSH_EKERNEL);
        assert!(err.message().contains("42"), "{kind:?}: {err}");
        if kind != Kind::Processes {
            assert!(err.message().contains("bad item 42"), "{err}");
        }
    }
}

#[test]
fn panic_is_caught_not_unwound_into_c() {
    for kind in [Kind::Serial, Kind::Threads] {
        let ctx = Context::new(kind, 2).unwrap();
        let err = ctx
            .map(0..10, |_w, i, _v| {
                if i == 3 {
                    panic!("boom at three");
                }
                ok()
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel);
        assert!(err.message().contains("boom at three"), "{err}");
        // The context still works afterwards.
        let mut out = ctx.alloc::<u8>(&[10]).unwrap();
        ctx.map_into(0..10, &mut out, |_w, i, _v, s| {
            *s = i as u8;
            ok()
        })
        .unwrap();
        assert_eq!(out[9], 9);
    }
}

#[test]
fn dead_worker_process_comes_back_as_err() {
    let ctx = Context::new(Kind::Processes, 2).unwrap();
    let err = ctx
        .map(0..10, |_w, i, _v| {
            if i == 7 {
                std::process::abort();
            }
            ok()
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Worker, "{err}");
    let mut out = ctx.alloc::<u16>(&[4]).unwrap();
    ctx.map_into(0..4, &mut out, |_w, i, _v, s| {
        *s = 10 + i as u16;
        ok()
    })
    .unwrap();
    assert_eq!(&out[..], &[10, 11, 12, 13]);
}

#[test]
fn output_too_short_is_invalid() {
    let ctx = Context::new(Kind::Serial, 1).unwrap();
    let mut out = ctx.alloc::<f64>(&[3]).unwrap();
    let err = ctx.map_into(0..4, &mut out, |_w, _i, _v, _s| ok()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let err = ctx.alloc::<f64>(&[1; 40]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("ndim"), "{err}");
}

#[test]
fn contexts_report_kind_and_workers() {
    let t = Context::new(Kind::Threads, 3).unwrap();
    assert_eq!(t.kind(), Kind::Threads);
    assert_eq!(t.num_workers(), 3);
    let s = Context::new(Kind::Serial, 8).unwrap();
    assert_eq!(s.num_workers(), 1);
    let d = Context::default_context().unwrap();
    assert!(d.num_workers() >= 1);
    assert!(!pasha::version().is_empty());
    // The library loaded at run time is the one the declarations mirror.
    assert_eq!(pasha::version_number(), pasha::sys::PSH_VERSION_NUMBER);
    assert_eq!(pasha::version(), pasha::sys::PSH_VERSION_STRING.to_str().unwrap());
}

#[test]
fn nested_map_runs_inline_in_the_worker() {
    let ctx = Context::new(Kind::Threads, 2).unwrap();
    let mut out = ctx.alloc::<u64>(&[8]).unwrap();
    let inner_ctx = ctx.clone();
    ctx.map_into(0..8, &mut out, |w, _i, v, slot| {
        let mut acc = inner_ctx.alloc_per_worker::<u64>(&[1]).map_err(|e| e.to_string())?;
        inner_ctx
            .map_per_worker(0..v + 1, &mut acc, |iw, _j, x, row| {
                assert_eq!(iw, w);
                row[0] += x as u64;
                ok()
            })
            .map_err(|e| e.to_string())?;
        *slot = acc.iter().sum();
        Ok::<(), String>(())
    })
    .unwrap();
    for v in 0..8u64 {
        assert_eq!(out[v as usize], v * (v + 1) / 2);
    }
}

#[test]
fn map_blocks_into_fills_disjoint_chunks() {
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        let mut out = ctx.alloc::<i32>(&[1001]).unwrap();
        let nw = ctx.num_workers();
        ctx.map_blocks_into(&mut out, |w, range, chunk| {
            assert!(w < nw);
            assert_eq!(chunk.len(), range.len());
            for (k, x) in chunk.iter_mut().enumerate() {
                *x = 2 * (range.start + k) as i32;
            }
            ok()
        })
        .unwrap();
        assert!(out.iter().enumerate().all(|(i, x)| *x == 2 * i as i32), "{kind:?}");
        let err = ctx
            .map_blocks(100, |_w, r| if r.contains(&50) { Err("chunk with 50") } else { Ok(()) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}");
    }
}

#[test]
fn closure_error_text_reaches_the_caller_from_every_kind() {
    for kind in KINDS {
        let ctx = Context::new(kind, 2).unwrap();
        let err = ctx.map(0..100, |_w, i, _v| if i == 77 { Err(format!("no good at {i}")) } else { Ok(()) }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}: {err}");
        assert!(err.message().contains("the closure failed at index 77: no good at 77"), "{kind:?}: {err}");
        let err = ctx
            .map(0..10, |_w, i, _v| {
                if i == 6 {
                    panic!("panicked on six");
                }
                ok()
            })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Kernel, "{kind:?}: {err}");
        assert!(err.message().contains("panicked on six"), "{kind:?}: {err}");
    }
}

#[test]
fn writes_stay_inside_the_items_the_map_visits() {
    // The output is longer than the source: only 0..n may be written, and
    // every one of them exactly once; the rest keeps its fill value.
    for kind in KINDS {
        let ctx = Context::new(kind, 3).unwrap();
        let mut out = ctx.alloc_with::<i64>(&[64], Order::C, -1).unwrap();
        ctx.map_into(10..50, &mut out, |_w, i, v, slot| {
            assert_eq!(*slot, -1, "index {i} written twice");
            *slot = v as i64;
            ok()
        })
        .unwrap();
        for (i, x) in out.iter().enumerate() {
            let expect = if i < 40 { i as i64 + 10 } else { -1 };
            assert_eq!(*x, expect, "{kind:?} index {i}");
        }
        // An empty (reversed) range visits nothing.
        let (from, to) = (9, 3);
        ctx.map_into(from..to, &mut out, |_w, _i, _v, _s| Err("called")).unwrap();
    }
}

#[test]
fn schedules_and_chunks_in_the_safe_api() {
    use pasha::{MapOptions, Schedule};
    use std::sync::Mutex;
    let n = 1000;
    for schedule in [Schedule::Static, Schedule::Dynamic, Schedule::Guided] {
        let ctx = Context::builder(Kind::Threads).workers(2).schedule(schedule).chunk(7).build().unwrap();
        assert_eq!(ctx.schedule(), schedule);
        assert_eq!(ctx.num_workers(), 2);
        // The chunks the context's schedule hands out cover 0..n exactly once.
        let chunks = Mutex::new(Vec::new());
        ctx.map_blocks(n, |_w, r| {
            chunks.lock().unwrap().push(r);
            ok()
        })
        .unwrap();
        let mut chunks = chunks.into_inner().unwrap();
        chunks.sort_by_key(|r| r.start);
        assert_eq!(chunks.first().unwrap().start, 0);
        assert_eq!(chunks.last().unwrap().end, n);
        assert!(chunks.windows(2).all(|p| p[0].end == p[1].start), "{schedule:?}: {chunks:?}");
        match schedule {
            Schedule::Static => assert_eq!(chunks.len(), 2, "{chunks:?}"),
            Schedule::Dynamic => assert!(chunks.iter().all(|r| r.len() <= 7) && chunks.len() >= n / 7),
            Schedule::Guided => assert!(chunks.iter().all(|r| r.len() >= 7 || r.end == n) && chunks.len() > 2),
        }
        let mut out = ctx.alloc::<u32>(&[n]).unwrap();
        ctx.map_into(0..n, &mut out, |_w, i, v, o| {
            *o = (3 * v + i) as u32;
            ok()
        })
        .unwrap();
        assert!(out.iter().enumerate().all(|(i, x)| *x == 4 * i as u32), "{schedule:?}");
    }
    // Per map: a dynamic map with chunk 5 on a static context.
    let ctx = Context::new(Kind::Threads, 2).unwrap();
    assert_eq!(ctx.schedule(), Schedule::Static);
    let sizes = Mutex::new(Vec::new());
    let opts = MapOptions::new().schedule(Schedule::Dynamic).chunk(5);
    ctx.map_blocks_with(opts, 23, |_w, r| {
        sizes.lock().unwrap().push(r.len());
        ok()
    })
    .unwrap();
    let mut sizes = sizes.into_inner().unwrap();
    sizes.sort();
    assert_eq!(sizes, vec![3, 5, 5, 5, 5]);
    let mut acc = ctx.alloc_per_worker::<u64>(&[1]).unwrap();
    ctx.map_per_worker_with(opts, 0..1001, &mut acc, |_w, _i, v, row| {
        row[0] += v as u64;
        ok()
    })
    .unwrap();
    assert_eq!(acc.iter().sum::<u64>(), 1000 * 1001 / 2);
    // Per map on processes: the same split, results through shared memory.
    let p = Context::new(Kind::Processes, 2).unwrap();
    let mut out = p.alloc::<u64>(&[500]).unwrap();
    p.map_into_with(MapOptions::new().schedule(Schedule::Guided).chunk(3), &(0..500u64).collect::<Vec<_>>(), &mut out, |_w, _i, v, o| {
        *o = v * v;
        ok()
    })
    .unwrap();
    assert!(out.iter().enumerate().all(|(i, x)| *x == (i * i) as u64));
}

#[test]
fn default_context_is_an_owned_reference() {
    let d = Context::default_context().unwrap();
    let n = d.num_workers();
    // Replacing the default drops the library's reference; ours stays valid.
    let t = Context::new(Kind::Threads, 2).unwrap();
    t.set_default().unwrap();
    assert_eq!(d.num_workers(), n);
    assert_eq!(d.kind(), Kind::Processes);
    let now = Context::default_context().unwrap();
    assert_eq!(now.kind(), Kind::Threads);
    assert_eq!(now.num_workers(), 2);
    d.set_default().unwrap();
}

#[test]
fn views_live_as_long_as_their_array() {
    let ctx = Context::new(Kind::Threads, 2).unwrap();
    let mut a = ctx.alloc::<i32>(&[3, 2]).unwrap();
    for (k, x) in a.iter_mut().enumerate() {
        *x = k as i32;
    }
    let shapes = {
        let along = a.along(1).unwrap();
        assert_eq!(pasha::Source::len(&along), 2);
        let mut out = ctx.alloc::<i32>(&[2]).unwrap();
        ctx.map_into(along, &mut out, |_w, _i, col, o| {
            *o = col.to_vec().iter().sum();
            ok()
        })
        .unwrap();
        assert_eq!(&out[..], &[6, 9]);
        pasha::Source::len(&a.along(0).unwrap())
    };
    assert_eq!(shapes, 3);
}

#[test]
fn nested_per_worker_map_on_a_smaller_context_is_an_error_not_a_stray_write() {
    // An inner map runs inline with the outer worker's id, which can be past
    // the inner context's rows: that must be an error, never a write past
    // the end of the per-worker array.
    let outer = Context::new(Kind::Threads, 4).unwrap();
    let inner = Context::new(Kind::Threads, 2).unwrap();
    let mut out = outer.alloc::<i32>(&[4]).unwrap();
    outer
        .map_into(0..4, &mut out, |w, _i, _v, slot| {
            let mut acc = inner.alloc_per_worker::<u64>(&[1]).map_err(|e| e.to_string())?;
            *slot = match inner.map_per_worker(0..3, &mut acc, |_iw, _j, x, row| {
                row[0] += x as u64;
                ok()
            }) {
                Ok(()) if w < 2 => 1,
                Err(e) if w >= 2 && e.kind() == ErrorKind::Kernel && e.message().contains("outside 0..2") => 2,
                other => return Err(format!("worker {w}: {other:?}")),
            };
            Ok::<(), String>(())
        })
        .unwrap();
    // Static schedule, 4 items on 4 workers: worker w takes index w.
    assert_eq!(&out[..], &[1, 1, 2, 2]);
}
